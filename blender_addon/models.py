"""Model lists for the panels: bundled defaults plus the user's library, with thumbnails.

Enum items come from a callback; Blender does not keep the strings alive, so
the lists live in module-level variables (a known Python-API pitfall).

A choice is saved as a *reference* that travels with the .blend (the enum is
a view of the ``model_ref`` string): ``bundled:texture_gan/materials.safetensors``
(the manifest's file entry, inside whichever add-on install opens the file),
``library:my_wood.safetensors`` (relative to this machine's model library),
or an absolute path for a file outside both. A reference that matches no file
is listed as "Missing: ..." and reported, never swapped for another model.
"""

from __future__ import annotations

import time
from pathlib import Path

import bpy
import bpy.utils.previews

from . import core_access, preferences

_previews = None
_items_cache: dict[str, list] = {}  # kind -> enum items; also keeps the strings alive
_models_cache: dict[str, list] = {}
_cache_time = 0.0
CACHE_SECONDS = 2.0
NONE_ITEM = ("NONE", "No model", "No model of this kind in the bundled models or the library", "ERROR", 0)


BUNDLED, LIBRARY = "bundled:", "library:"


def ref_for(path: str | Path) -> str:
    """The portable reference for a model file (see the module docstring)."""
    path = Path(bpy.path.abspath(str(path))).resolve()
    for prefix, folder in ((BUNDLED, core_access.models_dir()), (LIBRARY, _library_folder())):
        if folder is None:
            continue
        try:
            return prefix + path.relative_to(Path(folder).resolve()).as_posix()
        except ValueError:
            continue
    return str(path)


def path_for(ref: str) -> str:
    """The absolute file a reference names on this machine (it may not exist)."""
    if ref.startswith(BUNDLED):
        return str(core_access.models_dir() / ref[len(BUNDLED):])
    if ref.startswith(LIBRARY):
        folder = _library_folder()
        return str(folder / ref[len(LIBRARY):]) if folder is not None else ""
    return bpy.path.abspath(ref) if ref else ""


def _library_folder() -> Path | None:
    try:
        return preferences.library_dir()
    except Exception:  # noqa: BLE001 - a bad folder must not break drawing
        return None


def model_file(path: str) -> str:
    """The file of a model path: one style of a multi-style network is ``file.safetensors#style``."""
    head, sep, tail = str(path).rpartition("#")
    return head if sep and head.endswith(".safetensors") and tail else str(path)


def missing_ref(settings) -> str:
    """The saved reference when its file is not here ('' when fine or nothing chosen)."""
    ref = getattr(settings, "model_ref", "")
    return ref if ref and not Path(model_file(path_for(ref))).is_file() else ""


def choose(settings, path: str | Path) -> None:
    """Select a model file in a settings group (after training, from scripts)."""
    settings.model_ref = ref_for(path)


def refresh() -> None:
    global _cache_time
    _cache_time = 0.0
    _models_cache.clear()


def list_models(kind: str):
    global _cache_time
    now = time.monotonic()
    if now - _cache_time > CACHE_SECONDS:
        _models_cache.clear()
        _cache_time = now
    if kind not in _models_cache:
        library = core_access.library()
        user_folder = _library_folder()
        _models_cache[kind] = library.list_models([user_folder] if user_folder else [], kind=kind,
                                                  bundled_folders=[core_access.models_dir()])
    return _models_cache[kind]


def icon_for(model) -> int:
    if _previews is None or model.thumbnail is None:
        return 0
    key = str(model.thumbnail)
    if key not in _previews:
        _previews.load(key, key, "IMAGE")
    return _previews[key].icon_id


def enum_items(kind: str, ref: str = ""):
    """Items for the model enum: identifiers are references, values their position (never saved)."""
    items = []
    for model in list_models(kind):
        tag = "bundled" if model.bundled else "library"
        items.append((ref_for(model.path), model.name, f"{model.description or model.name} ({tag}: "
                      f"{model.path.name})", icon_for(model), len(items)))
    if ref and all(item[0] != ref for item in items):
        items.append((ref, f"Missing: {Path(model_file(ref.split(':', 1)[-1])).stem}",
                      f"This file chose a model that is not on this computer ({ref})", "ERROR", len(items)))
    key = f"{kind}\n{ref}"
    _items_cache[key] = items or [NONE_ITEM]
    return _items_cache[key]


def enum_get(settings, kind: str) -> int:
    """The enum's value for the saved reference; nothing saved: the first listed model."""
    ref = settings.model_ref
    for identifier, _name, _description, _icon, value in enum_items(kind, ref):
        if identifier == ref:
            return value
    return 0


def enum_set(settings, kind: str, value: int) -> None:
    for identifier, _name, _description, _icon, item_value in enum_items(kind, settings.model_ref):
        if item_value == value:
            settings.model_ref = "" if identifier == "NONE" else identifier
            return


_materials_cache: dict[str, list] = {}  # path -> enum items (kept alive, see the module docstring)


def materials_of(path: str) -> list[tuple[str, str]]:
    """(name, label) of each material of a conditional texture model; [] for one-texture models."""
    if not path or not Path(path).is_file():
        return []
    try:
        config = core_access.library().read_model_header(path)
    except (OSError, ValueError):
        return []
    names = config.get("materials")
    labels = config.get("labels") or {}
    return [(str(n), str(labels.get(n, n))) for n in names] if isinstance(names, list) else []


def material_items(settings, with_none: bool = False):
    """Enum items for the chosen texture model's materials (``with_none``: a leading "None" entry)."""
    path = resolve(settings.model_ref, "texture_gan")
    key = f"{path}\n{with_none}"
    if key not in _materials_cache or now_stale():
        items = [("NONE", "None", "No second material", 0)] if with_none else []
        items += [(name, label, f"Material '{name}' of this model", i + 1)
                  for i, (name, label) in enumerate(materials_of(path))]
        _materials_cache[key] = items or [("NONE", "One texture", "This model makes one texture", 0)]
    return _materials_cache[key]


def now_stale() -> bool:
    return not _models_cache  # refreshed together with the model lists


def material_params(settings) -> dict:
    """The generate job's ``mix`` for the panel's material choice ({} for one-texture models)."""
    first, second = settings.material, settings.material_mix
    if first in ("", "NONE"):
        return {}
    if second in ("", "NONE", first) or settings.material_mix_factor <= 0:
        return {"material": first}
    t = float(settings.material_mix_factor)
    return {"mix": f"{first}:{1 - t:.6g},{second}:{t:.6g}"}


def resolve(identifier: str, kind: str | None = None) -> str:
    """The model path for a reference (or a plain path).

    Nothing chosen yet (a fresh scene): the first listed model of ``kind``, bundled
    ones first, so Generate works out of the box; '' when there is none. A
    reference to a missing file gives its would-be path, so callers report it.
    """
    if identifier not in ("", "NONE"):
        return path_for(identifier)
    if kind is None:
        return ""
    available = list_models(kind)
    return str(available[0].path) if available else ""


def preview_icon(path: str) -> int:
    """Icon id for a job preview PNG (reloaded under a new key per file, as the worker names them)."""
    if _previews is None or not path:
        return 0
    if path not in _previews:
        if len(_previews) > 64:  # drop old job previews
            for key in [k for k in _previews.keys() if "_preview_" in k][:32]:
                del _previews[key]
        _previews.load(path, path, "IMAGE")
    return _previews[path].icon_id


def register():
    global _previews
    _previews = bpy.utils.previews.new()


def unregister():
    global _previews
    if _previews is not None:
        bpy.utils.previews.remove(_previews)
        _previews = None
    _items_cache.clear()
    refresh()
