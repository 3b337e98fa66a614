"""Temporally consistent stylization of animations, and a flicker measure.

Flow convention used everywhere in this package
-----------------------------------------------
``flow`` for frame ``i`` is a float HxWx2 array in **pixels**, channels
``(dx, dy)`` with x to the right and y *down the array's rows* (row 0 first),
pointing **from frame i back to frame i-1**: the surface point seen at pixel
``(x, y)`` of frame ``i`` was at ``(x + dx, y + dy)`` in frame ``i - 1``.
So ``warp(previous, flow)`` lines frame ``i - 1`` up with frame ``i``
(backward warping, bilinear).

Blender's Vector pass (4 channels, pixels) stores in X, Y the motion *to the
previous frame* (previous minus current position) and in Z, W the current
minus the next position, in Blender's raster coordinates whose y axis points
*up* (Blender's pixel buffers are stored bottom row first). Measured on a
Cycles render (Blender 5.0) of a checker plane moving +3 px right and +2 px up
per frame: X = -3, Y = -2, Z = -3, W = -2; warping frame 1 with (X, -Y)
matched frame 2 to a mean error of 0.009 (zero flow 0.112, (-X, Y) 0.204).
Hence:

* arrays read from a saved EXR/PNG (top row first, as ``load_image`` gives):
  ``flow = (X, -Y)``;
* arrays straight from Blender (bottom row first, e.g. ``image.pixels`` or a
  render result): ``flow = (X, Y)``.

``flow_from_blender_vector(vector, top_down=...)`` does exactly this. A 4-channel
array passed as a flow is taken to be a raw Vector pass in top-row-first order.

Sequences: ``flows[i]`` belongs to ``frames[i]`` (``flows[0]`` is ignored and
may be None); a list one shorter than the frames is read as one flow per
consecutive pair (``flows[i - 1]`` for frame ``i``). A None flow is estimated:
global translation by phase correlation, with occlusions found by colour
difference.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..common.jobs import CancelToken, ProgressCallback, check_cancel, report
from .apply import StyleModel, stylize_array
from .inputs import ImageLike, check_strength, finish, prepare, unchanged

# colour difference (sRGB, mean over channels) above which a warped pixel is treated as occluded
OCCLUSION_THRESHOLD = 0.12


def flow_from_blender_vector(vector: np.ndarray, top_down: bool = True) -> np.ndarray:
    """Blender Vector pass (HxWx4 or its first two channels) -> HxWx2 flow to the previous frame."""
    v = np.asarray(vector, dtype=np.float32)
    if v.ndim != 3 or v.shape[2] not in (2, 3, 4):
        raise ValueError(f"a Blender Vector pass is HxWx4 (or HxWx2), got shape {v.shape}")
    dx = v[..., 0]
    dy = -v[..., 1] if top_down else v[..., 1]
    return np.ascontiguousarray(np.stack([dx, dy], axis=-1))


def _as_flow(flow, h: int, w: int, index: int) -> np.ndarray:
    f = np.asarray(flow, dtype=np.float32)
    if f.ndim == 3 and f.shape[2] == 4:
        f = flow_from_blender_vector(f, top_down=True)
    if f.ndim != 3 or f.shape[2] != 2:
        raise ValueError(f"flow for frame {index} must be HxWx2 (or a HxWx4 Vector pass), got shape {f.shape}")
    if f.shape[:2] != (h, w):
        raise ValueError(f"flow for frame {index} is {f.shape[1]}x{f.shape[0]} but the frames are {w}x{h}")
    if not np.isfinite(f).all():
        raise ValueError(f"flow for frame {index} contains NaN or infinite values")
    return f


def warp(image: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Backward-warp ``image`` (frame i-1) by ``flow`` (of frame i): returns (warped, valid HxW bool)."""
    img = np.asarray(image, dtype=np.float32)
    h, w = img.shape[:2]
    f = torch.from_numpy(np.ascontiguousarray(flow, dtype=np.float32))
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32, device=f.device),
                            torch.arange(w, dtype=torch.float32, device=f.device), indexing="ij")
    sx, sy = xs + f[..., 0], ys + f[..., 1]
    valid = (sx >= 0) & (sx <= w - 1) & (sy >= 0) & (sy <= h - 1)
    grid = torch.stack([2 * sx / max(w - 1, 1) - 1, 2 * sy / max(h - 1, 1) - 1], dim=-1)[None]
    src = torch.from_numpy(np.ascontiguousarray(img.reshape(h, w, -1).transpose(2, 0, 1)))[None]
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out[0].numpy().transpose(1, 2, 0).reshape(img.shape), valid.numpy()


