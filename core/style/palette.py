"""A painting's palette (mean and covariance of its sRGB colours) and matching a frame to it.

Measured on the held-out photo and render, about half of the judge's style
distance to a painting is its colours (relu1_1 Grams): a linear colour
transfer alone cuts it 19-57 %. A narrow CPU-trained network paints the
strokes but only partly reaches the palette, so the multi-style network ends
with this exact, cheap step: the output's colour mean and covariance are
mapped onto the painting's (Hertzmann et al. 2001 / Pitié & Kokaram's linear
"Monge-Kantorovich" variant with the symmetric square root, which keeps hues
in place better than a Cholesky factor). The map is one 3x3 matrix and an
offset per frame, measured on the whole output, so tiles agree and an
animation's frames share a transform that changes only as the frame's
colours do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch

SAMPLES = 1 << 16  # pixels sampled (on a regular grid) when measuring a frame's colours
EPS = 1e-6  # added to a frame's colour variances: flat frames stay finite (real frames: 1e-3..1e-1)


@dataclass(frozen=True)
class Palette:
    mean: tuple[float, float, float]
    cov: tuple[tuple[float, float, float], ...]  # 3x3, symmetric

    @classmethod
    def of_image(cls, rgb: np.ndarray) -> "Palette":
        """The palette of an HxWx3 sRGB image in [0, 1]."""
        if rgb.ndim != 3 or rgb.shape[2] < 3:
            raise ValueError(f"a palette needs an HxWx3 image, got shape {rgb.shape}")
        pixels = np.asarray(rgb[..., :3], np.float64).reshape(-1, 3)
        mean = pixels.mean(axis=0)
        cov = np.cov(pixels.T, bias=True) if len(pixels) > 1 else np.zeros((3, 3))
        return cls(tuple(float(v) for v in mean), tuple(tuple(float(v) for v in row) for row in cov))

    def as_dict(self) -> dict:
        return {"mean": list(self.mean), "cov": [list(row) for row in self.cov]}

    @classmethod
    def from_dict(cls, data: Mapping) -> "Palette":
        mean = np.asarray(data["mean"], np.float64)
        cov = np.asarray(data["cov"], np.float64)
        if mean.shape != (3,) or cov.shape != (3, 3) or not (np.isfinite(mean).all() and np.isfinite(cov).all()):
            raise ValueError("a palette is a mean of 3 values and a 3x3 covariance, all finite")
        cov = 0.5 * (cov + cov.T)
        if np.linalg.eigvalsh(cov).min() < -1e-6:
            raise ValueError("a palette's covariance must be positive semi-definite")
        return cls(tuple(float(v) for v in mean), tuple(tuple(float(v) for v in row) for row in cov))


def blend(palettes: Sequence[Palette], weights: Sequence[float]) -> Palette:
    """The palette of a style mix: the weighted mixture of the paintings' colour distributions."""
    w = np.asarray(weights, np.float64)
    if len(palettes) != len(w) or len(w) == 0 or w.sum() <= 0:
        raise ValueError("blend needs one weight per palette, summing to more than zero")
    w = w / w.sum()
    means = np.array([p.mean for p in palettes])
    mean = (w[:, None] * means).sum(axis=0)
    # a mixture's covariance: the weighted covariances plus the spread of the means
    cov = sum(wi * (np.array(p.cov) + np.outer(m - mean, m - mean)) for wi, p, m in zip(w, palettes, means))
    return Palette(tuple(float(v) for v in mean), tuple(tuple(float(v) for v in row) for row in cov))


def _ridged(cov: torch.Tensor) -> torch.Tensor:
    """A frame's colour covariance with ``EPS`` added to its variances: flat frames stay finite, and the
    host's eigendecomposition and the device's Newton-Schulz root (``inverse_sqrt_psd``) agree on every frame
    (a floor on the eigenvalues instead differed by up to 0.19 on a grey frame with 1e-3 of colour noise)."""
    return cov + EPS * torch.eye(3, dtype=cov.dtype, device=cov.device)


