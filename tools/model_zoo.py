"""The bundled default models: how each is made, and the manifest that records it.

``python build.py models`` runs every recipe below through the public CLI, so
the command stored in ``models/manifest.json`` is exactly what reproduces the
checkpoint. Training data is made by the project itself (procedural exemplars
from ``core.common.procedural``) or is public domain (the paintings in
``../shared/data/styles``, licences in their SOURCES.md).
"""

from __future__ import annotations

import json
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
EXEMPLARS = MODELS / "exemplars"
STYLES = ROOT.parent / "shared" / "data" / "styles"
STYLE_FRAMES = ROOT / "build_cache" / "style_frames"
EXEMPLAR_SIZE = 256


@dataclass
class Recipe:
    name: str  # file stem and id
    label: str  # what the artist sees
    kind: str  # texture_gan, texture_vae, style_transfer
    args: list[str]  # CLI arguments after "python -m core --device DEVICE"
    out: str  # checkpoint path relative to the repo root
    steps: int
    seed: int
    data: list[str] = field(default_factory=list)  # training files, relative to the repo root or ../shared
    source: str = ""


def _gan(name: str, label: str, steps: int, seed: int) -> Recipe:
    out = f"models/texture_gan/{name}.safetensors"
    ex = f"models/exemplars/{name}.png"
    return Recipe(name, label, "texture_gan",
                  ["texture", "train", "--exemplar", ex, "--out", out, "--steps", str(steps), "--seed", str(seed)],
                  out, steps, seed, [ex], f"procedural {name}(size={EXEMPLAR_SIZE}, seed=0), core/common/procedural.py")


def recipes(style_steps: int = 1500, gan_steps: int = 1500, vae_steps: int = 500) -> list[Recipe]:
    vae_data = [f"models/exemplars/{n}.png" for n in ("stones", "rust", "bricks", "wood")]
    style_out = "models/style/{}.safetensors"
    return [
        _gan("bricks", "Red Bricks", gan_steps, 1),
        _gan("wood", "Wood Grain", gan_steps, 2),
        _gan("stones", "Cobble Stones", gan_steps, 3),
        _gan("rust", "Rusty Metal", gan_steps, 4),
        Recipe("materials", "Materials VAE (stones, rust, bricks, wood)", "texture_vae",
               ["vae", "train", "--exemplar", *vae_data, "--out", "models/texture_vae/materials.safetensors",
                "--steps", str(vae_steps), "--seed", "5"],
               "models/texture_vae/materials.safetensors", vae_steps, 5, vae_data,
               "procedural stones, rust, bricks, wood (size=256, seed=0)"),
        *[Recipe(style, label, "style_transfer",
                 ["style", "train", "--style", f"../shared/data/styles/{style}.jpg", "--frames",
                  "build_cache/style_frames", "--out", style_out.format(style), "--steps", str(style_steps),
                  "--seed", str(seed)],
                 style_out.format(style), style_steps, seed, [f"../shared/data/styles/{style}.jpg"],
                 f"{label} (public domain, ../shared/data/styles/SOURCES.md); training frames made by "
                 "tools/model_zoo.py write_style_frames()")
          for style, label, seed in (("starry_night", "Starry Night (van Gogh)", 6),
                                     ("wave", "Great Wave (Hokusai)", 7))],
    ]


def write_exemplars() -> list[Path]:
    """Procedural exemplars, deterministic: the GAN and VAE training data."""
    sys.path.insert(0, str(ROOT))
    from core.common import procedural
    from core.common.images import save_image

    EXEMPLARS.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in procedural.EXEMPLARS:
        paths.append(save_image(EXEMPLARS / f"{name}.png", procedural.make_exemplar(name, EXEMPLAR_SIZE, seed=0)))
    (EXEMPLARS / "SOURCES.md").write_text(
        "# Texture exemplars\n\nMade by this project: `core/common/procedural.py`, "
        f"`make_exemplar(name, size={EXEMPLAR_SIZE}, seed=0)` (written by `python build.py models`). "
        "No third-party content; CC0.\n")
    return paths