def estimate_global_flow(current: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """Fallback flow: one translation for the whole frame, by phase correlation."""
    a = np.asarray(current, np.float64).mean(axis=-1)
    b = np.asarray(previous, np.float64).mean(axis=-1)
    h, w = a.shape
    window = np.outer(np.hanning(h), np.hanning(w))
    fa, fb = np.fft.fft2((a - a.mean()) * window), np.fft.fft2((b - b.mean()) * window)
    cross = fa * np.conj(fb)
    corr = np.fft.ifft2(cross / (np.abs(cross) + 1e-9)).real
    py, px = np.unravel_index(np.argmax(corr), corr.shape)
    sy = py - h if py > h // 2 else py  # current(x) ~ previous(x - s)
    sx = px - w if px > w // 2 else px
    flow = np.empty((h, w, 2), np.float32)
    flow[..., 0], flow[..., 1] = -sx, -sy
    return flow


def _align_flows(flows, n: int | None):
    """Yield one flow (or None) per frame index, following the module's convention."""
    if flows is None:
        while True:
            yield None
    if not hasattr(flows, "__len__"):  # a lazy iterator, consumed in step with the frames
        yield from flows
        while True:
            yield None
    flows = list(flows)
    if n is not None and len(flows) not in (n, n - 1):
        raise ValueError(f"{len(flows)} flows for {n} frames: give one per frame (the first is ignored) "
                         "or one per consecutive pair")
    if n is not None and len(flows) == n - 1:
        flows = [None] + flows
    yield from flows
    while True:
        yield None


FrameStylizer = Callable[[np.ndarray, Optional[np.ndarray]], np.ndarray]


def as_frame_stylizer(model, tile_size: int | None = None) -> FrameStylizer:
    """``(srgb frame, warm start or None) -> stylized srgb`` for any of the three paths.

    A ``StyleModel`` (fast, feed-forward) ignores the warm start; other paths
    (AdaIN, optimisation: see ``optimize.OptimizationStylizer``) are callables
    with that signature and use it (optimisation starts from it).
    """
    if isinstance(model, StyleModel):
        return lambda srgb, warm: stylize_array(model, srgb, tile_size)
    if callable(model):
        return model
    raise TypeError(f"expected a StyleModel or a frame stylizer callable, got {type(model).__name__}")


def stylize_sequence(model, frames: Iterable[ImageLike], flows: Iterable[np.ndarray | None] | None = None,
                     *, strength: float = 1.0, temporal_weight: float = 0.7, progress: ProgressCallback | None = None,
                     cancel: CancelToken | None = None, tile_size: int | None = None) -> Iterator[ImageLike]:
    """Stylize frames one by one, blending in the previous result warped by motion.

    Where the warp is reliable (inside the frame and the warped *input* agrees
    with the current input in colour), the output is
    ``temporal_weight * warped_previous_output + (1 - temporal_weight) * stylized``;
    elsewhere (occlusions, new content) it is the frame's own stylization.
    ``model``: a ``StyleModel`` or a frame stylizer (``as_frame_stylizer``);
    stylizers that take a warm start get the warped previous output where it
    is reliable and the frame elsewhere. Yields results lazily in the input's
    type; frames must all be the same size.
    """
    strength = check_strength(strength)
    if not 0.0 <= temporal_weight < 1.0:
        raise ValueError("temporal_weight must be in [0, 1)")
    stylize_frame = as_frame_stylizer(model, tile_size)
    n = len(frames) if hasattr(frames, "__len__") else None
    if flows is not None and hasattr(flows, "__len__") and n is not None:
        flow_iter = _align_flows(flows, n)
    else:
        flow_iter = _align_flows(flows, None)
    prev_in = prev_out = None
    size = None
    for i, frame in enumerate(frames):
        check_cancel(cancel)
        prep = prepare(frame, f"frame {i}")
        flow = next(flow_iter)
        if size is None:
            size = prep.shape
        elif prep.shape != size:
            raise ValueError(f"frame {i} is {prep.shape[1]}x{prep.shape[0]} but the sequence started at "
                             f"{size[1]}x{size[0]}; all frames of an animation must be the same size")
        if strength == 0:
            yield unchanged(prep)
            continue
        current = prep.srgb
        warm = blend = None
        if prev_out is not None and temporal_weight > 0:
            h, w = size
            fl = _as_flow(flow, h, w, i) if flow is not None else estimate_global_flow(current, prev_in)
            warped_out, valid = warp(prev_out, fl)
            warped_in, _ = warp(prev_in, fl)
            diff = np.abs(warped_in - current).mean(axis=-1)
            reliable = (valid * np.clip(1.0 - diff / OCCLUSION_THRESHOLD, 0.0, 1.0))[..., None].astype(np.float32)
            warm = reliable * warped_out + (1.0 - reliable) * current
            blend = (temporal_weight * reliable, warped_out)
        stylized = stylize_frame(current, warm)
        if blend is not None:
            alpha, warped_out = blend
            stylized = alpha * warped_out + (1.0 - alpha) * stylized
        prev_in, prev_out = current, stylized
        report(progress, i + 1, n or 0, f"frame {i + 1}")
        yield finish(prep, stylized, strength)


def flicker(frames: Sequence[np.ndarray], flows: Sequence[np.ndarray | None] | None = None) -> float:
    """Mean warping error: |frame_i - warp(frame_{i-1}, flow_i)| over valid pixels, averaged over pairs.

    ``frames``: HxWx3 (or HxWxC) arrays, same size; ``flows`` as in the module
    docstring (None: zero motion, i.e. plain frame differences). Lower = steadier.
    """
    frames = [np.asarray(f, np.float32) for f in frames]
    if len(frames) < 2:
        raise ValueError("flicker needs at least two frames")
    h, w = frames[0].shape[:2]
    for i, f in enumerate(frames):
        if f.shape != frames[0].shape:
            raise ValueError(f"frame {i} has shape {f.shape}, frame 0 has {frames[0].shape}")
    flow_iter = _align_flows(flows, len(frames))
    next(flow_iter)
    errors = []
    for i in range(1, len(frames)):
        fl = next(flow_iter)
        fl = np.zeros((h, w, 2), np.float32) if fl is None else _as_flow(fl, h, w, i)
        warped, valid = warp(frames[i - 1], fl)
        if valid.any():
            errors.append(float(np.abs(frames[i] - warped)[valid].mean()))
    return float(np.mean(errors)) if errors else 0.0
