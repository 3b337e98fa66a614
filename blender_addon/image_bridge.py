"""Blender images <-> the files the worker reads and writes.

* Blender stores pixels bottom row first; numpy/core images are top row first,
  so every transfer flips vertically.
* Float images (EXR, Render Result) hold scene-linear values: written as
  float32 ``.npy``, which core reads as colour space "linear". Byte images hold
  sRGB-encoded values: written as uint16 ``.npy``, which core reads as "srgb".
* Results come back as ``.npy`` in the colour space the worker names: "srgb"
  becomes an 8-bit image tagged sRGB, "linear" a float image tagged linear.
  New images are packed into the .blend (and get a fake user) so they survive
  saving and reopening even before anything uses them.
* The Render Result cannot be read through ``pixels``; it is saved to a
  temporary file with ``save_render`` and never modified.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import bpy
import numpy as np

LINEAR_NAMES = ("Linear Rec.709", "Linear", "scene_linear", "Linear Rec.2020", "ACEScg")
RAW_NAMES = ("Non-Color", "Raw", "Generic Data")


class BridgeError(ValueError):
    """An image cannot be handed to the models; the message says why."""


def image_pixels(image: bpy.types.Image) -> np.ndarray:
    """HxWx4 float32, top row first, as stored (linear for float images)."""
    if image.type == "RENDER_RESULT":
        raise BridgeError("the Render Result has to be saved first (use render_result_to_file)")
    width, height = image.size[:]
    if width == 0 or height == 0 or not image.has_data and len(image.pixels) == 0:
        where = f" ({bpy.path.abspath(image.filepath)})" if image.filepath else ""
        raise BridgeError(f"image '{image.name}' has no pixels{where}: the file is missing, corrupt or in a "
                          "format Blender cannot read")
    channels = image.channels
    buffer = np.empty(width * height * channels, dtype=np.float32)
    image.pixels.foreach_get(buffer)
    data = buffer.reshape(height, width, channels)[::-1]
    if channels == 4:
        return np.ascontiguousarray(data)
    rgba = np.ones((height, width, 4), np.float32)
    if channels >= 3:
        rgba[..., :3] = data[..., :3]
    else:
        rgba[..., :3] = data[..., :1]
    return rgba


def is_linear(image: bpy.types.Image) -> bool:
    name = image.colorspace_settings.name
    if name in RAW_NAMES:
        return False
    return bool(image.is_float) or name in LINEAR_NAMES


def export_image(image: bpy.types.Image, folder: Path, keep_alpha: bool = True) -> Path:
    """Write a Blender image as a ``.npy`` file the worker loads with the right colour space."""
    pixels = image_pixels(image)
    if not keep_alpha or not _has_alpha(image, pixels):
        pixels = pixels[..., :3]
    folder.mkdir(parents=True, exist_ok=True)
    if is_linear(image):
        data = np.ascontiguousarray(pixels, np.float32)
    else:
        # uint16 keeps 8- and 16-bit sources exact and tells core "sRGB-encoded"
        data = (np.clip(pixels, 0.0, 1.0) * 65535.0 + 0.5).astype(np.uint16)
    # Named by content: the same image gives the same file, so training can resume on it.
    digest = hashlib.sha1(data.tobytes()).hexdigest()[:12]
    path = folder / f"{_safe(image.name)}_{digest}.npy"
    if not path.exists():
        tmp = path.with_name(f".{path.name}.tmp.npy")
        np.save(tmp, data, allow_pickle=False)
        os.replace(tmp, path)
    return path


def _has_alpha(image: bpy.types.Image, pixels: np.ndarray) -> bool:
    return image.alpha_mode != "NONE" and pixels.shape[2] == 4 and float(pixels[..., 3].min()) < 1.0


def render_result_to_file(scene: bpy.types.Scene, folder: Path, linear: bool = False) -> Path:
    """Save the Render Result without touching it.

    ``linear=False`` (default): 16-bit PNG with the scene's view transform, i.e.
    what the artist sees. ``linear=True``: scene-linear floats (.npy via EXR).
    """
    result = bpy.data.images.get("Render Result")
    if result is None:  # (has_data is not reliable for the Render Result; save_render tells)
        raise BridgeError("there is no render to stylize yet: render an image first (F12)")
    folder.mkdir(parents=True, exist_ok=True)
    settings = scene.render.image_settings
    saved = {name: getattr(settings, name) for name in ("file_format", "color_mode", "color_depth")}
    stem = f"render_{uuid.uuid4().hex[:8]}"
    try:
        if linear:
            settings.file_format, settings.color_mode, settings.color_depth = "OPEN_EXR", "RGBA", "32"
            path = folder / f"{stem}.exr"
        else:
            settings.file_format, settings.color_mode, settings.color_depth = "PNG", "RGBA", "16"
            path = folder / f"{stem}.png"
        result.save_render(filepath=str(path), scene=scene)
    except RuntimeError as exc:
        raise BridgeError(f"there is no render to stylize yet: render an image first (F12) ({exc})") from exc
    finally:
        for name, value in saved.items():
            try:
                setattr(settings, name, value)
            except TypeError:
                pass
    if not path.is_file():
        raise BridgeError("the render could not be saved for stylizing")
    if not linear:
        return path  # PNG: core reads it directly (16-bit, sRGB-encoded)
    # EXR: read it back through Blender, so the worker needs no OpenEXR module
    temp = bpy.data.images.load(str(path), check_existing=False)
    try:
        temp.colorspace_settings.name = "Linear Rec.709" if "Linear Rec.709" in _colorspaces() else temp.colorspace_settings.name
        out = folder / f"{stem}.npy"
        np.save(out, image_pixels(temp), allow_pickle=False)
    finally:
        bpy.data.images.remove(temp)
        path.unlink(missing_ok=True)
    return out


def _colorspaces() -> set[str]:
    prop = bpy.types.ColorManagedInputColorspaceSettings.bl_rna.properties["name"]
    return {item.identifier for item in prop.enum_items}


def load_result(info: dict, name: str, pack: bool = True) -> bpy.types.Image:
    """Create a new Blender image from a worker image result (``{"path", "colorspace", ...}``)."""
    data = np.load(info["path"], allow_pickle=False)
    if data.ndim == 2:
        data = data[..., None]
    return image_from_array(data, name, linear=info.get("colorspace") == "linear", pack=pack)


def image_from_array(data: np.ndarray, name: str, linear: bool, pack: bool = True) -> bpy.types.Image:
    """New packed image from HxWxC (C=1..4) float data, top row first."""
    height, width, channels = data.shape
    has_alpha = channels in (2, 4)
    image = bpy.data.images.new(name, width, height, alpha=has_alpha, float_buffer=linear)
    spaces = _colorspaces()
    if linear:
        image.colorspace_settings.name = "Linear Rec.709" if "Linear Rec.709" in spaces else "Linear"
    else:
        image.colorspace_settings.name = "sRGB"
    rgba = np.ones((height, width, 4), np.float32)
    if channels >= 3:
        rgba[..., :3] = data[..., :3]
    else:
        rgba[..., :3] = data[..., :1]
    if has_alpha:
        rgba[..., 3] = data[..., -1]
    if not linear:
        rgba = np.clip(rgba, 0.0, 1.0)
    image.pixels.foreach_set(np.ascontiguousarray(rgba[::-1]).ravel())
    image.update()
    image.use_fake_user = True  # keep it in the .blend even before a material uses it
    if pack:
        image.pack()
    return image


def _safe(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    return keep[:40] or "image"


def image_files_in(folder: str | os.PathLike) -> list[Path]:
    """Rendered frames in a folder, in frame order."""
    suffixes = (".png", ".exr", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".tga", ".webp")
    p = Path(bpy.path.abspath(str(folder)))
    if not p.is_dir():
        raise BridgeError(f"frames folder not found: {p}")
    files = sorted(f for f in p.iterdir() if f.suffix.lower() in suffixes and not f.name.startswith("."))
    if not files:
        raise BridgeError(f"no image frames (PNG, EXR, JPEG, ...) in {p}")
    return files
