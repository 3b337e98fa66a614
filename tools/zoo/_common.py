"""Plumbing shared by the zoo's training modules (the leading underscore keeps ``tools.zoo.names()`` from
listing it as a training): state paths, ``find_model`` messages, thumbnail grids, manifest entries, the
style trainings' start."""

from __future__ import annotations

import os
import platform
from pathlib import Path

from . import MODELS


def state_path(out_dir: Path, key: str) -> Path:
    """The committed training state of the model ``key`` (``gan``, ``vae``) under ``out_dir``."""
    return Path(out_dir) / "training" / f"{key}.train.safetensors"


def writable_state_path(out_dir: Path, key: str) -> Path:
    """``state_path`` for a materials training about to write it: its folder made."""
    path = state_path(out_dir, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def find_model(path: Path, state: Path, key: str) -> tuple[Path | None, str]:
    """(the model file, "") or (None, how to get it: from the committed state, else by training)."""
    if path.is_file():
        return path, ""
    how = (f"write it from the committed training state with `python build.py models --only {key} --minutes 0`"
           if state.is_file() else f"train it with `python build.py models --only {key} --minutes 60`")
    return None, f"{path} is missing; {how}"


def bundled_or_training(out_dir: Path, bundled: str, find) -> tuple[Path | None, str]:
    """(the bundled copy ``out_dir/bundled``, "bundled") when there is one, else (``find(out_dir)``'s model or None,
    "in training" or why it is missing): what the benches measure."""
    path = Path(out_dir) / bundled
    if path.is_file():
        return path, "bundled"
    found, missing = find(out_dir)
    return found, ("in training" if found is not None else missing)


def save_grid(path: Path, tiles: list):
    """The tiles (equal-sized arrays) in a square grid, padded with black, saved as ``path``."""
    import math

    import numpy as np

    from core.common.images import save_image

    side = math.ceil(math.sqrt(len(tiles)))
    tiles = tiles + [np.zeros_like(tiles[0])] * (side * side - len(tiles))
    grid = np.concatenate([np.concatenate(tiles[r * side:(r + 1) * side], axis=1) for r in range(side)], axis=0)
    return save_image(path, grid)


def materials_entry(out_dir: Path, path: Path, thumbnail: Path, config: dict, materials, *, key: str, name: str,
                    label: str, kind: str, recipe: str, seed: int, device: str, minutes: float | None,
                    losses: dict | None) -> dict:
    """The manifest entry of a materials model still in training, merged into the ``training`` list of
    ``out_dir/manifest.json`` when there is one (not ``models``: the add-on lists those as bundled defaults)."""
    profile = config.get("profile", "cpu")
    entry = {
        "name": name, "label": label, "kind": kind,
        "file": str(path.relative_to(out_dir)), "thumbnail": str(thumbnail.relative_to(out_dir)),
        "command": f"python build.py models --only {key} --minutes {minutes if minutes is not None else 60:g} "
                   f"--profile {profile}  (continues the committed training state)",
        "seed": seed, "steps": config["steps"], "profile": profile,
        "materials": [{"name": n, "label": m_label, "exemplars": [rel]} for n, m_label, rel in materials],
        "data": [rel for _, _, rel in materials],
        "recipe": recipe,
        "training_seconds": config.get("training_seconds"),
        "trained_on": f"{device} ({platform.machine()}, {platform.system()})",
        "size_mb": round(path.stat().st_size / 1e6, 2),
    }
    manifest = out_dir / "manifest.json"
    if manifest.exists():
        entry["trained_on"] = machines_so_far(manifest, name, config["steps"], entry["trained_on"])
    if losses:
        entry["losses"] = {k: round(v, 5) for k, v in losses.items()}
    if manifest.exists():
        from tools.model_zoo import _update_manifest
        _update_manifest(manifest, entry, section="training")
    return entry


def training_paths(out_dir: Path, stem: str) -> tuple[Path, Path]:
    """(the model, its training state) of a style training: ``training/STEM[.train].safetensors``."""
    folder = Path(out_dir) / "training"
    return folder / f"{stem}.safetensors", folder / f"{stem}.train.safetensors"


def start_style_run(profile: str, profiles: tuple, device: str, out_dir: Path, stem: str,
                    warm_start: Path | None) -> tuple[Path, Path, Path | None]:
    """What the style trainings do first: check the profile, keep to one CPU thread (the machine's other core
    belongs to the other training and the other helpers), and let the GPU profile with no warm start and no
    state of its own continue the CPU-trained state. Returns (model path, state path, warm start)."""
    import torch

    if profile not in profiles:
        raise ValueError(f"unknown profile {profile!r}; one of {', '.join(profiles)}")
    if profile != "gpu" and device == "cpu":
        torch.set_num_threads(int(os.environ.get("NEURAL_TRAIN_THREADS", "1")))
    model_path, state = training_paths(out_dir, stem)
    return model_path, state, gpu_warm_start(profile, warm_start, state, training_paths(MODELS, stem)[1])


def machines_so_far(manifest: Path, name: str, steps: int, machine: str) -> str | list[str]:
    """The machines a continued training has run on: ``machine`` joined to those its ``training`` entry in
    ``manifest`` lists, when that entry had at most ``steps`` steps (this run continued it; a GPU slot's segment
    stays on record after the CPU takes over again). One machine: the string itself."""
    import json

    earlier = next((e for e in json.loads(manifest.read_text()).get("training", []) if e.get("name") == name), {})
    return joined_machines(earlier, steps, machine)


def joined_machines(earlier: dict, steps: int, machine: str) -> str | list[str]:
    """``machines_so_far`` of an entry already read: ``earlier``, the training's previous manifest entry."""
    had = earlier.get("trained_on") if (earlier.get("steps") or 0) <= steps else None
    had = [had] if isinstance(had, str) else list(had or [])
    machines = had + [machine] if machine not in had else had
    return machines[0] if len(machines) == 1 else machines


def gpu_warm_start(profile: str, warm_start: Path | None, state: Path, committed: Path) -> Path | None:
    """The warm start of a training: a GPU run in a fresh folder, given none, continues the committed CPU state."""
    if profile == "gpu" and warm_start is None and not state.exists() and committed.exists():
        return committed
    return warm_start


def budget_entry(summary: dict) -> dict:
    """The fields a style training's manifest entry takes from its budgeted run's summary."""
    total_seconds = sum(s["seconds"] for s in summary["history"])
    return {"steps": summary["steps"], "minutes": round(total_seconds / 60, 1), "machine": summary["machine"],
            "seconds_per_step": summary["seconds_per_step"]}


def style_evaluation(model_path: Path, loader, what: str, model_dir: Path, device: str, profile: str):
    """(model, frame size, judge, held-out inputs) for a style model's ``evaluate``; FileNotFoundError when
    ``model_dir`` holds no such model."""
    from tools import model_quality as quality

    if not Path(model_path).is_file():
        raise FileNotFoundError(f"{model_path}: no {what} in {model_dir}")
    size = quality.style_profile_size(profile)
    return loader(model_path, device), size, quality.judge(device, size), quality.held_out_inputs(size)
