"""The block start by image quilting (Efros & Freeman 2001): blocks chosen to fit their neighbours, joined
along the seam where they differ least.

Blocks copied from random places (``structure.block_field``) meet wherever the grid puts their borders: a
brick is cut mid-length and its course continues as a smear, a stone is halved and glued to another, bark
fissures stop on a line (horizontal bands). Here each block overlaps the blocks already placed; among the
exemplar places whose pixels agree best with that overlap (within ``MATCH_TOLERANCE`` of the best, one
drawn at random, so the result still varies), one is taken, and inside the overlap the minimum-error path
decides which pixel comes from which block, so the join runs along mortar lines, between stones and along
fissures. Offsets also stay on the exemplar's lattice (``structure.py``), so courses stay straight over
the whole output. Tileable output is laid out on a torus (the last block of a row overlaps the first),
so it has no special wrap border; the field is rolled by a random phase at the end.

Two things keep a quilt like its photograph rather than like its easiest parts: each candidate's cost adds
how often its pixels were copied already (``USAGE_WEIGHT``), so the whole exemplar gets used about evenly;
and the overlap error is computed through Fourier transforms of the exemplar (``_Spectra``), cheap enough to
quilt at full resolution, where mortar lines and fissures are visible to the seams.

Returns a nearest-neighbour field (atlas patch centre per output pixel) that is piecewise a translation,
which the copying stage (``nearest_patches.py``) then refines.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .structure import Lattice

# Blocks overlap their neighbours by this share of their side: the seam needs room to follow a joint.
OVERLAP_SHARE = 0.3
# Candidates whose overlap error is within this factor of the best are drawn from at random.
MATCH_TOLERANCE = 0.1
# A candidate offset stays on the lattice when it is within this many pixels of a lattice point.
LATTICE_TOLERANCE = 0.75
# Each candidate's cost is its mean squared overlap error per pixel (RGB summed, ~0.05 for a good fit on a
# photograph) plus this times how often its pixels were copied already (mean over the block). Without it the
# best-fitting places win again and again (on a mixed brick wall: smooth long bricks, whole courses of them),
# so every output over-represents a few pieces: its VGG statistics then drift from the photograph's, by a
# different amount each seed (measured: ratio 1.1-3.1 over 4 seeds, 1.03-1.17 with the term at 0.05).
USAGE_WEIGHT = 0.05
# A pixel to keep out of the quilt counts as copied this many times: a block all over such pixels costs 2 (the
# usage term at USAGE_WEIGHT), against ~0.05 for a good fit on a photograph.
AVOID_USES = 40.0
# Above this many blocks the per-block loop (~2 ms a block) would dominate the run time (canvases over
# ~3000 px): callers fall back to random blocks. A 512 px texture from a 256-384 px photograph takes ~80.
MAX_BLOCKS = 2500


def fits(regions: list[tuple[int, int, int, int]], block: int, patch: int) -> bool:
    """Whether every exemplar holds a block with its overlap (and the patch margin)."""
    side = block + overlap_for(block) + 2 * (patch // 2) + 1
    return all(min(h, w) >= side for _, _, h, w in regions)


def overlap_for(block: int) -> int:
    return max(2, round(block * OVERLAP_SHARE))


def block_count(height: int, width: int, block: int) -> int:
    """How many blocks ``quilt_field`` places on a ``height`` x ``width`` canvas."""
    return (len(_grid(height, block)) - 1) * (len(_grid(width, block)) - 1)


def _grid(size: int, step: int) -> list[int]:
    """Block starts evenly around a torus of ``size``: steps as close to ``step`` as a whole count allows."""
    count = max(1, round(size / step))
    return [round(i * size / count) for i in range(count + 1)]  # the last is ``size`` (= the first, wrapped)


def _min_path(cost: np.ndarray) -> np.ndarray:
    """Column index per row of the cheapest top-to-bottom path through ``cost`` (rows x cols), moving at most
    one column per row."""
    rows, cols = cost.shape
    acc = cost.astype(np.float64).copy()
    for i in range(1, rows):
        prev = acc[i - 1]
        left = np.concatenate([[np.inf], prev[:-1]])
        right = np.concatenate([prev[1:], [np.inf]])
        acc[i] += np.minimum(np.minimum(left, prev), right)
    path = np.empty(rows, dtype=np.int64)
    path[-1] = int(np.argmin(acc[-1]))
    for i in range(rows - 2, -1, -1):
        j = path[i + 1]
        lo, hi = max(0, j - 1), min(cols, j + 2)
        path[i] = lo + int(np.argmin(acc[i, lo:hi]))
    return path


def _keep_old(error: np.ndarray, filled: np.ndarray, overlap: int) -> np.ndarray:
    """Pixels of a new block (bh x bw) that keep what is already there: beyond the minimum-error path in
    each filled overlap strip (left, right, top, bottom)."""
    bh, bw = error.shape
    keep = np.zeros((bh, bw), dtype=bool)
    o = min(overlap, bw), min(overlap, bh)
    cols = np.arange(bw)[None, :]
    rows = np.arange(bh)[:, None]
    if filled[:, : o[0]].mean() > 0.5:
        path = _min_path(error[:, : o[0]])
        keep |= cols < path[:, None]
    if filled[:, bw - o[0]:].mean() > 0.5:
        path = bw - o[0] + _min_path(error[:, bw - o[0]:])
        keep |= cols > path[:, None]
    if filled[: o[1]].mean() > 0.5:
        path = _min_path(error[: o[1]].T)
        keep |= rows < path[None, :]
    if filled[bh - o[1]:].mean() > 0.5:
        path = bh - o[1] + _min_path(error[bh - o[1]:].T)
        keep |= rows > path[None, :]
    return keep & filled


def _on_lattice(oy: torch.Tensor, ox: torch.Tensor, anchor: tuple[float, float], lattice: Lattice | None
                ) -> torch.Tensor:
    """Which offsets (oy, ox grids) differ from ``anchor`` by whole lattice vectors, within tolerance."""
    if lattice is None:
        return torch.ones_like(oy, dtype=torch.bool)
    a = np.array(lattice.vectors[0], dtype=np.float64)
    if len(lattice.vectors) > 1:
        b = np.array(lattice.vectors[1], dtype=np.float64)
    else:  # one repeat axis: free along its normal
        b = np.array([-a[1], a[0]]) / max(1e-9, float(np.hypot(*a)))
    # The 2x2 inverse in closed form: np.linalg.inv goes through LAPACK, whose threads took ~5 ms a call on a
    # busy 2-core machine (24 calls a 512 px synthesis).
    (p, q), (r, t) = np.stack([a, b], axis=1)
    det = p * t - q * r
    inverse = torch.tensor([[t / det, -q / det], [-r / det, p / det]], dtype=torch.float32, device="cpu")
    d = torch.stack([oy.float() - anchor[0], ox.float() - anchor[1]])  # 2 x ...
    coef = torch.einsum("ij,j...->i...", inverse, d)
    off = coef - coef.round()
    if len(lattice.vectors) == 1:
        off[1] = 0.0
    residual = off[0, None] * torch.tensor(a, device="cpu").float().view(2, *[1] * (off.dim() - 1)) + \
        off[1, None] * torch.tensor(b, device="cpu").float().view(2, *[1] * (off.dim() - 1))
    # hypot, not residual.norm(dim=0): a reduction over the outer axis takes torch's slow strided path on the
    # CPU (18 ms a call at 512 px, 0.4 s of a 512^2 synthesis, and the H200 run's host time); hypot is
    # elementwise. The two agree to a float ulp.
    return torch.hypot(residual[0], residual[1]) <= LATTICE_TOLERANCE


def _window_sums(t: torch.Tensor, bh: int, bw: int) -> torch.Tensor:
    """Sum of ``t`` over the bh x bw window at every top-left corner (an integral image)."""
    c = F.pad(t.cumsum(0).cumsum(1), (1, 0, 1, 0))
    return c[bh:, bw:] - c[:-bh, bw:] - c[bh:, :-bw] + c[:-bh, :-bw]


class _Spectra:
    """One exemplar's Fourier transforms, so each block's overlap error against every place in it is two
    products and an inverse transform (the direct correlation with a full-resolution block's mask costs
    seconds per block). Float64: the error is a difference of large sums."""

    def __init__(self, source: torch.Tensor):
        self.size = tuple(source.shape[-2:])
        self.source = torch.fft.rfft2(source.double())  # C x H x W/2+1
        self.squares = torch.fft.rfft2((source.double() ** 2).sum(0))

    def _correlate(self, spectrum: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        """Sum over the kernel's window at every shift (circular; the caller keeps the valid shifts)."""
        product = spectrum * torch.fft.rfft2(kernel, s=self.size).conj()
        return torch.fft.irfft2(product, s=self.size)

    def error(self, mask: torch.Tensor, masked_target: torch.Tensor, bh: int, bw: int) -> torch.Tensor:
        """sum(mask * source^2) - 2 sum(source * mask * target) over a bh x bw window at every top-left corner
        (H - bh + 1 x W - bw + 1): the squared error up to the target's own constant."""
        squares = self._correlate(self.squares, mask)
        cross = self._correlate(self.source, masked_target).sum(0)
        return (squares - 2 * cross)[: self.size[0] - bh + 1, : self.size[1] - bw + 1]


