"""Family-neutral helpers for job adapters: read an input image, write an image result for the host."""

from __future__ import annotations

import io

import numpy as np

from .context import JobContext


def load_input(path: str):
    """An input image as ``ImageData`` (colour space and alpha kept); ImageError names the file."""
    from ..common.images import load_image
    return load_image(path)


def write_image_result(ctx: JobContext, image, name: str = "output") -> dict:
    """Write an ImageData (or sRGB ndarray) result and describe it for the host."""
    from ..common.images import ImageData, atomic_write_bytes, image_from_array, save_image

    if not isinstance(image, ImageData):
        image = image_from_array(np.asarray(image, np.float32), "srgb", name)
    out = ctx.output_path(".npy", name)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".npy":
        # Keep the colour space the data is in (save_image would linearise .npy).
        data = image.rgb if image.alpha is None else np.concatenate([image.rgb, image.alpha[..., None]], axis=-1)
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(data, np.float32), allow_pickle=False)
        atomic_write_bytes(out, buffer.getvalue())
        colorspace = image.colorspace
    else:
        save_image(out, image, bit_depth=16 if out.suffix.lower() == ".png" and image.bit_depth == 16 else 8)
        colorspace = "linear" if out.suffix.lower() == ".exr" else "srgb"
    channels = 3 if image.alpha is None else 4
    return {"path": str(out), "colorspace": colorspace, "width": image.width, "height": image.height,
            "channels": channels}


def with_colorspace_of(result, source):
    """Return the network result in the colour space (and with the alpha) of ``source``."""
    from ..common.images import ImageData, image_from_array, to_colorspace

    if isinstance(result, ImageData):
        return result
    rgb = np.asarray(result, np.float32)
    if rgb.ndim == 3 and rgb.shape[2] == 4:
        rgb = rgb[..., :3]
    out = image_from_array(to_colorspace(rgb, source.colorspace) if source is not None else rgb,
                           source.colorspace if source is not None else "srgb")
    if source is not None and source.alpha is not None and source.alpha.shape == out.rgb.shape[:2]:
        out.alpha = source.alpha
    return out


def srgb_rgb(image) -> np.ndarray:
    """The sRGB HxWx3 float array of an ``ImageData`` (what the networks take)."""
    from ..common.images import to_srgb
    return to_srgb(image).rgb
