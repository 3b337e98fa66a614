"""Model library: the models an artist can pick, found in folders.

A folder holds ``NAME.safetensors`` model files (config in the header, see
``common/checkpoints.py``), optional ``NAME.png`` thumbnails beside them and
optionally a ``manifest.json`` (the bundled default models) that adds display
names and descriptions::

    {"models": [{"file": "bricks.safetensors", "name": "bricks", "label": "Bricks",
                 "kind": "texture_gan", "description": "...", "thumbnail": "bricks.png"}]}

(``label`` is the display name; without it ``name``, then the config's name.)

This module reads safetensors headers itself (8-byte length + JSON), so it
needs neither torch nor safetensors: the add-on lists models inside Blender's
own Python even when PyTorch lives only in the worker's Python.
"""

from __future__ import annotations

import json
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

MODEL_KINDS = ("texture_gan", "texture_vae", "style")
# kinds as written in checkpoint configs -> the family names above
KIND_ALIASES = {"style_transfer": "style", "style_model": "style", "style_multi": "style"}
MULTI_STYLE_KIND = "style_multi"  # one network, several styles: listed once per style
_MAX_HEADER = 64 * 1024 * 1024
# Training-state files live beside the models; they are not models. Nor is the generator a Variation Model
# trained from an image fine-tunes as its decoder (core/texture_vae/from_image.py: the model holds its weights), nor a
# fine-tune's trial from one starting material (core/texture_gan/start_trials.py: deleted once the pick is made).
_SKIP_SUFFIXES = (".train.safetensors", ".generator.safetensors", ".trial.safetensors")


@dataclass
class ModelInfo:
    path: Path
    name: str
    kind: str
    description: str = ""
    thumbnail: Path | None = None
    bundled: bool = False
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return str(self.path)


def default_models_dir() -> Path:
    """``models/`` beside ``core``: the repo root in development, the add-on folder when vendored."""
    return Path(__file__).resolve().parent.parent / "models"


def read_model_header(path: str | os.PathLike) -> dict[str, Any]:
    """The config stored in a model file's safetensors header; ValueError if it is not a model."""
    p = Path(path)
    with open(p, "rb") as fh:
        raw = fh.read(8)
        if len(raw) < 8:
            raise ValueError(f"{p.name} is too short to be a model file")
        (length,) = struct.unpack("<Q", raw)
        if length <= 0 or length > _MAX_HEADER:
            raise ValueError(f"{p.name} is not a safetensors model file")
        header = json.loads(fh.read(length).decode("utf-8"))
    metadata = header.get("__metadata__") or {}
    if metadata.get("format") != "neural_textures" or "config" not in metadata:
        raise ValueError(f"{p.name} is not a model saved by Neural Textures")
    return json.loads(metadata["config"])


def _manifest_entries(folder: Path) -> dict[str, dict[str, Any]]:
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        return {}
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    entries = data.get("models", data) if isinstance(data, dict) else data
    out: dict[str, dict[str, Any]] = {}
    if isinstance(entries, dict):  # {"file.safetensors": {...}}
        entries = [dict(v, file=k) for k, v in entries.items() if isinstance(v, dict)]
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and entry.get("file"):
            # "file" is relative to the manifest's folder and may name a subfolder (texture_gan/materials.safetensors)
            out[str((folder / entry["file"]).resolve())] = entry
    return out


def _display_name(stem: str) -> str:
    return re.sub(r"[_\-]+", " ", stem).strip().title() or stem


def list_models(folders: Iterable[str | os.PathLike], kind: str | None = None,
                bundled_folders: Iterable[str | os.PathLike] = ()) -> list[ModelInfo]:
    """Every readable model in ``folders`` (not recursive), sorted by kind then name.

    Unreadable or foreign files are skipped silently: a library listing must
    never fail because of one bad file. ``bundled_folders`` are listed first
    and marked ``bundled``.
    """
    result: list[ModelInfo] = []
    seen: set[str] = set()
    sources = [(Path(f), True) for f in bundled_folders] + [(Path(f), False) for f in folders]
    for folder, bundled in sources:
        if not str(folder) or not folder.is_dir():
            continue
        manifest = _manifest_entries(folder)
        listed = [Path(p) for p in manifest if Path(p).is_file()]
        for path in sorted(folder.glob("*.safetensors")) + sorted(p for p in listed if p.parent != folder.resolve()):
            if path.name.endswith(_SKIP_SUFFIXES) or path.name.startswith("."):
                continue
            key = str(path.resolve())
            if key in seen:
                continue
            try:
                config = read_model_header(path)
            except (OSError, ValueError, UnicodeDecodeError, struct.error):
                continue
            entry = manifest.get(key, {})
            model_kind = str(entry.get("kind") or config.get("kind") or "")
            model_kind = KIND_ALIASES.get(model_kind, model_kind)
            if kind is not None and model_kind != kind:
                continue
            thumb_name = entry.get("thumbnail")
            thumbnail = folder / thumb_name if thumb_name else path.with_suffix(".png")
            name = entry.get("label") or entry.get("name") or config.get("name") or _display_name(path.stem)
            description = str(entry.get("description") or config.get("description") or "")
            if config.get("kind") == MULTI_STYLE_KIND:
                result += _styles_of(path, config, thumbnail, bundled)
            else:
                result.append(ModelInfo(path=path, name=str(name), kind=model_kind, description=description,
                                        thumbnail=thumbnail if thumbnail.is_file() else None,
                                        bundled=bundled, config=config))
            seen.add(key)
    result.sort(key=lambda m: (not m.bundled, m.kind, m.name.lower()))
    return result


def _styles_of(path: Path, config: dict[str, Any], thumbnail: Path, bundled: bool) -> list[ModelInfo]:
    """One entry per style of a multi-style network: ``file.safetensors#style`` (see ``core.style.multistyle``),
    with its own thumbnail ``file_<style>.png`` when there is one."""
    out = []
    for style in config.get("styles") or []:
        if not isinstance(style, dict) or not isinstance(style.get("name"), str):
            continue
        own = path.with_name(f"{path.stem}_{style['name']}.png")
        thumb = own if own.is_file() else thumbnail
        out.append(ModelInfo(path=Path(f"{path}#{style['name']}"), name=str(style.get("label") or style["name"]),
                             kind="style", description=f"{style.get('label') or style['name']} (fast, one of "
                             f"{len(config.get('styles') or [])} styles of {path.name})",
                             thumbnail=thumb if thumb.is_file() else None, bundled=bundled, config=config))
    return out


def model_file_name(name: str) -> str:
    """A safe ``NAME.safetensors`` file name for a model the artist named."""
    stem = re.sub(r"[^A-Za-z0-9_.\-]+", "_", name.strip()).strip("._") or "model"
    return f"{stem}.safetensors"


def unique_model_path(folder: str | os.PathLike, name: str) -> Path:
    """``folder/NAME.safetensors`` with a safe file name that does not exist yet."""
    stem = model_file_name(name).removesuffix(".safetensors")
    folder = Path(folder)
    candidate = folder / f"{stem}.safetensors"
    index = 2
    while candidate.exists():
        candidate = folder / f"{stem}_{index}.safetensors"
        index += 1
    return candidate
