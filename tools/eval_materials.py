"""Quick evaluation of the material models (conditional GAN, GAN-prior VAE) on their checkpoints (~2-3 min on a CPU).

    python tools/eval_materials.py [--gan models/training/materials_gan.safetensors]
                                   [--vae models/training/materials_gan_vae.safetensors]
                                   [--old-vae models/texture_vae/previous/materials.safetensors]
                                   [--out eval_materials.png] [--cell 128] [--refine-steps N]

Per material, each figure next to its baseline from the same run (the bench targets in brackets):

* GAN: VGG19 sliced-Wasserstein distance to the exemplar / the exemplar's own random crops' (<= 1.6);
* GAN seam: phase-matched seam score of tileable output, pooled over seeds (<= 1.02; quality.pooled_seam_score);
* VAE variation (strength 0.5, the panel's default Refine Steps): the same ratio (<= 1.6) and gradient energy /
  the crop's (>= 0.85), and the old VAE's variation of the same crop;
* the distilled instant-synthesis tiles (the GAN's teacher; synthesized into the cache when missing), scored the same way;
* where the exemplar has courses (brick and stone walls, a weave's blocks): how straight and even the GAN's and the
  teacher's run beside the exemplar's own crops (``model_quality.course_regularity``; the VGG19 ratio does not see it),
  and again at twice the size, the exemplar's whole side (``large_courses``);
* GAN 2048x2048 generation time (<= 3 s).

Writes a PNG strip: exemplar | instant | GAN | VAE variation per material, and a material interpolation strip.
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# The measures live in tools/model_quality.py (shared with the zoo's evaluate hooks); re-exported for the benches.
from tools.model_quality import (VARY_STRENGTH, VGGJudge, course_regularity, crops, exemplar_courses,  # noqa: E402,F401
                                 exemplar_sharpness, gradient_energy, source_crops, texture_baseline,
                                 variation_figures)


def teacher_tiles(exemplar: np.ndarray, size: int) -> list[np.ndarray]:
    """The distilled teacher tiles of this exemplar (top-left ``size`` px of each): from the GAN training's cache
    (its CPU or GPU recipe), else synthesized into it with the CPU recipe's settings (a new synthesizer version
    misses the cache, and a black panel would hide that)."""
    from core.texture_gan.distill import synthesized_tiles, tiles_cache_path
    from tools.zoo.gan import SEED, profile_settings

    cache = ROOT / "build_cache" / "gan_distill"
    found = None
    for profile in ("cpu", "gpu"):
        settings = profile_settings(profile)
        tiles, side = settings["tiles"], min(settings["tile_size"], *exemplar.shape[:2])
        path = tiles_cache_path(cache, exemplar, tiles, side, SEED, settings["synth_steps"])
        if path.exists():
            found = np.load(path, allow_pickle=False)
            break
    if found is None:
        settings = profile_settings("cpu")
        found = synthesized_tiles(exemplar, settings["tiles"], min(settings["tile_size"], *exemplar.shape[:2]), SEED,
                                  cache, settings["synth_steps"])
    return [tile[:size, :size].astype(np.float32) / 255.0 for tile in found]


def wrap_error(gan) -> float:
    """The exact seam check: per material, the largest difference between the image of a noise canvas tiled
    2x2 and that canvas's image tiled 2x2 (0 up to float rounding: the wrap border is an inner boundary of the
    endless texture). The phase-matched seam ratio beside it is a statistical estimate of the same thing."""
    import torch

    from core.texture_gan.materials import material_canvas
    worst = 0.0
    g = gan.generator
    with torch.no_grad():
        for name in gan.materials:
            weights = gan.material_weights(name)
            canvas, fine = material_canvas(g, 6, 5, seed=1, weights=weights, noise_kernel=gan.noise_kernel(weights))
            one = g.body(canvas, fine)
            four = g.body(canvas.repeat(1, 1, 2, 2), [f.repeat(1, 1, 2, 2) for f in fine])
            worst = max(worst, float((four - one.repeat(1, 1, 2, 2)).abs().max()))
    return worst


@contextmanager
def white_noise(gan, name: str):
    """``gan`` drawing ``name`` through white noise inside the block: its noise filter set aside, then put back."""
    kept = gan.noise_filters
    gan.noise_filters = {k: v for k, v in kept.items() if k != name}
    try:
        yield gan
    finally:
        gan.noise_filters = kept


def large_courses(gan, name: str, exemplar: np.ndarray, courses: tuple, side: int, seeds: int, tiles: int,
                  white: bool) -> dict:
    """The course regularity at ``side`` px (twice the measuring size: the whole exemplar), where a texture spans
    the courses a scene's wall does and where the walls' noise filters are fitted; a filter fitted on the small
    canvas alone straightened its torus, not the wall (the fiftieth session). The GAN's ``seeds`` outputs (and,
    with ``white``, the same seeds through white noise), ``tiles`` of the instant synthesizer's at that size (the
    teacher's seeds) and the straightened exemplar itself."""
    from core.texture_synth import synthesize
    from core.texture_synth.structure import straighten
    from tools.zoo.gan import SEED

    def regularity(images) -> float:
        return float(np.mean([course_regularity(im, courses) for im in images]))

    figures = {"large_px": side,
               "gan_large": regularity(gan.generate(side, side, seed=s, material=name) for s in range(seeds)),
               "instant_large": regularity(synthesize([exemplar], side, side, seed=SEED * 1000 + i,
                                                      tileable=True).image for i in range(tiles)),
               "exemplar_large": regularity([straighten(exemplar)[:side, :side]])}
    if white:
        with white_noise(gan, name):
            figures["gan_white_noise_large"] = regularity(gan.generate(side, side, seed=s, material=name)
                                                          for s in range(seeds))
    return figures


