"""Blender images <-> the files the worker reads and writes.

* Blender stores pixels bottom row first; numpy/core images are top row first,
  so every transfer flips vertically.
* Float images (EXR, Render Result) hold scene-linear values: written as
  float32 ``.npy``, which core reads as colour space "linear". Byte images hold
  sRGB-encoded values: written as uint16 ``.npy``, which core reads as "srgb".
* Results come back as ``.npy`` in the colour space the worker names: "srgb"
  becomes an 8-bit image tagged sRGB, "linear" a float image tagged linear;
  ``like=`` a source image keeps that image's tag (Non-Color, 16-bit sRGB).
  Large results come back as a PNG the worker wrote: ``load_file_result``
  only opens the file (Blender reads pixels lazily), so the main thread never
  stalls. Nothing is packed on arrival; ``pack_results`` packs on save.
* HDR: float values above 1.0 would clip in a network trained on display
  images, so they go through ``hdr_encode`` (identity below a knee, highlights
  squeezed below 1.0) and come back through ``hdr_decode``.
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

RESULT_TAG = "neural_textures_result"  # custom property on every image the add-on made
HDR_KNEE = 0.8
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


def export_image(image: bpy.types.Image, folder: Path, keep_alpha: bool = True, hdr: bool = False) -> Path:
    """Write a Blender image as a ``.npy`` file the worker loads with the right colour space.

    ``hdr``: scene-linear images are ``hdr_encode``d (decode the result with ``load_result(..., hdr=True)``).
    """
    pixels = image_pixels(image)
    if hdr and is_linear(image):
        pixels = hdr_encode(pixels)
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
    what the artist sees. ``linear=True``: scene-linear floats (.npy via EXR),
    HDR-encoded (``hdr_encode``): decode the result with ``load_result(..., hdr=True)``.
    """
    result = bpy.data.images.get("Render Result")
    if result is None:  # (has_data is not reliable for the Render Result; save_render tells)
        raise BridgeError("there is no render to stylize yet: render an image first (F12)")
    folder.mkdir(parents=True, exist_ok=True)
    settings = scene.render.image_settings
    # Blender 5: the media type (image, multilayer, video) limits file_format, so it is saved
    # and set first and restored first; the view follows the scene's for "as displayed".
    names = [n for n in ("media_type", "file_format", "color_mode", "color_depth", "color_management")
             if n in settings.bl_rna.properties]
    saved = {name: getattr(settings, name) for name in names}
    stem = f"render_{uuid.uuid4().hex[:8]}"
    try:
        if "media_type" in saved:
            settings.media_type = "IMAGE"
        settings.color_management = "FOLLOW_SCENE"
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
        np.save(out, hdr_encode(image_pixels(temp)), allow_pickle=False)
    finally:
        bpy.data.images.remove(temp)
        path.unlink(missing_ok=True)
    return out


def _colorspaces() -> set[str]:
    prop = bpy.types.ColorManagedInputColorspaceSettings.bl_rna.properties["name"]
    return {item.identifier for item in prop.enum_items}


def hdr_encode(pixels: np.ndarray) -> np.ndarray:
    """RGB unchanged up to ``HDR_KNEE``; above it squeezed into (knee, 1) so highlights survive stylization."""
    out = np.array(pixels, np.float32, copy=True)
    rgb = np.maximum(out[..., :3], 0.0)
    over = np.maximum(rgb - HDR_KNEE, 0.0) / (1.0 - HDR_KNEE)
    out[..., :3] = np.where(rgb > HDR_KNEE, HDR_KNEE + (1.0 - HDR_KNEE) * over / (1.0 + over), rgb)
    return out


def hdr_decode(pixels: np.ndarray) -> np.ndarray:
    """Inverse of ``hdr_encode`` (values at 1.0 map to about 2000)."""
    out = np.array(pixels, np.float32, copy=True)
    rgb = np.clip(out[..., :3], 0.0, 1.0 - 1e-4)
    squeezed = np.maximum(rgb - HDR_KNEE, 0.0) / (1.0 - HDR_KNEE)
    out[..., :3] = np.where(rgb > HDR_KNEE, HDR_KNEE + (1.0 - HDR_KNEE) * squeezed / (1.0 - squeezed), rgb)
    return out


