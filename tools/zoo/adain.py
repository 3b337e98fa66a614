"""AdaIN decoder (*Any Painting (Fast)*): time-budgeted, resumable training (``build.py models --only adain``).

The model is written to ``<out_dir>/training/adain.safetensors`` and its state
(model + optimizer + step + RNG + history, a few MB) to
``<out_dir>/training/adain.train.safetensors``; both are committed so the next
session continues. Shipping is copying the model to
``models/style/adain_decoder.safetensors`` once it meets the targets
(``tools/eval_fast_styles.py --ship adain``).

Held out of training (the bench and the evaluation measure AdaIN on
paintings it never saw): ``HELD_OUT``.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from . import MODELS, ROOT, _common

PROFILES = ("cpu", "gpu", "tiny")
HELD_OUT = ("starry_night", "the_kiss", "composition_vii", "four_girls")
PAINTINGS = ROOT / "data" / "paintings"
CONTENT = (ROOT / "data" / "content", ROOT / "models" / "content_frames")
SEED = 0


def recipe_for(profile: str):
    from core.style.adain_train import AdaINRecipe

    if profile == "cpu":
        return AdaINRecipe()
    if profile == "gpu":  # same decoder; larger crops and batches, bf16 on CUDA; the paper's losses from the
        # CPU's reconstruction decoder on (a GPU affords them)
        return replace(AdaINRecipe(), phases=((0, 256, 8, 1024), (4000, 512, 4, 256)), bf16_autocast=True,
                       checkpoint_seconds=120.0, reconstruction_from=None)
    if profile == "tiny":
        return AdaINRecipe(decoder={"widths": [16, 8, 8], "extra_convs": [1, 0, 0], "entry_kernel": 1},
                           phases=((0, 32, 2, 8), (6, 48, 2, 4)), pool_steps=4, warmup_steps=2, style_sizes=(64,),
                           recoloured=1, checkpoint_seconds=1.0, reconstruction_from=8, stability_from=3,
                           capped_targets_from=4)
    raise ValueError(f"unknown profile {profile!r}; one of {', '.join(PROFILES)}")


def training_paintings(profile: str) -> list[Path]:
    files = sorted(p for p in PAINTINGS.glob("*.jpg") if p.stem not in HELD_OUT)
    return files[:2] if profile == "tiny" else files


def paths(out_dir: Path) -> tuple[Path, Path]:
    return _common.training_paths(out_dir, "adain")


def train(minutes: float, device: str = "cpu", profile: str = "cpu", out_dir: Path = MODELS,
          warm_start: Path | None = None, max_steps: int | None = None) -> dict:
    from core.style.adain_train import train_adain_budgeted

    model_path, state_path, warm_start = _common.start_style_run(profile, PROFILES, device, out_dir, "adain",
                                                                 warm_start)
    content = CONTENT
    if profile == "tiny":  # seconds on tiny data: a few of the bundled frames
        content = (ROOT / "models" / "content_frames",)
    summary = train_adain_budgeted(
        model_path, state_path, content, training_paintings(profile), minutes, recipe=recipe_for(profile),
        seed=SEED, device=device, profile=profile, max_steps=max_steps if profile != "tiny" else (max_steps or 10),
        warm_start=warm_start, cache_dir=None if profile == "tiny" else ROOT / "build_cache" / "zoo",
        held_out=HELD_OUT, log=lambda line: print(f"adain: {line}", flush=True), content_limit=4 if profile == "tiny" else None)
    return {"name": "adain", "label": "Any Painting (Fast)", "kind": "style_adain",
            "file": str(model_path.relative_to(out_dir.parent) if out_dir == MODELS else model_path),
            "command": f"python build.py models --only adain --minutes {minutes:g} --profile {profile}",
            **_common.budget_entry(summary), "held_out_paintings": list(HELD_OUT),
            "sessions": len(summary["history"])}


def evaluate(model_dir: Path, device: str = "cpu", profile: str = "cpu") -> dict:
    """The decoder under ``model_dir`` on the bench's held-out photo and render with the paintings outside its
    training set (``HELD_OUT``; tools/model_quality.py: cut, content distance, ``stylization_score``; lower is
    better). ``tiny``: 64-px frames and two of the paintings, for the rehearsal."""
    from core.style.adain import load_adain_model
    from tools import model_quality as quality

    model, size, judge, inputs = _common.style_evaluation(paths(Path(model_dir))[0], load_adain_model, "AdaIN decoder",
                                                          model_dir, device, profile)
    chosen = HELD_OUT[:2] if profile == "tiny" else HELD_OUT
    rows = {}
    for name in chosen:
        painting = quality.painting(name)
        for kind, frame in inputs.items():
            out = model.stylize(frame, painting, style_size=size)
            rows[f"{name}/{kind}"] = quality.measure(judge, out, frame, painting, name)
    # A painting the decoder trained on would flatter it: say so beside the figures.
    seen = sorted(set(model.config.get("paintings") or []) & {f"{n}.jpg" for n in chosen})
    return {**quality.style_figures(rows), "steps": model.config.get("steps_done"), "frame_px": size,
            "held_out_paintings": list(chosen), **({"seen_in_training": seen} if seen else {})}


if __name__ == "__main__":  # python -m tools.zoo.adain MINUTES [PROFILE]
    print(train(float(sys.argv[1]), profile=sys.argv[2] if len(sys.argv) > 2 else "cpu"))
