"""Input/output handling shared by every stylization path.

The networks see sRGB-encoded values in [0, 1] (what the artist sees on
screen). Linear renders (EXR, Blender float buffers) are encoded to sRGB on
the way in and decoded on the way out; alpha is carried through untouched.

* ``np.ndarray`` in: HxWx3 (or HxWx4, alpha kept) sRGB values; float32 out.
* ``ImageData`` in: ImageData out, same colour space, alpha, bit depth, source.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Union

import numpy as np

from ..common.images import ImageData, ImageError, image_from_array, to_colorspace, to_srgb

ImageLike = Union[ImageData, np.ndarray]


@dataclass
class PreparedInput:
    original: ImageLike
    image: ImageData  # validated
    srgb: np.ndarray  # HxWx3 float32 in [0, 1], what the network sees

    @property
    def shape(self) -> tuple[int, int]:
        return self.image.height, self.image.width


def prepare(image: ImageLike, name: str = "image") -> PreparedInput:
    if isinstance(image, ImageData):
        data = image
        if data.rgb.ndim != 3 or data.rgb.shape[2] != 3:
            raise ImageError(f"{name}: ImageData.rgb must be HxWx3, got shape {data.rgb.shape}")
        if not np.isfinite(data.rgb).all():
            raise ImageError(f"{name} contains NaN or infinite values")
    elif isinstance(image, np.ndarray):
        data = image_from_array(image, "srgb", name)
    else:
        raise ImageError(f"{name}: expected ImageData or a numpy array, got {type(image).__name__}")
    return PreparedInput(image, data, to_srgb(data).rgb)


def unchanged(prep: PreparedInput) -> ImageLike:
    """Strength 0: the input itself (a copy), bit for bit."""
    if isinstance(prep.original, ImageData):
        o = prep.original
        return replace(o, rgb=o.rgb.copy(), alpha=None if o.alpha is None else o.alpha.copy())
    return np.array(prep.original, copy=True)


def finish(prep: PreparedInput, stylized_srgb: np.ndarray, strength: float) -> ImageLike:
    """Blend by ``strength`` in the input's own colour space and restore type/alpha."""
    if strength == 0:
        return unchanged(prep)
    image = prep.image
    styl = to_colorspace(np.clip(stylized_srgb, 0.0, 1.0), image.colorspace)
    # Blending in the source space keeps HDR highlights above 1.0 at partial strength.
    rgb = image.rgb + float(strength) * (styl - image.rgb) if strength != 1 else styl
    rgb = np.ascontiguousarray(rgb, dtype=np.float32)
    if isinstance(prep.original, ImageData):
        return replace(image, rgb=rgb, alpha=None if image.alpha is None else image.alpha.copy())
    if image.alpha is not None:
        return np.concatenate([rgb, image.alpha[..., None]], axis=-1)
    return rgb


def check_strength(strength: float) -> float:
    s = float(strength)
    if not np.isfinite(s) or s < 0.0 or s > 1.0:
        raise ValueError(f"strength must be between 0 and 1, got {strength}")
    return s
