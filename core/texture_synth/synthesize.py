"""Instant, training-free texture synthesis by multi-scale patch-distribution matching.

In the spirit of GPDM (Elnekave & Weiss 2022): coarse to fine over an image
pyramid, the synthesized image's raw RGB patches are moved until their
distribution matches the exemplars' patches, measured by the sliced
Wasserstein distance. Each step draws a fresh set of orthonormal random
directions in patch space, projects every patch of the output and a sample of
exemplar patches onto them, matches the sorted projections (1-D optimal
transport) and moves every patch by its matched displacement; overlapping
patches are averaged back into pixels (a projected-gradient step of exactly
the right length, so no learning rate to tune).

On a torus: with ``tileable`` the output's patches wrap around (circular
padding), so the result tiles on both axes; exemplar patches never wrap.
Projections run as convolutions (no unfolded patch matrix), chunked so memory
stays bounded at any canvas size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..common.device import pick_device
from ..common.images import MIN_SIDE, ImageError, image_from_array, load_rgb, to_tensor
from ..common.jobs import CancelToken, ProgressCallback, check_cancel, report
from . import nearest_patches, quilting, structure

ExemplarLike = Union[str, Path, np.ndarray]

MAX_SIDE = 16384
DEFAULT_PATCH = 7
DEFAULT_PROJECTIONS = 64
DEFAULT_STEPS = 16  # per scale up to TAPER_PIXELS
TAPER_PIXELS = 128 * 128
MIN_STEPS = 4
PYRAMID_FACTOR = 0.75
COARSEST_SIDE = 32  # the exemplar's shorter side at the coarsest scale
# Exemplar patches kept per scale (a random sample: plenty for quantiles of 1-D projections).
MAX_EXEMPLAR_PATCHES = 1 << 14
# Bound on projected values held at once (elements): chunks of projections keep
# memory flat for any canvas (2^25 floats = 128 MiB plus the sort's indices).
PROJECTION_BUDGET = 1 << 25
HISTOGRAM_BINS = 2048
# Over-relaxation of each matching step: overlapping patches' moves partly cancel when averaged,
# so a full step under-shoots (measured: x2 halves the final patch distance at equal cost).
STEP_GAIN = 2.0
# ...but the summed moves of k random directions in d-D patch space act like (k/d) x a projection:
# keep (gain * k/d) at most this, or grey exemplars (d = 49 < k) overshoot and diverge.
MAX_RELAXATION = 1.2
# Fine scales are copied from real exemplar patches (nearest_patches.py), octave by octave, from at most
# this many octaves below full size; the layout below them comes from the sliced steps.
COPY_OCTAVES = 3
COPY_MIN_EXEMPLAR_SIDE = 48  # the exemplar's shorter side at the first copying octave
# EM rounds per copying octave, finest last, and PatchMatch iterations per round.
COPY_ROUNDS = (6, 4, 3, 1)
# PatchMatch iterations per round: the full-size octave starts from a field upsampled from a converged one
# and only refines it (its pixels are 3/4 of all the work), so one iteration does there.
COPY_SEARCH = 3
COPY_SEARCH_FINAL = 1
# The layout: "blocks" (lattice-snapped exemplar blocks, then copying), "sliced" (sliced-Wasserstein steps),
# or "auto": blocks when an exemplar repeats on a lattice, sliced otherwise (``structure.layout_for``).
# Blocks measured as good as or better than sliced on irregular photographs too (docs/synth_photos_before_after.md),
# so "auto" would only lose there.
# "quilted": as "blocks", but the blocks are chosen to fit their neighbours, joined along the cheapest seam
# and spread over the whole exemplar (``quilting.py``, Efros & Freeman 2001), at full resolution. The default:
# over 2 seeds on the 15 bundled, measuring and validation photographs (docs/synth_photos_before_after.md) it
# lowered the mixed brick wall 4.76 -> 1.25, bark 1.74 -> 1.17, stone wall 2.70 -> 1.48, rock 1.67 -> 1.15,
# and kept 14 of the 15 within 1.3 of the photographs' own crops (blocks: 7).
LAYOUTS = ("auto", "blocks", "quilted", "sliced")
BLOCK_LAYOUTS = ("blocks", "quilted")
DEFAULT_LAYOUT = "quilted"
# Side of the start's blocks as a share of the smallest exemplar's side (at the first copying octave).
BLOCK_SHARE = 1 / 3
# The quilt's blocks: smaller, since its seams follow joints and its usage term spreads them over the photo
# (2 seeds, 15 photographs: a quarter beat a third on 14; docs/synth_photos_before_after.md).
QUILT_BLOCK_SHARE = 1 / 4
# The quilt's pieces come from different places of the photograph and rarely share their tone where they
# meet: its final image is blended across the seams in the gradient domain (``nearest_patches.blend_seams``).
BLEND_SEAMS = True
# Above this many output pixels an octave only carries the copy map up (no search): memory and time stay flat.
COPY_MAX_PIXELS = 2048 * 2048

@dataclass
class ScaleRecord:
    """One pyramid level: its output size and the patch distance before/after its steps."""

    width: int
    height: int
    steps: int  # sliced steps (layout) or copy rounds (detail)
    stage: str = "layout"  # "layout": sliced patch-distribution steps; "detail": copied exemplar patches
    distance_before: float | None = None
    distance_after: float | None = None

@dataclass
class SynthesisResult:
    image: np.ndarray  # float32 HxWx3 sRGB in [0, 1]
    scales: list[ScaleRecord] = field(default_factory=list)

def _as_exemplar(item: ExemplarLike, index: int) -> np.ndarray:
    if isinstance(item, (str, Path)):
        rgb = load_rgb(item)
    else:
        rgb = image_from_array(np.asarray(item), "srgb", f"exemplar {index + 1}").rgb
    return np.ascontiguousarray(np.clip(rgb, 0.0, 1.0), dtype=np.float32)

def _check_inputs(exemplars: Sequence[np.ndarray], width: int, height: int, patch: int) -> None:
    for name, side in (("width", width), ("height", height)):
        if not isinstance(side, (int, np.integer)) or isinstance(side, bool):
            raise ValueError(f"{name} must be a whole number of pixels, got {side!r}")
        if not MIN_SIDE <= side <= MAX_SIDE:
            raise ValueError(f"{name} must be between {MIN_SIDE} and {MAX_SIDE} pixels, got {side}")
    if patch < 3 or patch % 2 == 0:
        raise ValueError(f"patch size must be an odd number >= 3, got {patch}")
    for i, ex in enumerate(exemplars):
        if min(ex.shape[:2]) < 2 * patch:
            raise ImageError(f"exemplar {i + 1} is {ex.shape[1]}x{ex.shape[0]} px; it needs at least "
                             f"{2 * patch} px per side")

def _copy_octaves(exemplars: Sequence[np.ndarray], width: int, height: int, patch: int) -> int:
    """How many octaves below full size the copying starts (0: only at full size)."""
    smallest = min(min(ex.shape[:2]) for ex in exemplars)
    octaves = 0
    while (octaves < COPY_OCTAVES and smallest / 2 ** (octaves + 1) >= COPY_MIN_EXEMPLAR_SIDE
           and min(width, height) / 2 ** (octaves + 1) >= 2 * patch):
        octaves += 1
    return octaves

def _quilt_octaves(exemplars: Sequence[np.ndarray], width: int, height: int, patch: int, fallback: int) -> int:
    """The octave the quilted layout is quilted at: the finest whose block loop stays within
    ``quilting.MAX_BLOCKS`` (full size up to ~3000 px canvases), since only at full resolution are the mortar
    lines and fissures visible that the seams should follow; ``fallback`` (the usual first copying octave)
    when the exemplars are too small to quilt."""
    smallest = min(min(e.shape[:2]) for e in exemplars)
    for k in range(COPY_OCTAVES + 1):
        block = max(2 * patch, round(smallest * 0.5 ** k * QUILT_BLOCK_SHARE))
        side = round(smallest * 0.5 ** k)
        if not quilting.fits([(0, 0, side, side)], block, patch):
            break
        if quilting.block_count(round(height * 0.5 ** k), round(width * 0.5 ** k), block) <= quilting.MAX_BLOCKS:
            return k
    return fallback

def _level_sizes(smallest: int, patch: int, levels: int | None) -> list[float]:
    """Scale factors of the sliced-steps pyramid, coarsest first (the last is 1.0)."""
    if levels is None:
        coarse = max(COARSEST_SIDE, 2 * patch)
        levels = 1 + max(0, int(math.floor(math.log(coarse / smallest) / math.log(PYRAMID_FACTOR))))
    levels = max(1, int(levels))
    # Never shrink an exemplar below two patches.
    while levels > 1 and smallest * PYRAMID_FACTOR ** (levels - 1) < 2 * patch:
        levels -= 1
    return [PYRAMID_FACTOR ** (levels - 1 - i) for i in range(levels)]

def _resize(x: torch.Tensor, height: int, width: int, periodic: bool) -> torch.Tensor:
    """Resize between pyramid levels; ``periodic`` keeps a torus a torus.

    On the torus a band-limited (Fourier) resize: bilinear weights at a
    fractional ratio blur columns unevenly in a pattern tied to the image's
    origin (e.g. every 4th column sharper at 3:4), which would make the wrap
    border differ from other column boundaries; the Fourier resize treats every
    column alike.
    """
    if x.shape[-2:] == (height, width):
        return x
    if not periodic:
        down = height < x.shape[-2] or width < x.shape[-1]
        return F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False, antialias=down)

    def axis(t: torch.Tensor, n_out: int, dim: int) -> torch.Tensor:
        n_in = t.shape[dim]
        if n_in == n_out:
            return t
        spectrum = torch.fft.fft(t.double(), dim=dim)
        n_keep = min(n_in, n_out)
        positive, negative = (n_keep + 1) // 2, n_keep // 2
        shape = list(t.shape)
        shape[dim] = n_out
        out = torch.zeros(shape, dtype=spectrum.dtype, device=t.device)
        out.narrow(dim, 0, positive).copy_(spectrum.narrow(dim, 0, positive))
        if negative:
            out.narrow(dim, n_out - negative, negative).copy_(spectrum.narrow(dim, n_in - negative, negative))
        return (torch.fft.ifft(out, dim=dim).real * (n_out / n_in)).to(t.dtype)

    return axis(axis(x, height, 2), width, 3)

def _directions(count: int, dim: int, gen: torch.Generator) -> torch.Tensor:
    """``count`` random unit directions in ``dim``-D patch space, drawn on the CPU (device-independent).

    Not orthogonalised: in ~150-D random directions are nearly orthogonal
    already (|cos| ~ 0.08) and a QR per step costs more than it brings.
    """
    d = torch.randn(count, dim, generator=gen, device="cpu")
    return d / d.norm(dim=1, keepdim=True)

def _sample_exemplar_patches(pyramid: list[torch.Tensor], patch: int, gen: torch.Generator,
                             limit: int) -> torch.Tensor:
    """Pooled exemplar patches (N x C*p*p), at most ``limit`` drawn evenly across exemplars.

    Sampled positions are gathered directly (never unfolding a whole large
    exemplar); exemplar borders are real borders, so patches never wrap.
    """
    counts = [(e.shape[-2] - patch + 1) * (e.shape[-1] - patch + 1) for e in pyramid]
    total = sum(counts)
    out = []
    offsets = torch.arange(patch, device="cpu")  # index arithmetic on the CPU, moved below
    for ex, n in zip(pyramid, counts):
        if total <= limit:
            out.append(F.unfold(ex, patch)[0].T)
            continue
        keep = max(1, round(limit * n / total))
        index = torch.randperm(n, generator=gen, device="cpu")[:keep]
        width = ex.shape[-1] - patch + 1
        ys = (index // width).view(-1, 1, 1) + offsets.view(1, -1, 1)
        xs = (index % width).view(-1, 1, 1) + offsets.view(1, 1, -1)
        patches = ex[0][:, ys.to(ex.device), xs.to(ex.device)]  # C x N x p x p
        out.append(patches.permute(1, 0, 2, 3).reshape(keep, -1))  # channel-major, as conv kernels are
    return torch.cat(out)

def _block_start(pyramid: list[torch.Tensor], height: int, width: int, patch: int,
                 gen: torch.Generator, periodic: bool) -> torch.Tensor:
    """The coarsest level's start: a grid of exemplar blocks from random places (and exemplars).

    Gives the layout the right large-scale pieces (courses, cells) from the
    start; the matching then dissolves the block borders and, at finer scales,
    re-synthesizes every detail, so the result is not a collage of crops.
    """
    c = pyramid[0].shape[1]
    smallest = min(min(e.shape[-2:]) for e in pyramid)
    block = max(patch, smallest // 3)
    out = torch.empty(1, c, height, width, device=pyramid[0].device)
    for top in range(0, height, block):
        for left in range(0, width, block):
            bh, bw = min(block, height - top), min(block, width - left)
            source = pyramid[int(torch.randint(len(pyramid), (1,), generator=gen))]
            y = int(torch.randint(source.shape[-2] - bh + 1, (1,), generator=gen))
            x = int(torch.randint(source.shape[-1] - bw + 1, (1,), generator=gen))
            out[..., top: top + bh, left: left + bw] = source[..., y: y + bh, x: x + bw]
    if periodic:
        # A random grid phase: the wrap border is then no likelier to be a block border than any other line.
        shift = (int(torch.randint(height, (1,), generator=gen)), int(torch.randint(width, (1,), generator=gen)))
        out = out.roll(shift, dims=(2, 3))
    return out

def _match_colours(x: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """Match each principal colour axis's histogram to the exemplars' (1-D optimal transport).

    Sliced steps in patch space leave faint chromatic noise along weak colour
    axes (e.g. purple speckles in brown bark); this pulls the colour marginals
    back onto the exemplars' without touching the layout.
    """
    c = x.shape[1]
    if c == 1:
        return x
    mean = pixels.mean(dim=1, keepdim=True)
    _, basis = torch.linalg.eigh(torch.cov(pixels))  # c x c, columns are colour axes
    flat = x[0].reshape(c, -1)
    coords = basis.T @ (flat - mean)
    reference = torch.sort(basis.T @ (pixels - mean), dim=1).values
    coords = coords + _sorted_displacement(coords, reference)
    return (basis @ coords + mean).view_as(x)

def _project(x: torch.Tensor, kernels: torch.Tensor, periodic: bool) -> torch.Tensor:
    """Every patch of ``x`` (1xCxHxW) projected on each kernel: K x (number of patches)."""
    pad = kernels.shape[-1] // 2
    if periodic:
        x = F.pad(x, (pad, pad, pad, pad), mode="circular")
    return F.conv2d(x, kernels)[0].flatten(1)

def _sorted_displacement(values: torch.Tensor, reference_sorted: torch.Tensor) -> torch.Tensor:
    """Exact 1-D optimal transport per row (by sorting): the move of each value onto the reference quantiles."""
    n = values.shape[1]
    m = reference_sorted.shape[1]
    sorted_vals, order = torch.sort(values, dim=1)
    if m == n:
        quantiles = reference_sorted
    else:
        pos = ((torch.arange(n, device=values.device, dtype=torch.float32) + 0.5) * (m / n) - 0.5).clamp(0, m - 1)
        lo = pos.floor().long()
        hi = (lo + 1).clamp(max=m - 1)
        frac = (pos - lo.float()).unsqueeze(0)
        quantiles = reference_sorted[:, lo] * (1 - frac) + reference_sorted[:, hi] * frac
    delta = torch.empty_like(values)
    delta.scatter_(1, order, quantiles - sorted_vals)
    return delta

def _histogram_displacement(values: torch.Tensor, reference: torch.Tensor, bins: int = HISTOGRAM_BINS) -> torch.Tensor:
    """1-D optimal transport per row through histograms: T = F_ref^-1(F_values(v)), piecewise linear.

    Linear time (no sort of the millions of output values per step): both CDFs
    are tabulated on ``bins`` buckets over the rows' common range, the monotone
    map is tabulated at the bucket edges and interpolated inside each bucket.
    """
    k = values.shape[0]
    lo = torch.minimum(values.amin(1, keepdim=True), reference.amin(1, keepdim=True))
    hi = torch.maximum(values.amax(1, keepdim=True), reference.amax(1, keepdim=True))
    width = (hi - lo).clamp_min(1e-12) / bins

    def cdf(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pos = torch.addcmul(-lo / width, x, 1.0 / width)
        idx = pos.long().clamp_(0, bins - 1)
        counts = torch.zeros(k, bins, device=x.device, dtype=torch.float32)
        counts.scatter_add_(1, idx, torch.ones(1, 1, device=x.device).expand_as(pos))
        table = torch.cat([torch.zeros(k, 1, device=x.device), counts.cumsum(1)], dim=1) / x.shape[1]
        return table, (pos, idx)

    cdf_values, (pos, idx) = cdf(values)
    cdf_ref, _ = cdf(reference)
    # Inverse reference CDF at each output bucket edge's CDF value.
    bucket = (torch.searchsorted(cdf_ref.contiguous(), cdf_values.contiguous(), right=True) - 1).clamp_(0, bins - 1)
    left = torch.gather(cdf_ref, 1, bucket)
    right = torch.gather(cdf_ref, 1, bucket + 1)
    t = ((cdf_values - left) / (right - left).clamp_min(1e-12)).clamp_(0, 1)
    mapped_edges = lo + (bucket.float() + t) * width  # k x (bins + 1)
    frac = pos.sub_(idx).clamp_(0, 1)
    mapped = torch.lerp(torch.gather(mapped_edges, 1, idx), torch.gather(mapped_edges, 1, idx + 1), frac)
    return mapped.sub_(values)

def _match_step(x: torch.Tensor, exemplar_patches: torch.Tensor, directions: torch.Tensor, patch: int,
                periodic: bool, chunk: int) -> tuple[torch.Tensor, float]:
    """One sliced optimal-transport step; returns the new image and the step's mean squared displacement."""
    c = x.shape[1]
    gain = min(STEP_GAIN, MAX_RELAXATION * directions.shape[1] / directions.shape[0])
    update = torch.zeros_like(x)
    sq_sum = 0.0
    count = 0
    for start in range(0, directions.shape[0], chunk):
        dirs = directions[start: start + chunk].to(x.device)
        kernels = dirs.view(-1, c, patch, patch)
        values = _project(x, kernels, periodic)
        delta = _histogram_displacement(values, dirs @ exemplar_patches.T)
        sq_sum += float((delta ** 2).sum())
        count += delta.numel()
        h_out, w_out = (x.shape[-2], x.shape[-1]) if periodic else (x.shape[-2] - patch + 1, x.shape[-1] - patch + 1)
        delta_map = delta.view(1, -1, h_out, w_out)
        if periodic:
            pad = patch // 2
            spread = F.conv_transpose2d(delta_map, kernels)  # H+2p x W+2p: fold the wrapped margins back
            update += _fold_periodic(spread, pad)
        else:
            update += F.conv_transpose2d(delta_map, kernels)
        del values, delta, delta_map
    # Every pixel lies in patch*patch patches (fewer at a non-periodic border): average their moves.
    if periodic:
        coverage = float(patch * patch)
        x = x + gain * update / coverage
    else:
        ones = torch.ones(1, 1, x.shape[-2] - patch + 1, x.shape[-1] - patch + 1, device=x.device)
        coverage = F.conv_transpose2d(ones, torch.ones(1, 1, patch, patch, device=x.device))
        x = x + gain * update / coverage
    return x, sq_sum / max(1, count)

