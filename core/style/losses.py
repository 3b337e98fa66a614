"""Style, content and smoothness losses, and colour-preservation helpers.

Losses are normalised per layer (divided by the target's own energy) so the
default weights stay meaningful whichever feature network is used.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..common.deterministic import reflect_pad
from ..common.quality import sliced_wasserstein

STYLE_LOSSES = ("gram", "sliced_wasserstein")


def gram(feats: torch.Tensor) -> torch.Tensor:
    """NxCxHxW -> NxCxC Gram matrix divided by the number of positions."""
    n, c, h, w = feats.shape
    f = feats.reshape(n, c, h * w)
    return f @ f.transpose(1, 2) / (h * w)


class StyleTarget:
    """Precomputed statistics of the style image for one feature network.

    ``loss(feats)`` compares a batch of feature lists against them. Gram
    targets are broadcast over the batch; sliced Wasserstein compares each
    batch item's feature distribution with the style's (Heitz et al. 2021).
    """

    def __init__(self, style_feats: list[torch.Tensor], kind: str = "gram", n_projections: int = 32):
        if kind not in STYLE_LOSSES:
            raise ValueError(f"style_loss must be one of {', '.join(STYLE_LOSSES)}, not {kind!r}")
        self.kind = kind
        self.n_projections = n_projections
        self.feats = [f.detach() for f in style_feats]
        self.grams = [gram(f).detach() for f in self.feats]
        self.gram_scale = [float(g.pow(2).mean()) + 1e-8 for g in self.grams]
        self.feat_scale = [float(f.pow(2).mean()) + 1e-8 for f in self.feats]

    def loss(self, feats: list[torch.Tensor], generator: torch.Generator | None = None) -> torch.Tensor:
        total = feats[0].new_zeros(())
        for i, f in enumerate(feats):
            if self.kind == "gram":
                g = gram(f)
                total = total + (g - self.grams[i]).pow(2).mean() / self.gram_scale[i]
            else:
                for b in range(f.shape[0]):
                    sw = sliced_wasserstein(f[b:b + 1], self.feats[i], self.n_projections, generator)
                    total = total + sw / self.feat_scale[i] / f.shape[0]
        return total / len(feats)


def content_loss(feats: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (feats - target).pow(2).mean() / (target.detach().pow(2).mean() + 1e-8)


def per_crop_content_distance(out_feats: torch.Tensor, content_feats: torch.Tensor) -> torch.Tensor:
    """Per crop, the squared distance of the output's features to the unstylized crop's over that crop's own
    feature energy (``quality.content_distance``'s measure), averaged over the batch. Normalised over the
    whole batch instead, a flat crop (sky, a render's wall) weighs almost nothing beside a busy one, and the
    trainings learnt to fill flat regions with texture."""
    out, ref = out_feats.float(), content_feats.float()
    dims = tuple(range(1, ref.dim()))
    return ((out - ref).pow(2).mean(dims) / (ref.pow(2).mean(dims) + 1e-8)).mean()


def total_variation(x: torch.Tensor, guide: torch.Tensor | None = None, sigma: float = 0.02) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels. With ``guide`` (the input frame), each difference
    is weighed by ``exp(-|the guide's difference| / sigma)`` (grey levels): it then costs only where the input
    is flat, so edges and the input's own texture are free and structure *added* to a sky or a wall is not."""
    dy, dx = x[..., 1:, :] - x[..., :-1, :], x[..., :, 1:] - x[..., :, :-1]
    if guide is None:
        return dy.abs().mean() + dx.abs().mean()
    g = guide.float().mean(dim=1, keepdim=True)
    wy = torch.exp(-(g[..., 1:, :] - g[..., :-1, :]).abs() / sigma)
    wx = torch.exp(-(g[..., :, 1:] - g[..., :, :-1]).abs() / sigma)
    return (dy.abs() * wy).mean() + (dx.abs() * wx).mean()


def coarse_total_variation(x: torch.Tensor, guide: torch.Tensor, pool: int = 16, sigma: float = 0.01) -> torch.Tensor:
    """Structure ``x`` adds to the flat regions of its input ``guide``, at the scale of ``pool`` px cells.

    Both images are averaged over cells (half-cell steps); each difference between neighbouring cells of ``x``
    minus the input's (grey) difference there costs its size, weighed like ``total_variation``'s by the input's
    flatness. It sees what pixel-scale TV cannot: a soft disc or glow painted onto a flat wall or sky changes
    little from one pixel to the next but much from one cell to the next, where the input does not change;
    the input's own soft shading is free, and fine strokes average out within a cell.
    Why: at 6,005 steps every fast style painted such a disc (purple, red, pale) on a render's flat cube face.
    """
    def cells(t: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(t.float(), pool, stride=max(1, pool // 2))

    # The output's difference minus the input's is the difference of (output - input grey).
    ref = cells(guide)
    return total_variation(cells(x) - ref.mean(dim=1, keepdim=True), ref, sigma)


def stability_noise(shape: torch.Size, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """Grain to perturb a batch with (``shape``: N x 3 x H x W, drawn on the CPU from the training's generator, so
    a resumed run draws the same): per-pixel noise plus noise over 4 px blobs, each of std ``sigma``."""
    n, c, h, w = shape
    fine = torch.randn(n, c, h, w, generator=generator, device="cpu")
    coarse = torch.randn(n, c, -(-h // 4), -(-w // 4), generator=generator, device="cpu")
    coarse = F.interpolate(coarse, scale_factor=4, mode="bilinear", align_corners=False)
    # bilinear upsampling lowers the std (about 0.6 of it): scale it back so both scales are ``sigma``.
    return sigma * (fine + coarse[..., :h, :w] / coarse.std().clamp(min=1e-6))


def phase_locked(x: torch.Tensor, period: int = 8, cells: int = 9) -> torch.Tensor:
    """The part of ``x`` (N x C x H x W, H and W multiples of ``period``) that repeats with the pixel grid's
    ``period``: its high-pass's local mean (over ``cells`` x ``cells`` lattice cells) at each of the period²
    phases, less the mean over phases; N x C x period² x H/period x W/period.

    A decoder that upsamples by ``period`` draws a faint grid there; a photograph's detail averages out over the
    cells, so this is near zero for it whatever its texture (for random detail, about 1 / cells² of the
    high-pass's energy).
    """
    p = period
    low = F.avg_pool2d(reflect_pad(x, (p // 2, p // 2 - 1, p // 2, p // 2 - 1)), p, stride=1)
    phases = F.pixel_unshuffle(x - low, p)
    half = min(cells // 2, min(phases.shape[-2:]) - 1)  # a reflected pad must be shorter than the lattice
    local = F.avg_pool2d(reflect_pad(phases, (half,) * 4), 2 * half + 1, stride=1)
    n, cp, h, w = local.shape
    local = local.view(n, cp // (p * p), p * p, h, w)
    return local - local.mean(dim=2, keepdim=True)


def lattice_energy(x: torch.Tensor, period: int = 8, cells: int = 9) -> torch.Tensor:
    """Per image (N), the mean squared ``phase_locked`` part: the energy of a grid locked to the pixel lattice."""
    return phase_locked(x, period, cells).pow(2).flatten(1).mean(dim=1)


# --------------------------------------------------------------------------- colour

_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], np.float32)
_FROM_YIQ = np.linalg.inv(_TO_YIQ).astype(np.float32)


def luminance_transfer(stylized: np.ndarray, content: np.ndarray) -> np.ndarray:
    """Keep the content's colours (I, Q) and take only luminance (Y) from the stylization."""
    s = stylized @ _TO_YIQ.T
    c = content @ _TO_YIQ.T
    out = np.concatenate([s[..., :1], c[..., 1:]], axis=-1) @ _FROM_YIQ.T
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def match_color_histogram(source: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Recolour ``source`` so its colour mean/covariance match ``reference`` (Gatys et al. 2016).

    Used to give the style image the content's palette before stylizing, so the
    painting's texture transfers without its colours.
    """
    src = source.reshape(-1, 3).astype(np.float64)
    ref = reference.reshape(-1, 3).astype(np.float64)
    mu_s, mu_r = src.mean(0), ref.mean(0)
    cov_s = np.cov(src, rowvar=False) + np.eye(3) * 1e-5
    cov_r = np.cov(ref, rowvar=False) + np.eye(3) * 1e-5

    def sqrtm(m, inverse=False):
        vals, vecs = np.linalg.eigh(m)
        vals = np.clip(vals, 1e-8, None) ** (-0.5 if inverse else 0.5)
        return (vecs * vals) @ vecs.T

    transform = sqrtm(cov_r) @ sqrtm(cov_s, inverse=True)
    out = (src - mu_s) @ transform.T + mu_r
    return np.clip(out, 0.0, 1.0).reshape(source.shape).astype(np.float32)


def apply_color_preservation(stylized: np.ndarray, content: np.ndarray, mode: str | None) -> np.ndarray:
    if mode == "luminance":
        return luminance_transfer(stylized, content)
    return stylized


def normalize_preserve_color(value: bool | str | None) -> str | None:
    """``True`` means luminance-only transfer; a string picks the method."""
    if value in (None, False, "", "none"):
        return None
    if value is True or value == "luminance":
        return "luminance"
    if value == "histogram":
        return "histogram"
    raise ValueError(f"preserve_color must be False, True, 'luminance' or 'histogram', not {value!r}")
