"""Model lists for the panels: bundled defaults plus the user's library, with thumbnails.

Enum items come from a callback; Blender does not keep the strings alive, so
the lists live in module-level variables (a known Python-API pitfall). Enum
values are stable hashes of the file paths, so a saved choice survives
models being added or removed.
"""

from __future__ import annotations

import time
import zlib

import bpy
import bpy.utils.previews

from . import core_access, preferences

_previews = None
_items_cache: dict[str, list] = {}  # kind -> enum items; also keeps the strings alive
_models_cache: dict[str, list] = {}
_cache_time = 0.0
CACHE_SECONDS = 2.0
NONE_ITEM = ("NONE", "No model", "No model of this kind in the bundled models or the library", "ERROR", 0)


def stable_value(path: str) -> int:
    return (zlib.crc32(path.encode("utf-8")) & 0x7FFFFFFF) or 1


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
        try:
            user_folder = preferences.library_dir()
        except Exception:  # noqa: BLE001 - a bad folder must not break drawing
            user_folder = None
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


def enum_items(kind: str):
    items = []
    for model in list_models(kind):
        tag = "bundled" if model.bundled else "library"
        items.append((str(model.path), model.name, f"{model.description or model.name} ({tag}: {model.path.name})",
                      icon_for(model), stable_value(str(model.path))))
    _items_cache[kind] = items or [NONE_ITEM]
    return _items_cache[kind]


def resolve(identifier: str, kind: str | None = None) -> str:
    """The model path for an enum identifier.

    Nothing chosen yet (a fresh scene): the first listed model of ``kind``, bundled
    ones first, so Generate works out of the box; '' when there is none.
    """
    if identifier not in ("", "NONE"):
        return identifier
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
