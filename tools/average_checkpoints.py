"""Average the weights of checkpoints from one training (checkpoint averaging, as in SWA and model soups).

    PYTHONPATH=. .venv/bin/python tools/average_checkpoints.py --out OUT.safetensors EARLIER.safetensors LATER.safetensors
        [--weights 0.5 0.5]

Why: a decoder trained with Adam at a constant-ish rate wanders around a good region rather than settling in it;
the mean of two of its checkpoints a few thousand steps apart sits nearer the middle (Izmailov et al. 2018,
"Averaging Weights Leads to Wider Optima"). Measured on the AdaIN decoder (2026-12-01): the mean of its
checkpoints at 12,264 and 14,735 steps beat both on every held-out painting's style cut and content distance,
on the bench's frames and on three frames never used to choose anything.

Only checkpoints of one training average meaningfully (a shared start and trajectory), so the files must have the
same kind, tensors and configuration apart from the step and the history, and each earlier file's history must be
a prefix of the last one's. The output takes the last file's configuration, and ``averaged_from`` records every
source (steps, weight). Tensors are averaged in float32 and written as float32 (``tools/half_models.py`` halves a
bundled copy); non-float tensors must be equal.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.common.checkpoints import CheckpointError, load_checkpoint, model_fields, save_checkpoint  # noqa: E402

# Keys that differ between two checkpoints of one training (the rest must match). ``training`` holds the recipe's
# loss weights and schedule, which a running training may take up between sessions (the AdaIN decoder's stability
# term from step 14,735); the architecture is stored apart from it, and the history proves the lineage.
RUN_KEYS = ("steps_done", "history", "averaged_from", "core_version", "format", "format_version", "kind", "training")


def _history_entries(config: dict) -> list[dict]:
    return list(config.get("history") or [])


def _same_training(earlier: dict, later: dict) -> bool:
    """``earlier``'s sessions are the first sessions of ``later`` (the last may have run on since)."""
    old, new = _history_entries(earlier), _history_entries(later)
    if not old or len(old) > len(new):
        return False
    if old[:-1] != new[:len(old) - 1]:
        return False
    last, same = old[-1], new[len(old) - 1]
    # The earlier file may have been written mid-session: that session's start matches, its end is not later.
    return (all(last.get(k) == same.get(k) for k in ("start_step", "date", "machine", "profile", "content"))
            and int(last.get("end_step", 0)) <= int(same.get("end_step", 0)))


def _sources(paths: Sequence[Path], configs: Sequence[dict], weights: Sequence[float]) -> list[dict]:
    """Every checkpoint the mean is made of, with its share: a source that is itself a mean contributes its own
    sources, their weights scaled by its own (a mean of a mean records the checkpoints it is made of)."""
    out: list[dict] = []
    for p, config, w in zip(paths, configs, weights):
        inner = config.get("averaged_from")
        parts = ([{**s, "weight": s["weight"] * w} for s in inner] if inner
                 else [{"file": p.name, "steps_done": config.get("steps_done"), "weight": w}])
        for part in parts:
            same = next((o for o in out if o["steps_done"] == part["steps_done"]), None)
            if same is not None:
                same["weight"] += part["weight"]
            else:
                out.append(part)
    return out


def average_model_files(paths: Sequence[str | Path], out: str | Path,
                        weights: Sequence[float] | None = None) -> dict:
    """Write the weighted mean of ``paths`` (checkpoints of one training, oldest first) to ``out``; returns its
    config."""
    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        raise ValueError("give at least two checkpoints to average")
    weights = [1.0 / len(paths)] * len(paths) if weights is None else [float(w) for w in weights]
    if len(weights) != len(paths) or any(w < 0 for w in weights) or abs(sum(weights) - 1.0) > 1e-6:
        raise ValueError(f"one non-negative weight per checkpoint, summing to 1 (got {weights})")
    loaded = [load_checkpoint(p) for p in paths]
    (last_tensors, last_config) = loaded[-1]
    kind = last_config.get("kind")
    for p, (tensors, config) in zip(paths[:-1], loaded[:-1]):
        if config.get("kind") != kind:
            raise CheckpointError(f"{p.name} is a {config.get('kind')} model, {paths[-1].name} a {kind} one")
        differing = sorted(k for k in set(config) | set(last_config)
                           if k not in RUN_KEYS and config.get(k) != last_config.get(k))
        if differing:
            raise CheckpointError(f"{p.name} and {paths[-1].name} differ in {', '.join(differing)}: "
                                  "not checkpoints of one training")
        if not _same_training(config, last_config):
            raise CheckpointError(f"{p.name}'s history is not the start of {paths[-1].name}'s: "
                                  "not checkpoints of one training")
        if tensors.keys() != last_tensors.keys() or any(t.shape != last_tensors[k].shape for k, t in tensors.items()):
            raise CheckpointError(f"{p.name} and {paths[-1].name} hold different tensors")
    averaged: dict[str, torch.Tensor] = {}
    for key, reference in last_tensors.items():
        if reference.is_floating_point():
            averaged[key] = sum(w * t[key].float() for w, (t, _) in zip(weights, loaded)).contiguous()
        else:
            if any(not torch.equal(t[key], reference) for t, _ in loaded):
                raise CheckpointError(f"{key} is not a float tensor and differs between the checkpoints")
            averaged[key] = reference.clone()
    config = model_fields(last_config)
    config["averaged_from"] = _sources(paths, [c for _, c in loaded], weights)
    save_checkpoint(out, averaged, config, kind)
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", help="model files of one training, oldest first")
    parser.add_argument("--out", required=True, help="the averaged model file (.safetensors)")
    parser.add_argument("--weights", type=float, nargs="+", default=None, help="one per checkpoint (default equal)")
    args = parser.parse_args(argv)
    try:
        config = average_model_files(args.checkpoints, args.out, args.weights)
    except (CheckpointError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    sources = ", ".join(f"{s['steps_done']} steps x {s['weight']:g}" for s in config["averaged_from"])
    print(f"{args.out}: mean of {sources}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
