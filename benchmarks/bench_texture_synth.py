"""Instant texture synthesis benchmark on real photographs (no training).

For each exemplar (brick = regular, gravel = cellular, grass = irregular: the
CC0 photographs bundled in models/exemplars/; then every photograph of
data/texture_photos/, whose ``measure_`` set was never looked at while tuning),
every row next to a baseline measured in the same run:

* time for a tileable 512x512 texture: wall seconds vs the process's CPU seconds
  for the same call (on a shared machine the wall time includes waiting);
* VGG19 sliced-Wasserstein distance to the exemplar (``vgg_texture_distance``)
  of crops of the outputs of three seeds (one output's ratio swings by +-0.3
  with its seed) vs as many random crops of the exemplar itself, both of the
  same size (256 px, or 2/3 of a smaller exemplar's side, so that the exemplar's
  own crops are not the whole exemplar); the ratio is what the issue's targets
  are stated in (<= 1.3);
* copied-patch fraction (``copy_check``) vs a random crop of the exemplar;
* seam score of tileable output (mean over several seeds: one border is one
  sample) vs the exemplar's own wrap-around border;
* (full runs) one photograph under a synthetic flash, its outputs' distance to the
  clean photograph vs the clean photograph's own outputs': the lighting is
  divided out before the quilt copies bright and dark pieces side by side.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path

import numpy as np
import torch

from core.common.images import load_rgb, save_image
from core.common.quality import copy_check, pooled_seam_score, seam_rank, seam_score, vgg_texture_distance
from core.texture_synth import synthesize

from .report import BenchContext

FAMILY = "texture_synth"
ROOT = Path(__file__).resolve().parents[1]
PHOTOS = (("photo_brick", "regular"), ("photo_gravel", "cellular"), ("photo_grass", "irregular"))
TEXTURE_PHOTOS = ROOT / "data" / "texture_photos"
FLASH_PHOTO = "tune_brick_red"  # a tune photograph: the lighting rules were chosen on the tune set


def photographs(quick: bool) -> list[tuple[str, str, Path]]:
    """(name, kind, path): the bundled exemplars, then the texture photographs (tune and measure sets)."""
    bundled = [(name, kind, ROOT / "models" / "exemplars" / f"{name}.png") for name, kind in PHOTOS]
    photos = [(p.stem, p.stem.split("_", 1)[0], p) for p in sorted(TEXTURE_PHOTOS.glob("*.jpg"))]
    # Quick runs (the bench's own test) never touch the measuring set.
    return bundled + ([p for p in photos if p[1] == "tune"][:1] if quick else photos)


def crop_side(exemplar: np.ndarray, side: int) -> int:
    """Crops for the distance: half the output, at most 2/3 of the exemplar's shorter side."""
    return min(side // 2, min(exemplar.shape[:2]) * 2 // 3)


def sw_ratio_parts(images: list[np.ndarray], exemplar: np.ndarray, crop: int, n_crops: int,
                   rng: np.random.Generator) -> tuple[float, float]:
    """(mean VGG19 SW distance of the outputs' crops, of the exemplar's own crops), both to the exemplar:
    ``n_crops`` crops of each output, as many of the exemplar (one output's ratio swings by +-0.3 with its seed)."""
    out_crops = [c for image in images for c in _crops(image, crop, n_crops, rng)]
    own_crops = _crops(exemplar, crop, len(out_crops), rng)
    out_dist = [vgg_texture_distance(c, exemplar, seed=i) for i, c in enumerate(out_crops)]
    own_dist = [vgg_texture_distance(c, exemplar, seed=i) for i, c in enumerate(own_crops)]
    return float(np.mean(out_dist)), float(np.mean(own_dist))


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _crops(rgb: np.ndarray, size: int, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    h, w = rgb.shape[:2]
    out = []
    for _ in range(count):
        y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
        out.append(rgb[y: y + size, x: x + size])
    return out


def run(ctx: BenchContext) -> None:
    cuda = ctx.device.type == "cuda"
    side = 128 if ctx.quick else 512
    n_crops = 2 if ctx.quick else 4
    seam_seeds = range(1 if ctx.quick else 7)  # 8 outputs: one border is one sample
    # The distance averages seeds 1-6. One output's ratio swings with its seed (sd over seeds 1-9: stone wall 0.26,
    # rock cliff 0.63), so three seeds left the photographs near the 1.3 line on either side by chance.
    extra_seeds = range(2, 2 if ctx.quick else 7)
    seam_side = 64 if ctx.quick else 192
    steps = 4 if ctx.quick else None
    for name, kind, path in photographs(ctx.quick):
        exemplar = load_rgb(path)
        if ctx.quick:
            exemplar = exemplar[:side, :side]
        crop = crop_side(exemplar, side)
        rng = np.random.default_rng(0)

        # ---- time for one tileable texture of the exemplar's size
        if cuda:
            torch.cuda.synchronize()
        cpu_start, start = _cpu_seconds(), time.perf_counter()
        image = synthesize(exemplar, side, side, seed=1, tileable=True, steps=steps, device=ctx.device).image
        if cuda:
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter() - start, _cpu_seconds() - cpu_start
        save_image(Path(ctx.work_dir) / f"{name}_synth.png", image)  # to look at
        target = ("<= 3 s on H100" if cuda else "<= 10 s on a 2-core CPU") if side == 512 else ""
        ctx.add(family=FAMILY, name=f"synthesize {side}x{side} tileable ({name}, {kind})", value=wall, unit="s",
                baseline_name="CPU seconds of the same call", baseline_value=cpu, target=target,
                note=f"torch threads {torch.get_num_threads()}; wall > CPU/threads means the machine was shared")

        # ---- distance to the exemplar, as a ratio to the exemplar's own crops
        images = [image] + [synthesize(exemplar, side, side, seed=s, tileable=True, steps=steps,
                                       device=ctx.device).image for s in extra_seeds]
        out_dist, own_dist = sw_ratio_parts(images, exemplar, crop, n_crops, rng)
        ctx.add(family=FAMILY, name=f"VGG19 SW distance to exemplar, {crop}px crops ({name})",
                value=out_dist, unit="swd", baseline_name="random crops of the exemplar",
                baseline_value=own_dist, target="ratio <= 1.3",
                note=f"{n_crops} crops of each of {len(images)} output(s) (seed 1"
                     f"{'-' + str(len(images)) if len(images) > 1 else ''}), as many of the exemplar; lower is closer")

        # ---- copies
        y, x = rng.integers(0, exemplar.shape[0] - crop + 1), rng.integers(0, exemplar.shape[1] - crop + 1)
        copied = copy_check(image, [exemplar]).copied_fraction
        copied_crop = copy_check(exemplar[y: y + crop, x: x + crop], [exemplar]).copied_fraction
        ctx.add(family=FAMILY, name=f"copied-patch fraction ({name})", value=copied, unit="fraction",
                baseline_name="random crop of exemplar", baseline_value=copied_crop,
                note="16 px patches: the detail stage copies real patches, so many are found verbatim")
        # Is the output a verbatim crop? 64 px pieces: a crop is copied everywhere, a new arrangement is not.
        big = min(64, crop // 2)
        ctx.add(family=FAMILY, name=f"copied {big}px-piece fraction ({name})",
                value=copy_check(image, [exemplar], patch=big).copied_fraction, unit="fraction",
                baseline_name="random crop of exemplar",
                baseline_value=copy_check(exemplar[y: y + crop, x: x + crop], [exemplar], patch=big).copied_fraction,
                note="near 0: no output is a verbatim crop")

        # ---- seams: the 512 px output plus a few smaller seeds (one border is one sample)
        tiles = [image] + [synthesize(exemplar, seam_side, seam_side, seed=s, tileable=True, steps=steps,
                                      device=ctx.device).image for s in seam_seeds]
        ranks = [seam_rank(t) for t in tiles]
        ctx.add(family=FAMILY, name=f"seam rank among all boundaries, tileable output ({name})",
                value=float(np.mean(ranks)), unit="rank", baseline_name="exemplar's own wrap border",
                baseline_value=seam_rank(exemplar), target="< 0.9 (1.0 = the strongest boundary: a seam)",
                note=f"mean over {len(ranks)} outputs; ~0.5 = the border is like any other boundary")
        # No target on the ratio: where strong edges are sparse (plank gaps, mortar) a seamless border that
        # happens to fall on one scores 3-5, so a few outputs swing the ratio far from 1 (measure_wood_planks,
        # 32 seeds: the border over twice the mean step in 16% of outputs, a random inner boundary in 8.5%).
        # The rank above tests the same thing robustly; the GAN's seams are exactly periodic and keep theirs.
        ctx.add(family=FAMILY, name=f"seam score, tileable output ({name})", value=pooled_seam_score(tiles),
                unit="ratio", baseline_name="exemplar's own wrap border", baseline_value=seam_score(exemplar),
                note=f"pooled over {len(tiles)} outputs (wrap steps summed over inner steps summed); 1.0 = seamless")

    if not ctx.quick:
        _flash_row(ctx, side, n_crops, steps)


def flash_light(height: int, width: int) -> np.ndarray:
    """A flash's falloff (HxWx1): half the light at the corners, geometric mean 1 (the brightness stays)."""
    y, x = np.meshgrid(np.linspace(-1, 1, height), np.linspace(-1, 1, width), indexing="ij")
    light = 1.0 - (x ** 2 + y ** 2) / 4
    return (light / np.exp(np.log(light).mean()))[..., None].astype(np.float32)


def _flash_row(ctx: BenchContext, side: int, n_crops: int, steps: int | None) -> None:
    """Tileable outputs of a photograph lit by a flash against the clean photograph's own outputs, both
    measured against the clean photograph (seeds 1-3, the same crops): a lighting the synthesizer leaves in
    shows as light and dark blotches, and the ratio rises (a plane alone: 2.1x)."""
    clean = load_rgb(TEXTURE_PHOTOS / f"{FLASH_PHOTO}.jpg")
    lit = np.clip(clean * flash_light(*clean.shape[:2]), 0, 1).astype(np.float32)
    crop = crop_side(clean, side)
    distances, first = [], []
    for source in (lit, clean):
        images = [synthesize(source, side, side, seed=s, tileable=True, steps=steps, device=ctx.device).image
                  for s in (1, 2, 3)]
        distances.append(sw_ratio_parts(images, clean, crop, n_crops, np.random.default_rng(0))[0])
        first.append(images[0])
    save_image(Path(ctx.work_dir) / f"{FLASH_PHOTO}_flash_synth.png", np.concatenate(first, axis=1))  # to look at
    ctx.add(family=FAMILY, name=f"VGG19 SW distance to the clean photograph, from it under a flash ({FLASH_PHOTO})",
            value=distances[0], unit="swd", baseline_name="the same from the clean photograph",
            baseline_value=distances[1], target="ratio <= 1.2",
            note="flash: 1 - r^2/4 from the centre (corners at half the light); seeds 1-3, the same crops")
