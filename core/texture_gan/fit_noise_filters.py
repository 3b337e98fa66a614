"""Fitting a wall material's noise filter (``noise_filters.py``) to a trained materials GAN.

The generator stays frozen. Adam moves only the filter's kernel, which starts as the identity, so step 0 is the
model as trained. The loss has two terms:
- the course repeat of the output (``core.common.quality.course_repeat``, the bench's regularity measure), pushed
  up;
- the VGG19 sliced-Wasserstein statistics of the output against the exemplar (the judge's features), which keep
  the look.

Two outputs of the exemplar's half side a step, each from fresh white noise through ``material_canvas``'s own path,
so what is fitted is what the panel draws. About 2 s a step on one core of a 2-core CPU at 256 px.

Probed in the forty-eighth session on the brick wall, six held-aside seeds, ratio / regularity: 0.62 / 0.50 for
white noise, 0.75 / 0.73 after 600 steps of an 11 x 11 kernel (statistics weight 0.5), plateauing after ~300.
Other probes, same wall: a coloured Gaussian prior fitted to the VAE encoder's latents gave 1.00 / 0.71;
decode-encode cycling gave 0.56. Course terms on the generator's own training (forty-first session) bought 0.1
of regularity for 0.24-1.0 of ratio (``tools/zoo/gan.py``, ``COURSES``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from ..common.images import to_tensor
from ..common.jobs import CancelToken, ProgressCallback, TrainingDiverged, check_cancel, report
from ..common.perception import load_perception
from ..common.quality import TEXTURE_LAYERS, course_repeat, sliced_wasserstein
from .materials import MaterialTextureGenerator, material_canvas_differentiable
from .noise_filters import identity_kernel, unit_energy

# What a good output's statistics term reads (the per-layer distances over the exemplar's mean squared feature,
# averaged over the layers): dividing by it puts the term on the course repeat's scale (0-1).
STATISTICS_SCALE = 0.003
_SEED_OFFSET = 10_000  # the fitting's noise seeds, away from those the bench and the panel's defaults draw


@dataclass
class NoiseFilterRecipe:
    kernel: int = 11  # cells (16 px each): a course of bricks is 2-3 cells high, a brick 4-8 long
    steps: int = 300
    batch: int = 2
    statistics_weight: float = 0.5
    rate: float = 0.03
    projections: int = 32
    seed: int = 0
    # Taps across the courses (cells, odd); None: the whole k x k square. A band reaches along the courses as far
    # as the square does with fewer taps across them.
    band: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit_noise_filter(model: MaterialTextureGenerator, material: str, exemplar: np.ndarray, axis: int, period: int,
                     size: int, recipe: NoiseFilterRecipe = NoiseFilterRecipe(),
                     progress: ProgressCallback | None = None, cancel: CancelToken | None = None) -> torch.Tensor:
    """The unit-energy kernel (L x L x k x k, float32, CPU) that straightens ``material``'s courses (every
    ``period`` px, averaged along ``axis``: 0, rows) in ``size``-px outputs of ``model``."""
    if material not in model.materials:
        raise ValueError(f"{material!r} is not one of the model's materials ({', '.join(model.materials)})")
    if recipe.kernel % 2 == 0 or recipe.kernel < 1:
        raise ValueError(f"the kernel side must be odd, got {recipe.kernel}")
    if recipe.band is not None and (recipe.band % 2 == 0 or not 1 <= recipe.band <= recipe.kernel):
        raise ValueError(f"the band must be odd and at most the kernel's side, got {recipe.band}")
    g = model.generator
    device = next(g.parameters()).device
    g.eval().requires_grad_(False)
    cells = max(1, size // model.stride)
    weights = model.material_weights(material)
    perception = load_perception(device)
    with torch.no_grad():
        target = perception(to_tensor(exemplar).to(device), TEXTURE_LAYERS)
    scales = {name: float(f.pow(2).mean()) + 1e-8 for name, f in target.items()}
    gen = torch.Generator().manual_seed(recipe.seed)
    kernel = identity_kernel(g.local_dim, recipe.kernel)
    kernel = (kernel + 0.01 * torch.randn(kernel.shape, generator=gen, device="cpu")).to(device)
    mask = band_mask(recipe.kernel, recipe.band, axis).to(device)
    kernel = (kernel * mask).requires_grad_(True)
    optimizer = torch.optim.Adam([kernel], lr=recipe.rate)
    for step in range(1, recipe.steps + 1):
        check_cancel(cancel)
        loss = torch.zeros((), device=device)
        noise_kernel = unit_energy(kernel * mask)  # once a step: every output of the batch draws through it
        for b in range(recipe.batch):
            seed = _SEED_OFFSET + recipe.seed * 1_000_003 + step * recipe.batch + b
            canvas, fine = material_canvas_differentiable(g, cells, cells, seed, weights, noise_kernel=noise_kernel)
            out = g.body(canvas, fine).float().clamp(0, 1)
            features = perception(out, TEXTURE_LAYERS)
            statistics = sum(sliced_wasserstein(features[n], target[n], recipe.projections, gen) / scales[n]
                             for n in TEXTURE_LAYERS) / len(TEXTURE_LAYERS)
            loss = loss + (recipe.statistics_weight * statistics / STATISTICS_SCALE
                           - course_repeat(out, axis, period).mean()) / recipe.batch
        optimizer.zero_grad(set_to_none=True)
        if not math.isfinite(float(loss.detach())):
            raise TrainingDiverged(f"fitting {material}'s noise filter diverged at step {step}")
        loss.backward()
        optimizer.step()
        report(progress, step, recipe.steps, f"{material}: noise filter", {"loss": float(loss.detach())})
    return unit_energy((kernel * mask).detach().float().cpu())


def band_mask(kernel: int, band: int | None, axis: int) -> torch.Tensor:
    """1 x 1 x k x k: ones on the ``band`` taps across courses that run along ``axis`` (0: down the rows, so the
    band is narrow in x), all ones for no band."""
    mask = torch.ones(1, 1, kernel, kernel, device="cpu")
    if band is None:
        return mask
    offsets = (torch.arange(kernel, device="cpu") - kernel // 2).abs()
    across = (offsets <= band // 2).float()
    return mask * (across[None, :] if axis == 0 else across[:, None])
