"""PBR maps from an albedo: height, normal (OpenGL), roughness and ambient occlusion.

Every filter works on a torus (FFT blurs, wrap-around gradients), so a tileable
albedo gives maps that tile too. All maps come back as float32 in [0, 1]:
height, roughness and AO as HxW, the normal map as HxWx3 encoded 0.5 + 0.5 n
with +X right and +Y up (the OpenGL convention Blender's Normal Map node expects).

Knobs and their ranges (checked; out of range is a ValueError):

* ``height_detail`` 0..1 (0.5): 0 favours broad forms, 1 fine detail; 0.5 weighs
  every octave alike.
* ``height_radius`` 2..1024 px (auto: 1/8 of the shorter side, at most 64):
  the high-pass: brightness changes broader than this do not count as relief.
* ``invert_height``: bright is high by default (dark gaps and cracks sit
  deeper); invert for dark features that stand out, e.g. dark pebbles in pale sand.
* ``height_scale`` 0..256 px (8): relief depth that the full height range
  stands for; sets how steep the normal map and how deep the AO cavities are.
* ``normal_strength`` 0..20 (1): multiplies the normal map's tilt.
* ``roughness_base`` 0..1 (0.7): mean roughness.
* ``roughness_contrast`` -1..1 (0.5): busy, high-contrast areas get rougher (negative: smoother).
* ``roughness_brightness`` -1..1 (0.5): darker areas get rougher (negative: brighter ones).
* ``ao_strength`` 0..4 (1): how dark cavities get.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Union

import numpy as np

from ..common.images import ImageData, ImageError, atomic_write_bytes, encode_png, image_from_array, load_rgb, to_srgb

# Rec. 709 luma weights on the sRGB-encoded values: the brightness an artist sees.
_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)
_OCTAVES_MAX = 8


@dataclass
class PBRSettings:
    height_detail: float = 0.5
    height_radius: float | None = None
    invert_height: bool = False
    height_scale: float = 8.0
    normal_strength: float = 1.0
    roughness_base: float = 0.7
    roughness_contrast: float = 0.5
    roughness_brightness: float = 0.5
    ao_strength: float = 1.0

    _RANGES = {
        "height_detail": (0.0, 1.0), "height_radius": (2.0, 1024.0), "height_scale": (0.0, 256.0),
        "normal_strength": (0.0, 20.0), "roughness_base": (0.0, 1.0), "roughness_contrast": (-1.0, 1.0),
        "roughness_brightness": (-1.0, 1.0), "ao_strength": (0.0, 4.0),
    }

    def validate(self) -> "PBRSettings":
        for name, (lo, hi) in self._RANGES.items():
            value = getattr(self, name)
            if value is None and name == "height_radius":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a number, got {value!r}")
            if not lo <= value <= hi:
                raise ValueError(f"{name} must be between {lo:g} and {hi:g}, got {value:g}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PBRMaps:
    height: np.ndarray  # HxW in [0, 1], 0.5 = mean level
    normal: np.ndarray  # HxWx3 in [0, 1], OpenGL (+Y up), 0.5 + 0.5 n
    roughness: np.ndarray  # HxW in [0, 1]
    ao: np.ndarray  # HxW in [0, 1], 1 = unoccluded


def periodic_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of an HxW array on a torus (FFT): the result tiles like the input."""
    if sigma <= 0:
        return x.astype(np.float32, copy=True)
    h, w = x.shape
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    kernel = np.exp(-2.0 * (math.pi * sigma) ** 2 * (fx ** 2 + fy ** 2))
    return np.fft.irfft2(np.fft.rfft2(x.astype(np.float64)) * kernel, s=(h, w)).astype(np.float32)


def _albedo(albedo: Union[np.ndarray, ImageData, str, Path]) -> np.ndarray:
    if isinstance(albedo, (str, Path)):
        return load_rgb(albedo)
    if isinstance(albedo, ImageData):
        return to_srgb(albedo).rgb
    return np.clip(image_from_array(albedo, "srgb", "albedo").rgb, 0.0, 1.0)


def luminance(rgb: np.ndarray) -> np.ndarray:
    return (np.asarray(rgb, np.float32)[..., :3] @ _LUMA).astype(np.float32)


def height_map(rgb: np.ndarray, settings: PBRSettings) -> np.ndarray:
    """Relief from brightness: a weighted sum of band-pass octaves (difference of periodic Gaussians).

    Bands finer than ``height_radius`` only, so a brightness gradient across
    the image is not mistaken for a slope. Normalised robustly to [0, 1] around 0.5.
    """
    lum = luminance(rgb)
    h, w = lum.shape
    radius = settings.height_radius or min(64.0, max(2.0, min(h, w) / 8))
    octaves = max(1, min(_OCTAVES_MAX, int(math.ceil(math.log2(radius)))))
    # Octave k (0 = finest) weighs ratio**k: ratio 1 at detail 0.5, 2 at detail 0, 0.5 at detail 1.
    ratio = 2.0 ** (1.0 - 2.0 * settings.height_detail)
    relief = np.zeros_like(lum)
    previous = lum
    for k in range(octaves):
        blurred = periodic_blur(lum, 2.0 ** k)
        relief += (ratio ** k) * (previous - blurred)
        previous = blurred
    if settings.invert_height:
        relief = -relief
    lo, hi = np.percentile(relief, [0.5, 99.5])
    span = max(float(hi - lo), 1e-6)
    centre = float(np.median(relief))
    # A floor of 0.02 in luminance: a nearly flat albedo stays nearly flat instead of its noise filling the range.
    half = max(hi - centre, centre - lo, span / 2, 0.02)
    return np.clip(0.5 + 0.5 * (relief - centre) / half, 0.0, 1.0).astype(np.float32)


