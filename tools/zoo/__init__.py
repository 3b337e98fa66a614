"""Time-budgeted, resumable trainings of the bundled models (``python build.py models --only NAME --minutes N``).

One module per bundled model in this folder (``adain.py``, ``styles.py``, ``gan.py``, ``vae.py``, ...), each with

    PROFILES = ("cpu", "gpu", "tiny")
    def train(minutes: float, device: str = "cpu", profile: str = "cpu", out_dir: Path = MODELS,
              warm_start: Path | None = None) -> dict

``train`` continues from the checkpoint in ``out_dir`` (model + optimizer + step) when there is one, trains for
at most ``minutes`` of wall time, always stops with a checkpoint that the next call continues, and returns the
model's manifest entry (command, steps, minutes, machine, quality where measured). ``profile`` picks the recipe's
sizes: ``cpu`` is what this project's 2-core machines train, ``gpu`` the same architecture with larger crops and
batches for a lent GPU (``warm_start`` names the CPU checkpoint to continue from), ``tiny`` a seconds-long run on
tiny data for tests and the GPU rehearsal. The module names are discovered, so adding a model is adding a file.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"


def names() -> list[str]:
    """Every time-budgeted training in this folder, by module name."""
    return sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if not m.name.startswith("_"))


def recipe(name: str) -> ModuleType:
    if name not in names():
        raise SystemExit(f"build.py models: no time-budgeted training named {name!r}; known: {', '.join(names()) or 'none'}")
    return importlib.import_module(f"tools.zoo.{name}")