def _sqrt_psd(cov: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(cov)
    roots = values.clamp_min(EPS).rsqrt() if inverse else values.clamp_min(0.0).sqrt()
    return vectors @ torch.diag(roots) @ vectors.T


@torch.no_grad()
def match_palette(x: torch.Tensor, palette: Palette, strength: float = 1.0) -> torch.Tensor:
    """``x`` (Nx3xHxW sRGB) with each image's colour mean and covariance mapped onto ``palette``'s,
    blended by ``strength`` (0: unchanged), clamped to [0, 1]. Runs on ``x``'s device."""
    if strength <= 0:
        return x
    out = torch.empty_like(x)
    # The 3x3 algebra runs on the CPU in float64 whatever the frame's device: on a GPU, eigh of a 3x3 is a
    # solver call that waits for the device anyway; one read of 12 numbers per frame is all it needs.
    target_mean = torch.tensor(palette.mean, dtype=torch.float64, device="cpu")
    target_root = _sqrt_psd(torch.tensor(palette.cov, dtype=torch.float64, device="cpu"))
    s = float(strength)
    for i in range(x.shape[0]):
        image = x[i]
        h, w = image.shape[-2:]
        stride = max(1, int(np.sqrt(h * w / SAMPLES)))
        pixels = image[:, ::stride, ::stride].reshape(3, -1).double()
        mean = pixels.mean(dim=1)
        centred = pixels - mean[:, None]
        stats = torch.cat([mean[:, None], centred @ centred.T / pixels.shape[1]], dim=1).cpu()
        mean, cov = stats[:, 0], stats[:, 1:]
        transform = target_root @ _sqrt_psd(_ridged(cov), inverse=True)
        offset = target_mean - transform @ mean
        # image + s * (transform @ image + offset - image), as one colour transform: one pass over the frame
        blended = (1.0 - s) * torch.eye(3, dtype=torch.float64, device="cpu") + s * transform
        blended, shift = blended.to(x.device, x.dtype), (s * offset).to(x.device, x.dtype)
        out[i] = colour_transform(image, blended, shift).clamp_(0.0, 1.0)
    return out


def palette_target(palette: Palette, strength: float) -> torch.Tensor:
    """``palette`` and ``strength`` as the 13 numbers ``match_palette_on_device`` reads (float64, on the CPU):
    the mean, the covariance's square root (3x3), the strength."""
    root = _sqrt_psd(torch.tensor(palette.cov, dtype=torch.float64, device="cpu"))
    return torch.cat([torch.tensor(palette.mean, dtype=torch.float64, device="cpu"), root.reshape(9),
                      torch.tensor([float(strength)], dtype=torch.float64, device="cpu")])


# Coupled Newton-Schulz steps for a frame's inverse colour square root: a frame's smallest colour variance over its
# total is at least EPS / 3 (the ridge), and each step multiplies that ratio's root by about 1.5 until it
# nears 1: 20 steps converge from the flattest frame (variances 0.25, 0.25 and 0), 24 leave a margin (tested).
NEWTON_SCHULZ_STEPS = 24


def inverse_sqrt_psd(cov: torch.Tensor, steps: int = NEWTON_SCHULZ_STEPS) -> torch.Tensor:
    """``_sqrt_psd(_ridged(cov), inverse=True)`` by matrix products only: nothing waits for the device, so a
    CUDA graph can hold it. Float64 in, float64 out."""
    eye = torch.eye(3, dtype=cov.dtype, device=cov.device)
    a = _ridged(0.5 * (cov + cov.T))
    scale = torch.diagonal(a).sum()  # >= the largest eigenvalue: the scaled matrix's spectrum lies in (0, 1]
    y, z = a / scale, eye
    for _ in range(steps):
        t = 0.5 * (3.0 * eye - z @ y)
        y, z = y @ t, t @ z
    return z * scale.rsqrt()


def match_palette_on_device(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``match_palette`` of a 1x3xHxW ``x`` onto ``target`` (``palette_target``, on ``x``'s device), without a
    read back to the host: the whole stylized frame, palette included, can be one CUDA graph (a host round trip
    for the 3x3 algebra was about 1 ms of a 1080p frame on the H200). Equal to ``match_palette`` to float
    rounding, flat and near-grey frames included."""
    if x.shape[0] != 1:
        raise ValueError("match_palette_on_device takes one frame")
    target = target.to(x.device, torch.float64)
    target_mean, target_root, s = target[:3], target[3:12].view(3, 3), target[12]
    image = x[0]
    h, w = image.shape[-2:]
    stride = max(1, int(np.sqrt(h * w / SAMPLES)))
    pixels = image[:, ::stride, ::stride].reshape(3, -1).double()
    mean = pixels.mean(dim=1)
    centred = pixels - mean[:, None]
    cov = (centred[:, None, :] * centred[None, :, :]).mean(dim=2)
    transform = target_root @ inverse_sqrt_psd(cov)
    offset = target_mean - transform @ mean
    blended = (1.0 - s) * torch.eye(3, dtype=torch.float64, device=x.device) + s * transform
    return colour_transform(image, blended.to(x.dtype), (s * offset).to(x.dtype)).clamp_(0.0, 1.0)[None]


def colour_transform(image: torch.Tensor, matrix: torch.Tensor, shift: torch.Tensor,
                     broadcast: bool | None = None) -> torch.Tensor:
    """``matrix @ pixel + shift`` for every pixel of a 3xHxW ``image``. The CPU's matrix product does it in one
    pass; on a GPU a product with 3 columns took 0.5 ms of a 1080p frame (the third H200 run), where three
    broadcast multiply-adds over the frame take a few microseconds. ``broadcast``: that form (default: off the
    CPU)."""
    if not (image.device.type != "cpu" if broadcast is None else broadcast):
        return torch.addmm(shift[:, None], matrix, image.reshape(3, -1)).view_as(image)
    out = torch.addcmul(shift.view(3, 1, 1), matrix[:, 0].view(3, 1, 1), image[0:1])
    out.addcmul_(matrix[:, 1].view(3, 1, 1), image[1:2])
    return out.addcmul_(matrix[:, 2].view(3, 1, 1), image[2:3])
