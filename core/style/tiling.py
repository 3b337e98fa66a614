"""Stylize large frames in overlapping tiles with seam-free blending.

Two things keep tiles consistent with an untiled pass:

* normalisation statistics are recorded once on the whole frame (downscaled
  to ``stats_max_side`` if larger, so memory stays bounded) and reused in every
  tile, so instance norm cannot give each tile its own contrast and colour;
* each tile is run with ``context`` extra pixels on every side (cropped off
  afterwards) and neighbouring tiles overlap by ``overlap`` pixels, blended
  with raised-cosine weights that sum to one, so no hard edge remains.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .transformer import TransformerNet


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    step = tile - overlap
    n = math.ceil((length - tile) / step) + 1
    starts = [min(i * step, length - tile) for i in range(n)]
    return sorted(set(starts))


def _ramp(length: int, overlap_before: int, overlap_after: int, device) -> torch.Tensor:
    """1 inside, raised-cosine ramps where this tile overlaps a neighbour."""
    w = torch.ones(length, device=device)
    if overlap_before > 0:
        t = (torch.arange(overlap_before, device=device) + 0.5) / overlap_before
        w[:overlap_before] = 0.5 - 0.5 * torch.cos(math.pi * t)
    if overlap_after > 0:
        t = (torch.arange(overlap_after, device=device) + 0.5) / overlap_after
        w[length - overlap_after:] = torch.minimum(w[length - overlap_after:], 0.5 + 0.5 * torch.cos(math.pi * t))
    return w


@torch.no_grad()
def record_norm_stats(net: TransformerNet, x: torch.Tensor, stats_max_side: int) -> None:
    """Run the frame (downscaled if needed) once to fix every norm layer's statistics."""
    h, w = x.shape[-2:]
    scale = stats_max_side / max(h, w)
    small = x if scale >= 1.0 else F.interpolate(x.float(), size=(max(8, round(h * scale)), max(8, round(w * scale))),
                                                 mode="area")
    net.set_norm_mode("record")
    net(small)
    net.set_norm_mode("reuse")


@torch.no_grad()
def stylize_tiled(net: TransformerNet, x: torch.Tensor, tile_size: int = 512, overlap: int | None = None,
                  context: int = 32, stats_max_side: int = 1024, cancel=None) -> torch.Tensor:
    """1x3xHxW -> 1x3xHxW, processed in tiles of ``tile_size`` pixels."""
    if tile_size < 32:
        raise ValueError("tile_size must be at least 32 pixels")
    overlap = max(8, tile_size // 8) if overlap is None else int(overlap)
    if not 0 <= overlap < tile_size // 2 + 1:
        raise ValueError("overlap must be smaller than half the tile size")
    _, c, h, w = x.shape
    record_norm_stats(net, x, stats_max_side)
    try:
        out = torch.zeros((1, 3, h, w), device=x.device, dtype=torch.float32)
        weight = torch.zeros((1, 1, h, w), device=x.device, dtype=torch.float32)
        ys, xs = tile_starts(h, tile_size, overlap), tile_starts(w, tile_size, overlap)
        for iy, y0 in enumerate(ys):
            for ix, x0 in enumerate(xs):
                if cancel is not None:
                    cancel.raise_if_cancelled()
                th, tw = min(tile_size, h - y0), min(tile_size, w - x0)
                cy0, cx0 = max(0, y0 - context), max(0, x0 - context)
                cy1, cx1 = min(h, y0 + th + context), min(w, x0 + tw + context)
                y = net(x[..., cy0:cy1, cx0:cx1]).float()
                y = y[..., y0 - cy0: y0 - cy0 + th, x0 - cx0: x0 - cx0 + tw]
                # Ramp only where a neighbour overlaps; the actual overlap may be larger for the last tile.
                ov_top = (ys[iy - 1] + tile_size - y0) if iy > 0 else 0
                ov_bottom = (y0 + th - ys[iy + 1]) if iy + 1 < len(ys) else 0
                ov_left = (xs[ix - 1] + tile_size - x0) if ix > 0 else 0
                ov_right = (x0 + tw - xs[ix + 1]) if ix + 1 < len(xs) else 0
                wy = _ramp(th, max(0, ov_top), max(0, ov_bottom), x.device)
                wx = _ramp(tw, max(0, ov_left), max(0, ov_right), x.device)
                wt = (wy[:, None] * wx[None, :])[None, None]
                out[..., y0:y0 + th, x0:x0 + tw] += y * wt
                weight[..., y0:y0 + th, x0:x0 + tw] += wt
        return out / weight.clamp_min(1e-6)
    finally:
        net.set_norm_mode("instance")