def load_result(info: dict, name: str, like: bpy.types.Image | None = None, hdr: bool = False,
                colorspace: str = "") -> bpy.types.Image:
    """A new Blender image from a worker image result (``{"path", "colorspace", ...}``).

    ``like``: keep that source image's colour-space tag (Non-Color stays Non-Color,
    a 16-bit sRGB file comes back as a float image tagged sRGB, not Linear).
    ``hdr``: the job ran on ``hdr_encode``d pixels. ``colorspace``: force a tag (PBR maps).
    """
    linear = info.get("colorspace") == "linear"
    if like is not None and not colorspace:
        source_space = like.colorspace_settings.name
        if source_space in RAW_NAMES:
            colorspace = source_space
        elif like.is_float and linear and source_space not in LINEAR_NAMES:
            colorspace = source_space  # e.g. a 16-bit sRGB PNG: float pixels, saved back as sRGB
    if Path(info["path"]).suffix.lower() != ".npy" and not hdr:
        return load_file_result(info["path"], name, colorspace)
    data = np.load(info["path"], allow_pickle=False)
    if data.ndim == 2:
        data = data[..., None]
    if hdr:
        data = hdr_decode(data)
    return image_from_array(data, name, linear=linear, colorspace=colorspace)


def load_file_result(path: str, name: str, colorspace: str = "") -> bpy.types.Image:
    """Open an image file the worker wrote; pixels load when first drawn, so this returns at once."""
    image = bpy.data.images.load(str(path), check_existing=False)
    image.name = name
    if colorspace:
        image.colorspace_settings.name = colorspace
    image[RESULT_TAG] = True
    return image


def image_from_array(data: np.ndarray, name: str, linear: bool, pack: bool = False,
                     colorspace: str = "") -> bpy.types.Image:
    """New image from HxWxC (C=1..4) float data, top row first; packed now only when asked (else on save).

    ``colorspace`` overrides the tag; for byte images with a Non-Color tag the values are stored as they are.
    """
    height, width, channels = data.shape
    has_alpha = channels in (2, 4)
    image = bpy.data.images.new(name, width, height, alpha=has_alpha, float_buffer=linear)
    spaces = _colorspaces()
    if colorspace:
        image.colorspace_settings.name = colorspace
    elif linear:
        image.colorspace_settings.name = "Linear Rec.709" if "Linear Rec.709" in spaces else "Linear"
    else:
        image.colorspace_settings.name = "sRGB"
    rgba = np.empty((height, width, 4), np.float32)
    rgba[..., :3] = data[::-1, :, :3] if channels >= 3 else data[::-1, :, :1]
    rgba[..., 3] = data[::-1, :, -1] if has_alpha else 1.0
    if not linear:
        np.clip(rgba, 0.0, 1.0, out=rgba)
    image.pixels.foreach_set(rgba.ravel())
    image.update()
    image[RESULT_TAG] = True
    if pack:
        image.pack()
    return image


def pack_results(external_folder: Path | None = None) -> list[str]:
    """Before saving: put the add-on's results that are not in a file yet into the .blend (packed), or,
    with ``external_folder``, into image files there. Returns their names. Images nothing uses are skipped
    (Blender drops them on save anyway)."""
    done = []
    for image in bpy.data.images:
        if not image.get(RESULT_TAG) or image.packed_file is not None or image.users == 0:
            continue
        on_disk = bool(image.filepath) and Path(bpy.path.abspath(image.filepath)).is_file()
        try:
            if external_folder is None:
                image.pack()
            elif not on_disk:
                external_folder.mkdir(parents=True, exist_ok=True)
                suffix, image.file_format = (".exr", "OPEN_EXR") if image.is_float else (".png", "PNG")
                image.filepath_raw = str(external_folder / f"{_safe(image.name)}_{uuid.uuid4().hex[:6]}{suffix}")
                image.save()
            else:
                continue
        except RuntimeError:
            continue  # a file that went missing: nothing to keep
        done.append(image.name)
    return done


def keep_as_latest(image: bpy.types.Image, previous_name: str) -> None:
    """The newest result keeps a fake user (so an unsaved experiment survives); the one it replaces does not."""
    previous = bpy.data.images.get(previous_name) if previous_name else None
    if previous is not None and previous != image and previous.get(RESULT_TAG):
        previous.use_fake_user = False
    image.use_fake_user = True


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