def quilt_field(atlas: torch.Tensor, regions: list[tuple[int, int, int, int]], lattices: list[Lattice | None],
                height: int, width: int, block: int, patch: int, gen: torch.Generator, periodic: bool,
                usage_weight: float | None = None, check_cancel: Callable[[], None] | None = None,
                avoid: list[torch.Tensor | None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """An NNF (fy, fx) of ``height`` x ``width`` (a torus when ``periodic``) quilted from blocks of the atlas
    (C x H x W, CPU).

    ``regions``: each exemplar's (top, left, height, width) in the atlas; ``lattices``: each exemplar's
    lattice at this scale (or None). Blocks take turns over the exemplars in a random order. ``avoid``: per
    exemplar, None or a region-sized map in [0, 1] of pixels to keep out (burnt-out highlights): they count as
    copied ``AVOID_USES`` times already, so a block over them costs more than any fit can win back.
    """
    r = patch // 2
    c = atlas.shape[0]
    usage_weight = USAGE_WEIGHT if usage_weight is None else float(usage_weight)
    overlap = overlap_for(block)
    tops, lefts = _grid(height, block), _grid(width, block)
    cpu = atlas.device  # quilting runs where the atlas is (the CPU)
    canvas = torch.zeros(c, height, width, device=cpu)
    filled = torch.zeros(height, width, dtype=torch.bool, device=cpu)
    fy = torch.zeros(height, width, dtype=torch.long, device=cpu)
    fx = torch.zeros(height, width, dtype=torch.long, device=cpu)
    anchors: list[tuple[float, float] | None] = [None] * len(regions)
    order = torch.randperm(len(regions), generator=gen, device="cpu").tolist()
    spectra = [_Spectra(atlas[:, ey: ey + eh, ex: ex + ew]) for ey, ex, eh, ew in regions]
    count = 0
    usage = [torch.zeros(eh, ew, dtype=torch.float64, device=cpu) for _, _, eh, ew in regions]
    for k, keep_out in enumerate(avoid or []):
        if keep_out is not None:
            usage[k] += AVOID_USES * keep_out.to(torch.float64)
    for i in range(len(tops) - 1):
        for j in range(len(lefts) - 1):
            if check_cancel is not None:  # a large canvas quilts for seconds: cancel between blocks
                check_cancel()
            top, left = tops[i], lefts[j]
            # On a torus the last block of a row overlaps the first; plain output stops at the edge.
            bh = min(tops[i + 1] - top + overlap, height if periodic else height - top)
            bw = min(lefts[j + 1] - left + overlap, width if periodic else width - left)
            k = order[count % len(order)]
            count += 1
            ey, ex, eh, ew = regions[k]
            ys = (top + torch.arange(bh, device=cpu)) % height
            xs = (left + torch.arange(bw, device=cpu)) % width
            target = canvas[:, ys][:, :, xs]
            mask = filled[ys][:, xs]
            source = atlas[None, :, ey: ey + eh, ex: ex + ew]
            # Top-left corners (region coordinates) whose block pixels are all valid patch centres.
            py = torch.arange(r, eh - r - bh + 1, device=cpu)
            px = torch.arange(r, ew - r - bw + 1, device=cpu)
            if mask.any():
                m = mask.double()
                error = spectra[k].error(m, m[None] * target.double(), bh, bw)
                error = (error[r: eh - r - bh + 1, r: ew - r - bw + 1] + float((m * target.double() ** 2).sum()))
                error = error.clamp_min(0.0).float()
            else:
                error = torch.zeros(py.numel(), px.numel(), device=cpu)
            # Offsets (source - output position, atlas coordinates) of every candidate.
            oy = (ey + py - top).view(-1, 1).expand(-1, px.numel())
            ox = (ex + px - left).view(1, -1).expand(py.numel(), -1)
            allowed = torch.ones_like(error, dtype=torch.bool)
            if anchors[k] is not None:
                allowed = _on_lattice(oy, ox, anchors[k], lattices[k])
                if not allowed.any():
                    allowed = torch.ones_like(error, dtype=torch.bool)
            if usage_weight > 0:
                # Mean error per overlapping pixel plus the mean times the candidate's pixels were copied.
                overlap_pixels = max(1.0, float(mask.sum()))
                used = _window_sums(usage[k], bh, bw)[r: eh - r - bh + 1, r: ew - r - bw + 1] / (bh * bw)
                error = error / overlap_pixels + usage_weight * used.float()
            error = torch.where(allowed, error, torch.full_like(error, math.inf))
            best = float(error.min())
            pool = torch.nonzero(error <= best * (1 + MATCH_TOLERANCE) + 1e-6)
            a, b = pool[int(torch.randint(pool.shape[0], (1,), generator=gen))].tolist()
            sy, sx = int(py[a]), int(px[b])
            if anchors[k] is None:
                anchors[k] = (float(ey + sy - top), float(ex + sx - left))
            piece = atlas[:, ey + sy: ey + sy + bh, ex + sx: ex + sx + bw]
            pixel_error = ((piece - target) ** 2).sum(0).numpy()
            new = torch.from_numpy(~_keep_old(pixel_error, mask.numpy(), overlap))
            yy, xx = torch.meshgrid(ys, xs, indexing="ij")
            yy, xx = yy[new], xx[new]
            canvas[:, yy, xx] = piece[:, new]
            rows, cols = torch.nonzero(new, as_tuple=True)
            fy[yy, xx] = ey + sy + rows
            fx[yy, xx] = ex + sx + cols
            filled[yy, xx] = True
            usage[k][sy + rows, sx + cols] += 1.0
    if periodic:
        # A random grid phase: the wrap border is then no likelier to be a block border than any other line.
        shift = (int(torch.randint(height, (1,), generator=gen)), int(torch.randint(width, (1,), generator=gen)))
        fy, fx = fy.roll(shift, dims=(0, 1)), fx.roll(shift, dims=(0, 1))
    return fy, fx