def _fold_periodic(t: torch.Tensor, pad: int) -> torch.Tensor:
    """Add the ``pad``-wide margins of a circularly padded map back onto the opposite edges."""
    h = t.shape[-2] - 2 * pad
    w = t.shape[-1] - 2 * pad
    t = t.clone()
    t[..., pad: 2 * pad, :] += t[..., h + pad:, :]
    t[..., h: h + pad, :] += t[..., :pad, :]
    t = t[..., pad: h + pad, :]
    t[..., :, pad: 2 * pad] += t[..., :, w + pad:]
    t[..., :, w: w + pad] += t[..., :, :pad]
    return t[..., :, pad: w + pad]

@torch.no_grad()
def patch_distance(x: torch.Tensor, exemplar_patches: torch.Tensor, patch: int, periodic: bool,
                   projections: int = 128, seed: int = 0, chunk: int = 64) -> float:
    """Sliced Wasserstein-2 distance (mean squared) between ``x``'s patches and the exemplar patches.

    Fixed seeded directions, so values at different steps are comparable.
    """
    gen = torch.Generator().manual_seed(seed)
    c = x.shape[1]
    directions = _directions(projections, c * patch * patch, gen)
    total, count = 0.0, 0
    for start in range(0, projections, chunk):
        dirs = directions[start: start + chunk].to(x.device)
        ref_sorted = torch.sort(dirs @ exemplar_patches.T, dim=1).values
        delta = _sorted_displacement(_project(x, dirs.view(-1, c, patch, patch), periodic), ref_sorted)
        total += float((delta ** 2).sum())
        count += delta.numel()
    return total / max(1, count)

