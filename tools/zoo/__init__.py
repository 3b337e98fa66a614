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

Files under ``out_dir`` are laid out as under ``models/`` (``out_dir/style/x.safetensors`` is installed as
``models/style/x.safetensors``). ``build.py gpu-run`` trains each model with ``profile="gpu"`` in a fresh
``out_dir`` of its own and passes no ``warm_start``: then the module continues from its own CPU-trained
checkpoint under ``MODELS`` when there is one (``tiny`` may ignore it). A module may also define

    def evaluate(model_dir: Path, device: str = "cpu", profile: str = "cpu") -> dict

which measures the checkpoint(s) under ``model_dir`` (laid out as above) on fixed held-out inputs and returns its
quality figures with a headline ``"score"`` (lower is better; same inputs and seeds for any ``model_dir``, so two
folders compare); ``profile="tiny"`` measures on tiny inputs for the rehearsal. It raises ``FileNotFoundError``
when ``model_dir`` holds no such model. ``build.py gpu-run`` keeps a GPU-trained model only where its score beats
the CPU-trained one's (or there is none), and then installs everything its ``out_dir`` holds, resume state
included (so the next CPU session continues the GPU's model); a module without ``evaluate`` is never kept.
``$NEURAL_TEXTURES_ZOO_PATH`` (folders, ``os.pathsep``-separated) adds modules from elsewhere: tests use it.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
# Extra folders of training modules (tests' fakes); importlib finds tools.zoo.<name> in any of __path__.
__path__ = [*__path__, *(p for p in os.environ.get("NEURAL_TEXTURES_ZOO_PATH", "").split(os.pathsep) if p)]


def names() -> list[str]:
    """Every time-budgeted training in this folder, by module name."""
    return sorted({m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")})


def recipe(name: str) -> ModuleType:
    if name not in names():
        raise SystemExit(f"build.py models: no time-budgeted training named {name!r}; known: {', '.join(names()) or 'none'}")
    return importlib.import_module(f"tools.zoo.{name}")