def evaluate(gan_path: Path, vae_path: Path | None, old_vae_path: Path | None, seeds: int = 2,
             seam_seeds: int = 128, time_2048: bool = True, seam_side: int = 256, refine_steps: int | None = None,
             materials: list[str] | None = None) -> tuple[list[dict], dict, list[np.ndarray]]:
    """Per material, the figures of the module's docstring. The seam ratio pools ``seam_seeds`` tileable outputs
    of ``seam_side`` px: the materials GAN is exactly periodic, so the ratio's departure from 1 is the measure's
    own scatter, which sparse strong edges (mortar joints) make large. Measured on the bundled GAN at 43,590
    steps: Brick Wall 1.211 over 32 outputs of 128 px (rolled copies, which have no seam: 1.06-1.27), 1.030 over
    128 of 256 px (1.01-1.07), 1.008 over 512 of 256 px (1.00-1.03); non-tileable outputs of the same generator
    (64 of 256 px) read 1.46-12.7 over the nine materials. The VAEs' variations refine ``refine_steps`` (None:
    the panel's default, ``DEFAULT_REFINE_STEPS``). ``materials``: these of the GAN's only (its rows and strip)."""
    import torch

    from core.common.quality import pooled_seam_score
    from core.texture_gan import TextureGenerator
    from core.texture_synth.structure import straighten
    from core.texture_vae import load_texture_vae
    from core.texture_vae.jobs import DEFAULT_REFINE_STEPS
    from tools.zoo.gan import MATERIALS, load_materials

    refine_steps = DEFAULT_REFINE_STEPS if refine_steps is None else refine_steps
    torch.manual_seed(0)
    gan = TextureGenerator.load(gan_path, "cpu")
    vae = load_texture_vae(vae_path, "cpu") if vae_path and vae_path.exists() else None
    old_vae = load_texture_vae(old_vae_path, "cpu") if old_vae_path and old_vae_path.exists() else None
    exemplars = dict(zip([m[0] for m in MATERIALS], load_materials(MATERIALS, None)))
    rows, strip = [], []
    for name in [m for m in gan.materials if materials is None or m in materials]:
        ex = exemplars[name]
        size = min(ex.shape[:2]) // 2
        judge, base = texture_baseline(name, ex, size)

        def ratio_of(images):
            return float(np.mean([judge(im) for im in images])) / base
        fakes = [gan.generate(size, size, seed=s, material=name) for s in range(seeds)]
        tiles = [gan.generate(seam_side, seam_side, seed=s, material=name) for s in range(seam_seeds)]
        row = {"material": name, "crop_px": size, "crop_swd": base, "gan_ratio": ratio_of(fakes),
               "gan_seam": pooled_seam_score(tiles, gan.stride),
               # The same outputs rolled by a quarter, half, three quarters (multiples of the stride): their border
               # is then an inner boundary, so these are what the measure reads where there is no seam.
               "gan_seam_rolled": [pooled_seam_score([np.roll(t, (r, r), axis=(0, 1)) for t in tiles], gan.stride)
                                   for r in (seam_side // 4, seam_side // 2, 3 * seam_side // 4)],
               # The same generator without wrapping: what the measure reads where there is a seam.
               "gan_seam_plain": pooled_seam_score([gan.generate(seam_side, seam_side, seed=s, material=name,
                                                                 tileable=False) for s in range(16)], gan.stride)}
        white = None
        if name in getattr(gan, "noise_filters", {}):  # the same seeds through white noise: what the filter buys
            with white_noise(gan, name):
                white = [gan.generate(size, size, seed=s, material=name) for s in range(seeds)]
            row["gan_ratio_white_noise"] = ratio_of(white)
        teachers = teacher_tiles(ex, size)
        instant = teachers[0]
        row["instant_ratio"] = ratio_of(teachers)  # all of them: one tile's ratio scatters as one crop's does
        row["instant_tiles"] = len(teachers)
        courses = exemplar_courses(ex)
        if courses is not None:  # straight, even courses: what the VGG19 ratio does not see
            row["courses"] = {"axis": courses[0], "period": courses[1],
                              "gan": float(np.mean([course_regularity(f, courses) for f in fakes])),
                              "instant": float(np.mean([course_regularity(t, courses) for t in teachers])),
                              "crops": float(np.mean([course_regularity(c, courses)
                                                      for c in crops(straighten(ex), size, seeds, 1)]))}
            if white is not None:
                row["courses"]["gan_white_noise"] = float(np.mean([course_regularity(f, courses) for f in white]))
            row["courses"].update(large_courses(gan, name, ex, courses, 2 * size, seeds, len(teachers),
                                                white is not None))
        sources = source_crops(ex, size, seeds)  # one per seed
        source = sources[0]
        variation = None
        for label, model in (("vae", vae), ("old_vae", old_vae)):
            if model is None:
                continue
            varied = [model.vary(src, VARY_STRENGTH, seed=s, refine_steps=refine_steps)
                      for s, src in enumerate(sources)]
            row[f"{label}_ratio"], row[f"{label}_grad_energy"] = variation_figures(varied, sources, judge, base)
            row[f"{label}_exemplar_grad_energy"] = exemplar_sharpness(varied, ex)  # the measure
            if label == "vae":
                variation = varied[0]
        if vae is not None or old_vae is not None:
            row["sources_ratio"] = ratio_of(sources)  # what the variations' inputs read themselves
        rows.append(row)
        panel = [source, instant, fakes[0],
                 variation if variation is not None else np.zeros_like(source)]
        strip.append(np.concatenate([np.asarray(p[:size, :size], np.float32) for p in panel], axis=1))
    extra = {"gan_wrap_error": wrap_error(gan), "steps": gan.config.get("steps")}
    if time_2048:
        gan.generate(256, 256, seed=0, material=gan.materials[0])
        times = []
        for seed in range(3):  # the median: one call read 2.96 s where the next four on the same machine 1.7-1.9
            start = time.perf_counter()
            gan.generate(2048, 2048, seed=seed, material=gan.materials[0])
            times.append(time.perf_counter() - start)
        extra["gan_2048_seconds"] = float(np.median(times))
    # Interpolation strip between the first and the last material (and a second pair).
    interp = []
    names = gan.materials
    pairs = [(names[0], names[-1])] + ([(names[3], names[4])] if len(names) > 4 else [])
    for a, b in pairs:
        interp.append(np.concatenate([gan.generate(160, 160, seed=3, material={a: 1 - t, b: t})
                                      for t in np.linspace(0, 1, 6)], axis=1))
    return rows, extra, [strip, interp]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # The training's latest (beside their states in models/training/; tools/zoo/gan.py, gan_vae.py); the bundled
    # copies are under models/ at tools/zoo/gan.py's and gan_vae.py's BUNDLED.
    parser.add_argument("--gan", default=str(ROOT / "models/training/materials_gan.safetensors"))
    parser.add_argument("--vae", default=str(ROOT / "models/training/materials_gan_vae.safetensors"))
    parser.add_argument("--old-vae", default=str(ROOT / "models/texture_vae/previous/materials.safetensors"),
                        help="the baseline VAE (default: the previous bundled one, trained on procedural exemplars)")
    parser.add_argument("--out", default="eval_materials.png")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="one seed, 16 seam outputs of 128 px (less than "
                        "half the time; the seam ratio is then scattered by +-0.2)")
    parser.add_argument("--refine-steps", type=int, default=None,
                        help="the VAEs' Refine Steps (default: the panel's; 0: the encoder's one-pass reading)")
    parser.add_argument("--cell", type=int, default=None,
                        help="resize every panel to CELL x CELL pixels (a compact sheet for the README; .jpg works)")
    args = parser.parse_args(argv)
    from core.common.images import save_image

    if not Path(args.gan).is_file():
        from tools.zoo.gan import model_path
        how = ("write it from its training state: python build.py models --only gan --minutes 0"
               if Path(args.gan) == model_path() else "check the --gan path")
        print(f"eval_materials: {args.gan} is missing; {how}", file=sys.stderr)
        return 1

    start = time.perf_counter()
    rows, extra, (strip, interp) = evaluate(Path(args.gan), Path(args.vae), Path(args.old_vae),
                                            1 if args.quick else args.seeds, 16 if args.quick else 128,
                                            seam_side=128 if args.quick else 256, refine_steps=args.refine_steps)
    keys = ["gan_ratio", "gan_seam", "instant_ratio", "vae_ratio", "vae_grad_energy", "vae_exemplar_grad_energy",
            "old_vae_ratio", "old_vae_grad_energy", "sources_ratio"]
    print("material              " + " ".join(f"{k:>13}" for k in keys))
    for r in rows:
        print(f"{r['material']:<22}" + " ".join(f"{r[k]:>13.3f}" if k in r else f"{'-':>13}" for k in keys))
    print("targets: gan_ratio <= 1.6, gan_seam <= 1.02, vae_ratio <= 1.6, vae_exemplar_grad_energy >= 0.85 (the "
          "issue's; vae_grad_energy, over each variation's own crop, is stricter) (ratios: VGG19 SW distance / the "
          "exemplar's own random crops')")
    for k in keys:
        values = [r[k] for r in rows if k in r]
        if values:
            print(f"mean {k}: {np.mean(values):.3f}  worst: {max(values) if 'energy' not in k else min(values):.3f}")
    print("GAN seam, the same outputs rolled (an inner boundary as the border; the measure where there is no seam): "
          + ", ".join(f"{r['material']} {min(r['gan_seam_rolled']):.3f}-{max(r['gan_seam_rolled']):.3f}" for r in rows))
    print("GAN seam of non-tileable outputs (the measure where there is a seam): "
          + ", ".join(f"{r['material']} {r['gan_seam_plain']:.2f}" for r in rows))
    print(f"GAN wrap: the image of a 2x2-tiled canvas is the image tiled 2x2 within {extra['gan_wrap_error']:.1e}")
    if "gan_2048_seconds" in extra:
        print(f"GAN 2048x2048: {extra['gan_2048_seconds']:.2f} s (target <= 3 s)")
    if args.cell:
        from core.common.images import resize_rgb

        def cells(row: np.ndarray, n: int) -> np.ndarray:  # a row of n square panels, each to cell x cell
            side = row.shape[0]
            return np.concatenate([resize_rgb(row[:, i * side:(i + 1) * side], args.cell, args.cell)
                                   for i in range(n)], axis=1)
        strip = [cells(s, s.shape[1] // s.shape[0]) for s in strip]
        interp = [cells(s, s.shape[1] // s.shape[0]) for s in interp]
    width = max(s.shape[1] for s in strip)
    sheet = np.concatenate([np.pad(s, ((0, 0), (0, width - s.shape[1]), (0, 0))) for s in strip], axis=0)
    out = Path(args.out)
    save_image(out, np.clip(sheet, 0, 1))
    interp_out = out.with_name(out.stem + "_interpolation" + out.suffix)
    save_image(interp_out, np.clip(np.concatenate(interp, axis=0), 0, 1))
    print(f"wrote {out} (exemplar | instant | GAN | VAE variation) and {interp_out.name} "
          f"in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