def _steps_for(level: int, levels: int, steps: int | Sequence[int] | None, pixels: int) -> int:
    """Steps at one level: ``steps`` up to TAPER_PIXELS, then fewer as the side doubles (halved per doubling).

    The structure settles at the small scales, which are cheap; the large ones
    mostly sharpen what the upsampling blurred, and each of their steps is expensive.
    """
    if isinstance(steps, (list, tuple)):
        if len(steps) != levels:
            raise ValueError(f"steps lists one count per scale: got {len(steps)} for {levels} scales")
        return int(steps[level])
    base = DEFAULT_STEPS if steps is None else int(steps)
    if base < 1:
        raise ValueError(f"steps must be at least 1, got {base}")
    return max(min(base, MIN_STEPS), round(base * min(1.0, (TAPER_PIXELS / pixels) ** 0.5)))

@torch.no_grad()
def synthesize(exemplars: ExemplarLike | Sequence[ExemplarLike], width: int, height: int, seed: int = 0,
               tileable: bool = True, steps: int | Sequence[int] | None = None, scales: int | None = None,
               patch_size: int = DEFAULT_PATCH, projections: int = DEFAULT_PROJECTIONS,
               device: str | torch.device | None = None, progress: ProgressCallback | None = None,
               cancel: CancelToken | None = None, track_distance: bool = False,
               layout: str = DEFAULT_LAYOUT, warn: Callable[[str], None] | None = None) -> SynthesisResult:
    """Synthesize a ``width`` x ``height`` texture like the exemplar(s); no training.

    ``exemplars``: one or more image paths or float HxWx3 sRGB arrays in [0, 1];
    their patches are pooled. ``tileable``: wraps seamlessly on both axes.
    ``steps``: matching steps per scale (an int, or one per scale); ``scales``:
    pyramid levels (default: down to ~32 px of the smallest exemplar).
    ``track_distance`` records each scale's patch distance before and after its
    steps (costs two extra projections per scale). Same seed, same result.
    ``layout``: how the coarse layout is made before the copying octaves. "blocks" (default): the
    exemplars' smooth lighting is divided out and slanted courses straightened, then the output is tiled by exemplar blocks whose offsets
    snap to the exemplar's lattice when it repeats (``structure.py``), so courses stay straight and cells
    whole; the lighting is put back on plain (non-tileable) output. "quilted": the same, with blocks that
    fit their neighbours, joined along the cheapest seam (``quilting.py``). "sliced": sliced-Wasserstein steps
    from a noisy block start (GPDM-like; ``steps``, ``scales`` and ``projections`` apply to it only).
    "auto": "blocks" when an exemplar repeats on a lattice, else "sliced" (``structure.layout_for``).
    ``warn`` receives what the caller should show the user about the inputs (e.g. burnt-out highlights).
    """
    if isinstance(exemplars, (str, Path, np.ndarray)):
        exemplars = [exemplars]
    exemplar_list = [_as_exemplar(e, i) for i, e in enumerate(exemplars)]
    if not exemplar_list:
        raise ValueError("synthesis needs at least one exemplar image")
    for i, e in enumerate(exemplar_list):
        share = structure.blown_out_share(e)
        if warn is not None and share >= structure.BLOWN_OUT_WARN_SHARE:
            which = f"exemplar {i + 1}" if len(exemplar_list) > 1 else "the exemplar"
            warn(f"{share:.0%} of {which} is burnt out to white (a flash or the sun): those parts hold no texture, "
                 "so the texture is made from the rest of it (with less variety); a photo exposed for its highlights "
                 "gives more")
    _check_inputs(exemplar_list, width, height, patch_size)
    if projections < 1:
        raise ValueError(f"projections must be at least 1, got {projections}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    light = None
    lattices: list[structure.Lattice | None] = []
    # Burnt-out parts of an exemplar (None: under the warning's share), which the quilt leaves alone.
    burnt: list[np.ndarray | None] = [None] * len(exemplar_list)
    if layout in ("auto", *BLOCK_LAYOUTS):
        burnt = [structure.burnt_out_mask(e) for e in exemplar_list]  # before the lighting is divided out
        flattened = [structure.flatten_lighting(e) for e in exemplar_list]
        # Slanted courses made parallel; a burnt-out mask rides along as a fourth channel (the same warp).
        straightened = []
        for i, ((f, _), m) in enumerate(zip(flattened, burnt)):
            if m is None:
                straightened.append(structure.straighten(f))
            else:
                warped = structure.straighten(np.dstack([f, m]))
                straightened.append(np.ascontiguousarray(warped[..., :3]))
                burnt[i] = np.ascontiguousarray(warped[..., 3])
        lattices = [structure.find_lattice(f) for f in straightened]
        if layout == "auto":
            layout = structure.layout_for(lattices)
        if layout in BLOCK_LAYOUTS:
            exemplar_list = straightened
            light = flattened[0][1]
    dev = pick_device(device)
    gen = torch.Generator().manual_seed(int(seed))
    # Layout by sliced steps up to the first copying octave, then octave by octave copied detail.
    octaves = _copy_octaves(exemplar_list, width, height, patch_size)
    if layout == "quilted":
        octaves = _quilt_octaves(exemplar_list, width, height, patch_size, octaves)
    layout_factor = 0.5 ** octaves
    smallest = min(min(e.shape[:2]) for e in exemplar_list)
    factors = [f * layout_factor for f in _level_sizes(round(smallest * layout_factor), patch_size, scales)]
    levels = len(factors)
    sizes = [(max(patch_size, round(height * f)), max(patch_size, round(width * f))) for f in factors]
    step_counts = [_steps_for(i, levels, steps, h * w) for i, (h, w) in enumerate(sizes)]
    if layout in BLOCK_LAYOUTS:
        factors, sizes, step_counts, levels = [], [], [], 0
    copy_sizes = [(max(patch_size, round(height * 0.5 ** k)), max(patch_size, round(width * 0.5 ** k)))
                  for k in range(octaves, -1, -1)]
    copy_rounds = [0 if h * w > COPY_MAX_PIXELS else COPY_ROUNDS[len(COPY_ROUNDS) - 1 - k]
                   for k, (h, w) in zip(range(octaves, -1, -1), copy_sizes)]
    if octaves == 0 and copy_rounds[0]:  # full size is also the first copying octave: it must converge
        # ...except a quilt, which is already whole exemplar pieces joined along joints: one round heals the
        # seams (three measured the same on 3 photographs, at three times the cost).
        copy_rounds[0] = COPY_ROUNDS[-1] if layout == "quilted" else COPY_ROUNDS[-2]
    total_steps = sum(step_counts) + sum(max(1, n) for n in copy_rounds)
    exemplar_tensors = [to_tensor(e).to(dev) for e in exemplar_list]
    # Grey exemplars (a photo's luminance) are synthesized in one channel: a third of the work,
    # and no colour can creep in.
    grey = all(float(np.abs(e - e[..., :1]).max()) < 1e-6 for e in exemplar_list)
    if grey:
        exemplar_tensors = [e[:, :1] for e in exemplar_tensors]
    c = exemplar_tensors[0].shape[1]
    dim = c * patch_size * patch_size
    records: list[ScaleRecord] = []
    done = 0

    def exemplar_pyramid(factor: float) -> list[torch.Tensor]:
        return [_resize(e, max(patch_size, round(e.shape[-2] * factor)), max(patch_size, round(e.shape[-1] * factor)),
                        periodic=False) for e in exemplar_tensors]

    x = None
    for level, (factor, (h, w), n_steps) in enumerate(zip(factors, sizes, step_counts)):
        pyramid = exemplar_pyramid(factor)
        ex_patches = _sample_exemplar_patches(pyramid, patch_size, gen, MAX_EXEMPLAR_PATCHES)
        if x is None:
            x = _block_start(pyramid, h, w, patch_size, gen, tileable)
        else:
            x = _resize(x, h, w, periodic=tileable)
        chunk = max(1, min(projections, PROJECTION_BUDGET // max(1, h * w)))
        record = ScaleRecord(width=w, height=h, steps=n_steps)
        if track_distance:
            record.distance_before = patch_distance(x, ex_patches, patch_size, tileable, seed=seed + level)
        for step in range(n_steps):
            check_cancel(cancel)
            directions = _directions(projections, dim, gen)
            x, moved = _match_step(x, ex_patches, directions, patch_size, tileable, chunk)
            done += 1
            last = step == n_steps - 1
            report(progress, done, total_steps, f"layout {level + 1}/{levels} ({w}x{h}) step {step + 1}/{n_steps}",
                   losses={"patch_swd": moved},
                   preview=_preview(x) if last else None)
        x = _match_colours(x, torch.cat([p.flatten(2)[0] for p in pyramid], dim=1))
        if track_distance:
            record.distance_after = patch_distance(x, ex_patches, patch_size, tileable, seed=seed + level)
        records.append(record)
        del ex_patches, pyramid

    # Detail: copied from real exemplar patches, octave by octave (sharp where the sliced steps average).
    image = None if x is None else x[0]
    field, atlas = None, None
    for i, (k, (h, w), rounds) in enumerate(zip(range(octaves, -1, -1), copy_sizes, copy_rounds)):
        check_cancel(cancel)
        pyramid = exemplar_pyramid(0.5 ** k)
        previous, atlas = atlas, nearest_patches.PatchAtlas([e[0] for e in pyramid], patch_size)
        record = ScaleRecord(width=w, height=h, steps=rounds, stage="detail")
        # Measuring draws from its own generator: tracking the distance never changes the texture.
        ex_patches = (_sample_exemplar_patches(pyramid, patch_size, torch.Generator().manual_seed(int(seed) + i),
                                               MAX_EXEMPLAR_PATCHES) if track_distance else None)
        start = None if image is None else _resize(image[None], h, w, periodic=tileable)[0]
        if field is None and layout in BLOCK_LAYOUTS:
            field = _block_field(atlas, pyramid, lattices, 0.5 ** k, h, w, patch_size, gen, tileable,
                                 quilt=layout == "quilted", check=lambda: check_cancel(cancel), burnt=burnt)
            start = nearest_patches.vote_average(atlas, *field, torch.zeros(h, w, device=dev), tileable)
        elif field is not None:
            field = nearest_patches.upsample_field(*field, h, w, previous, atlas)
            start = nearest_patches.vote_average(atlas, *field, torch.zeros(h, w, device=dev), tileable)
        if track_distance:
            record.distance_before = patch_distance(start[None], ex_patches, patch_size, tileable, seed=seed + levels + i)
        final = k == 0

        def tick(current: torch.Tensor, label=f"detail {i + 1}/{octaves + 1} ({w}x{h})") -> None:
            nonlocal done
            check_cancel(cancel)
            done += 1
            report(progress, done, total_steps, label, preview=_preview(current[None]) if done == total_steps else None)

        if rounds == 0:  # too large to search: carry the copy map up as it is
            image = start if not final else nearest_patches.copy_field(atlas, *field)
            tick(image)
        else:
            image, field = nearest_patches.refine_level(start, atlas, field, rounds,
                                                        COPY_SEARCH_FINAL if final and (octaves or layout == "quilted")
                                                        else COPY_SEARCH,
                                                        gen, tileable,
                                                        final, on_iteration=tick,
                                                        blend=final and layout == "quilted" and BLEND_SEAMS)
        if track_distance:
            record.distance_after = patch_distance(image[None], ex_patches, patch_size, tileable, seed=seed + levels + i)
        records.append(record)
    x = _resize(image[None], height, width, periodic=tileable)  # exact size when a level was clamped
    image = _preview(x)
    if light is not None and not tileable:  # a gradient cannot tile; plain output keeps the photo's lighting
        image = structure.relight(image, light)
    return SynthesisResult(np.ascontiguousarray(image, dtype=np.float32), records)

def _block_field(atlas: nearest_patches.PatchAtlas, pyramid: list[torch.Tensor],
                 lattices: list[structure.Lattice | None], factor: float, height: int, width: int, patch: int,
                 gen: torch.Generator, periodic: bool, quilt: bool = False,
                 check: Callable[[], None] | None = None, burnt: Sequence[np.ndarray | None] | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """The first copying octave's start: exemplar blocks, offsets on each exemplar's lattice; ``quilt``: the
    blocks quilted to fit their neighbours (``quilting.py``) where the exemplars and the canvas allow it, away from
    each exemplar's ``burnt`` (burnt-out) parts."""
    regions, left = [], 0
    for e in pyramid:
        regions.append((0, left, e.shape[-2], e.shape[-1]))
        left += e.shape[-1]
    smallest = min(min(e.shape[-2:]) for e in pyramid)
    block = max(2 * patch, round(smallest * (QUILT_BLOCK_SHARE if quilt else BLOCK_SHARE)))
    scaled = [None if lat is None else lat.scaled(factor) for lat in lattices]
    if quilt and quilting.fits(regions, block, patch) and \
            quilting.block_count(height, width, block) <= quilting.MAX_BLOCKS:
        # Each burnt-out mask at this octave's size: the share of each pixel that is burnt out.
        avoid = [None if m is None else F.interpolate(torch.from_numpy(m)[None, None], size=e.shape[-2:],
                                                      mode="area")[0, 0]
                 for m, e in zip(burnt or [None] * len(pyramid), pyramid)]
        fy, fx = quilting.quilt_field(atlas.image.cpu(), regions, scaled, height, width, block, patch, gen, periodic,
                                      check_cancel=check, avoid=avoid)
    else:  # exemplars too small for overlapping blocks, or a canvas too large for the per-block loop
        fy, fx = structure.block_field(regions, scaled, height, width, block, patch, gen, periodic)
    return fy.to(atlas.image.device), fx.to(atlas.image.device)

def _preview(x: torch.Tensor) -> np.ndarray:
    """HxWx3 sRGB array of the current image (grey synthesis gives three equal channels)."""
    return np.ascontiguousarray(x[0].clamp(0, 1).expand(3, -1, -1).permute(1, 2, 0).float().cpu().numpy())
