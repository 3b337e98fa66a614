"""Where ``core`` lives: vendored inside the add-on (packaged extension) or the repo root (development).

One place decides, for both the in-process imports (``core.library``, which
needs neither torch nor Pillow) and the worker's PYTHONPATH.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

ADDON_DIR = Path(__file__).resolve().parent


def core_parent() -> Path:
    """The folder that contains the ``core`` package."""
    if (ADDON_DIR / "core" / "__init__.py").is_file():  # packaged: core vendored in the add-on
        return ADDON_DIR
    repo = ADDON_DIR.parent
    if (repo / "core" / "__init__.py").is_file():  # development checkout
        return repo
    raise ImportError("the 'core' package was not found inside the add-on nor beside it; reinstall the extension")


def models_dir() -> Path:
    """The bundled default models: ``models/`` beside ``core``."""
    return core_parent() / "models"


def core_module(name: str = ""):
    """Import ``core`` or ``core.<name>`` (the vendored copy when packaged)."""
    parent = core_parent()
    if parent == ADDON_DIR:
        package = __package__ + ".core"
    else:
        if str(parent) not in sys.path:
            sys.path.append(str(parent))
        package = "core"
    return importlib.import_module(f"{package}.{name}" if name else package)


def library():
    return core_module("library")
