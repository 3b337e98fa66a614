"""The bundled fast styles: ONE multi-style network (conditional instance norm), time-budgeted and resumable.

``python build.py models --only styles --minutes N`` trains every style in
``STYLES`` at once, writing ``<out_dir>/training/fast_styles.safetensors`` and
its state (model + optimizer + step + RNG + history) beside it as
``fast_styles.train.safetensors``; both are committed so the next session
continues. Shipping is copying the model to ``models/style/fast_styles.safetensors``
(``tools/eval_fast_styles.py --ship styles``).
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from . import MODELS, ROOT, _common

PROFILES = ("cpu", "gpu", "tiny")
PAINTINGS = ROOT / "data" / "paintings"
CONTENT = (ROOT / "data" / "content", ROOT / "models" / "content_frames")
SEED = 0
# (file stem in data/paintings, what the panel shows): eight manners that look nothing alike.
STYLES = (
    ("starry_night", "Starry Night (van Gogh)"),
    ("wave", "The Great Wave (Hokusai)"),
    ("water_lilies", "Water Lilies (Monet)"),
    ("composition_vii", "Composition VII (Kandinsky)"),
    ("the_seine_at_la_grande_jatte", "La Grande Jatte (Seurat)"),
    ("contrast_of_forms", "Contrast of Forms (Léger)"),
    ("udnie", "Udnie (Picabia)"),
    ("street_berlin", "Street, Berlin (Kirchner)"),
)


def recipe_for(profile: str):
    from core.style.multistyle_train import MultiStyleRecipe

    if profile == "cpu":
        return MultiStyleRecipe()
    if profile == "gpu":  # same network; larger crops and batches, bf16 on CUDA
        return replace(MultiStyleRecipe(), phases=((0, 256, 8, 1024), (6000, 384, 8, 512)), bf16_autocast=True,
                       checkpoint_seconds=120.0)
    if profile == "tiny":
        return MultiStyleRecipe(base_channels=4, residual_blocks=1, phases=((0, 32, 2, 8), (6, 48, 2, 4)),
                                pool_steps=4, style_size=64, checkpoint_seconds=1.0, stability_from=3,
                                extend_from=7, extend_styles=("wave",),  # the rehearsal crosses every phase
                                style_palette_strengths=(("wave", 0.3),))
    raise ValueError(f"unknown profile {profile!r}; one of {', '.join(PROFILES)}")


def style_list(profile: str) -> list[dict]:
    chosen = STYLES[:2] if profile == "tiny" else STYLES
    return [{"name": name, "label": label, "painting": PAINTINGS / f"{name}.jpg"} for name, label in chosen]


def paths(out_dir: Path) -> tuple[Path, Path]:
    return _common.training_paths(out_dir, "fast_styles")


def train(minutes: float, device: str = "cpu", profile: str = "cpu", out_dir: Path = MODELS,
          warm_start: Path | None = None, max_steps: int | None = None) -> dict:
    from core.style.multistyle_train import train_multistyle_budgeted

    model_path, state_path, warm_start = _common.start_style_run(profile, PROFILES, device, out_dir, "fast_styles",
                                                                 warm_start)
    summary = train_multistyle_budgeted(
        model_path, state_path, CONTENT, style_list(profile), minutes, recipe=recipe_for(profile), seed=SEED,
        device=device, profile=profile, max_steps=max_steps if profile != "tiny" else (max_steps or 10),
        warm_start=warm_start, content_limit=4 if profile == "tiny" else None,
        log=lambda line: print(f"styles: {line}", flush=True))
    return {"name": "fast_styles", "label": "Bundled Styles", "kind": "style_multi",
            "file": str(model_path), "styles": [name for name, _ in STYLES],
            "command": f"python build.py models --only styles --minutes {minutes:g} --profile {profile}",
            **_common.budget_entry(summary), "sessions": len(summary["history"])}


def evaluate(model_dir: Path, device: str = "cpu", profile: str = "cpu") -> dict:
    """The network under ``model_dir`` on the bench's held-out photo and render, every style of
    ``style_list(profile)`` (tools/model_quality.py: cut, content distance, ``stylization_score``; lower is
    better). ``tiny``: 64-px frames and the tiny training's two styles, for the rehearsal."""
    from core.style.multistyle import load_multistyle_model
    from tools import model_quality as quality

    model, size, judge, inputs = _common.style_evaluation(paths(Path(model_dir))[0], load_multistyle_model, "fast styles network",
                                                          model_dir, device, profile)
    wanted = [s["name"] for s in style_list(profile)]
    missing = [name for name in wanted if name not in {s["name"] for s in model.styles}]
    if missing:  # never replaces a network that has them
        return {"score": float("inf"), "missing_styles": missing, "steps": model.config.get("steps_done")}
    rows = {}
    for name in wanted:
        for kind, frame in inputs.items():
            rows[f"{name}/{kind}"] = quality.measure(judge, model.stylize(frame, name), frame,
                                                     quality.painting(name), name)
    return {**quality.style_figures(rows), "steps": model.config.get("steps_done"), "frame_px": size}


if __name__ == "__main__":  # python -m tools.zoo.styles MINUTES [PROFILE]
    print(train(float(sys.argv[1]), profile=sys.argv[2] if len(sys.argv) > 2 else "cpu"))