def write_style_frames(count: int = 24, size: int = 256) -> Path:
    """Training frames for the fast style models, made by the project.

    Render-like compositions: procedural surfaces as backgrounds with shaded
    discs and boxes in front (so the nets learn to keep object edges), plus
    crops at several scales. Deterministic.
    """
    sys.path.insert(0, str(ROOT))
    from core.common import procedural
    from core.common.images import save_image

    STYLE_FRAMES.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = list(procedural.EXEMPLARS)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(count):
        frame = procedural.make_exemplar(names[i % len(names)], size, seed=100 + i).copy()
        sky = np.stack([0.4 + 0.4 * (1 - yy), 0.5 + 0.3 * (1 - yy), 0.8 + 0.0 * yy], axis=-1)
        frame[: size // 3] = 0.5 * frame[: size // 3] + 0.5 * sky[: size // 3]
        for _ in range(rng.integers(2, 5)):
            cy, cx, r = rng.random() * 0.8 + 0.1, rng.random() * 0.8 + 0.1, rng.random() * 0.15 + 0.05
            color = rng.random(3)
            d = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
            shade = np.clip(1 - ((yy - cy + r / 2) ** 2 + (xx - cx + r / 2) ** 2) / (2 * r * r), 0.2, 1)
            if rng.random() < 0.5:
                mask = d < r
            else:
                mask = (np.abs(yy - cy) < r) & (np.abs(xx - cx) < r * 1.3)
            frame[mask] = (color[None, :] * shade[mask][:, None]).astype(np.float32)
        save_image(STYLE_FRAMES / f"frame_{i:03d}.png", np.clip(frame, 0, 1))
    return STYLE_FRAMES


def _fingerprint(paths: list[str]) -> str:
    from core.common.checkpoints import fingerprint_files

    return fingerprint_files([(ROOT / p).resolve() for p in paths])


def _quality(recipe: Recipe) -> dict:
    """Measured figures for the manifest, each with its same-run baseline; writes the thumbnail."""
    from core.common import quality
    from core.common.images import load_rgb, save_image

    ckpt = ROOT / recipe.out
    thumb = ckpt.with_suffix(".png")
    if recipe.kind == "texture_gan":
        from core.texture_gan import load_texture_gan

        exemplar = load_rgb(ROOT / recipe.data[0])
        gen = load_texture_gan(ckpt, device="cpu")
        samples = [gen.generate(256, 256, seed=s, tileable=True) for s in range(4)]
        save_image(thumb, samples[0][::2, ::2])
        rng = np.random.default_rng(0)
        crops = []
        for _ in range(4):
            y, x = rng.integers(0, exemplar.shape[0] - 128, 2)
            crops.append(exemplar[y:y + 128, x:x + 128])
        return {
            "stats_distance": float(np.mean([quality.texture_stats_distance(s, exemplar) for s in samples])),
            "stats_distance_baseline_random_crop": float(np.mean([quality.texture_stats_distance(c, exemplar) for c in crops])),
            "seam_score_mean": float(np.mean([quality.seam_score(s) for s in samples])),
            "seam_score_baseline_exemplar": float(quality.seam_score(exemplar)),
            "copied_fraction": float(np.mean([quality.copy_check(s, [exemplar]).copied_fraction for s in samples])),
        }
    if recipe.kind == "texture_vae":
        from core.texture_vae import load_texture_vae

        vae = load_texture_vae(ckpt, device="cpu")
        exemplars = [load_rgb(ROOT / p) for p in recipe.data]
        recs = [vae.reconstruct(e) for e in exemplars]
        blend = vae.blend([exemplars[0], exemplars[1]], t=0.5)
        save_image(thumb, np.concatenate([recs[0][::2, ::2], blend[::2, ::2]], axis=1)[:, :128])
        psnr = [float(-10 * np.log10(np.mean((r - e) ** 2) + 1e-12)) for r, e in zip(recs, exemplars)]
        return {"reconstruction_psnr_db": float(np.mean(psnr)),
                "variation_stats_distance": float(np.mean([quality.texture_stats_distance(vae.vary(e, 0.5, seed=1), e)
                                                           for e in exemplars]))}
    if recipe.kind == "style_transfer":
        from core.style import load_style_model

        model = load_style_model(ckpt, device="cpu")
        frame = load_rgb(sorted(STYLE_FRAMES.glob("*.png"))[0]) if STYLE_FRAMES.exists() else load_rgb(EXEMPLARS / "bricks.png")
        styled = model.stylize(frame)
        save_image(thumb, styled[::2, ::2])
        style = load_rgb(ROOT / recipe.data[0])
        return {"style_stats_distance": quality.texture_stats_distance(styled, style),
                "style_stats_distance_baseline_unstyled": quality.texture_stats_distance(frame, style)}
    raise ValueError(recipe.kind)


def train(only: list[str] | None, device: str, steps_scale: float = 1.0) -> Path:
    """Run the recipes (all, or those named in ``only``) and update models/manifest.json."""
    sys.path.insert(0, str(ROOT))
    write_exemplars()
    write_style_frames()
    manifest_path = MODELS / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"models": []}
    entries = {m["name"]: m for m in manifest["models"]}
    for recipe in recipes():
        if only and recipe.name not in only:
            continue
        if steps_scale != 1.0:
            recipe.steps = max(1, int(recipe.steps * steps_scale))
            recipe.args[recipe.args.index("--steps") + 1] = str(recipe.steps)
        ckpt = ROOT / recipe.out
        for stale in (ckpt, ckpt.with_suffix(".train.safetensors")):
            stale.unlink(missing_ok=True)
        command = ["python", "-m", "core", "--device", device, *recipe.args]
        print(f"model_zoo: {shlex.join(command)}", flush=True)
        start = time.perf_counter()
        subprocess.run([sys.executable, *command[1:]], cwd=ROOT, check=True)
        seconds = time.perf_counter() - start
        ckpt.with_suffix(".train.safetensors").unlink(missing_ok=True)  # resume state is not shipped
        entries[recipe.name] = {
            "name": recipe.name, "label": recipe.label, "kind": recipe.kind,
            "file": str(Path(recipe.out).relative_to("models")),
            "thumbnail": str(Path(recipe.out).with_suffix(".png").relative_to("models")),
            "command": shlex.join(command), "seed": recipe.seed, "steps": recipe.steps,
            "data": recipe.data, "data_fingerprint": _fingerprint(recipe.data), "source": recipe.source,
            "training_seconds": round(seconds, 1),
            "trained_on": f"{device} ({platform.machine()}, {platform.system()})",
            "size_mb": round(ckpt.stat().st_size / 1e6, 2),
            "quality": _quality(recipe),
        }
        manifest["models"] = [entries[r.name] for r in recipes() if r.name in entries]
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
        print(f"model_zoo: {recipe.name} done in {seconds:.0f}s: {entries[recipe.name]['quality']}", flush=True)
    return manifest_path