def normal_map(height: np.ndarray, settings: PBRSettings) -> np.ndarray:
    """OpenGL tangent-space normals (+X right, +Y up) from wrap-around central differences."""
    relief = height.astype(np.float32) * settings.height_scale * settings.normal_strength
    dx = 0.5 * (np.roll(relief, -1, axis=1) - np.roll(relief, 1, axis=1))  # rises to the right
    d_row = 0.5 * (np.roll(relief, -1, axis=0) - np.roll(relief, 1, axis=0))  # rises downwards
    # Surface z = relief(x, y_up): n ~ (-dz/dx, -dz/dy_up, 1) and dz/dy_up = -dz/drow.
    n = np.stack([-dx, d_row, np.ones_like(dx)], axis=-1)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    return np.clip(0.5 + 0.5 * n, 0.0, 1.0).astype(np.float32)


def roughness_map(rgb: np.ndarray, settings: PBRSettings) -> np.ndarray:
    """Base roughness shifted by local contrast (busy = rough) and darkness (dark = rough)."""
    lum = luminance(rgb)
    mean = periodic_blur(lum, 2.0)
    contrast = np.sqrt(np.maximum(periodic_blur(lum * lum, 2.0) - mean * mean, 0.0))

    def standardised(x: np.ndarray) -> np.ndarray:
        return (x - x.mean()) / (x.std() + 1e-3)

    # 0.15 per standard deviation: full knobs move roughness by ~±0.3 for typical pixels.
    rough = (settings.roughness_base + 0.15 * settings.roughness_contrast * standardised(contrast)
             - 0.15 * settings.roughness_brightness * standardised(mean))
    return np.clip(rough, 0.0, 1.0).astype(np.float32)


def ao_map(height: np.ndarray, settings: PBRSettings) -> np.ndarray:
    """Cavity occlusion: how far below its surroundings each point lies, over several radii.

    Depth below the wrap-around neighbourhood mean at radius r, as the angle
    atan(depth / r) of the horizon it sees, averaged over octaves of r.
    """
    relief = height.astype(np.float32) * settings.height_scale
    radii = [2.0 ** k for k in range(1, 6) if 2.0 ** k <= max(2.0, min(height.shape) / 4)]
    occlusion = np.zeros_like(relief)
    for r in radii:
        depth = np.maximum(periodic_blur(relief, r) - relief, 0.0)
        occlusion += np.arctan(depth / r) / (math.pi / 2)
    occlusion /= len(radii)
    return np.clip(1.0 - settings.ao_strength * 4.0 * occlusion, 0.0, 1.0).astype(np.float32)


def pbr_maps(albedo: Union[np.ndarray, ImageData, str, Path], settings: PBRSettings | None = None, **knobs) -> PBRMaps:
    """Height, normal, roughness and AO for ``albedo`` (path, ImageData or HxWx3 sRGB array in [0, 1]).

    ``knobs`` override fields of ``settings`` (see the module docstring for ranges).
    """
    settings = settings or PBRSettings()
    unknown = sorted(set(knobs) - set(PBRSettings.__dataclass_fields__))
    if unknown:
        raise ValueError(f"unknown PBR setting(s) {', '.join(unknown)}; known: "
                         f"{', '.join(f for f in PBRSettings.__dataclass_fields__ if not f.startswith('_'))}")
    if knobs:
        settings = PBRSettings(**{**settings.to_dict(), **{k: v for k, v in knobs.items() if v is not None}})
    settings.validate()
    rgb = _albedo(albedo)
    if rgb.ndim != 3:
        raise ImageError(f"albedo: expected an HxWx3 image, got shape {rgb.shape}")
    height = height_map(rgb, settings)
    return PBRMaps(height=height, normal=normal_map(height, settings), roughness=roughness_map(rgb, settings),
                   ao=ao_map(height, settings))


# Height and normal maps drive geometry and shading: 8 bits would terrace them.
MAP_BIT_DEPTHS = {"height": 16, "normal": 16, "roughness": 8, "ao": 8}


def save_pbr_maps(maps: PBRMaps, out_dir: Union[str, Path]) -> dict[str, Path]:
    """Write height/normal/roughness/ao PNGs (non-colour data, stored as is) into ``out_dir``."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, bits in MAP_BIT_DEPTHS.items():
        path = out / f"{name}.png"
        atomic_write_bytes(path, encode_png(getattr(maps, name), bit_depth=bits))
        written[name] = path
    return written
