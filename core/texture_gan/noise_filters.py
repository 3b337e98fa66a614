"""Per-material filters on the materials GAN's local noise: straighter courses from the same generator.

The generator lays a wall's courses out from its white local noise (one cell per stride). White noise has no
long-range order, so the courses wave: course regularity 0.41 (brick wall) and 0.55 (stone bricks) on the bench,
against 0.92 and 0.83 for the photographs' own crops. The generator can draw straight courses: decoding an encoded
crop of the brick wall through it gives 0.82. Its input lacks the order, not its weights.

A material's filter is a learnt circular convolution of that noise (local_dim -> local_dim channels, ``k`` x ``k``
cells). Each output channel's kernel has unit energy, so filtered noise stays unit-variance, as the generator was
trained on. Filters are fitted per wall after training (``fit_noise_filters``) and stored in the GAN file beside
the generator's weights, as ``noise_filter.<material>`` tensors named in the config's ``noise_filters``.
``materials.material_canvas`` applies them. A mix blends the kernels by the material weights, with the identity
for materials without a filter. Those materials draw exactly as before. The VAE's prior stays white noise.
"""

from __future__ import annotations

from typing import Any

import torch

from ..common.checkpoints import CheckpointError, check_finite

TENSOR_PREFIX = "noise_filter."
MAX_KERNEL = 31


def unit_energy(kernel: torch.Tensor) -> torch.Tensor:
    """``kernel`` (L x L x k x k) with each output channel's weights scaled to unit energy."""
    return kernel / kernel.pow(2).sum(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12).sqrt()


def identity_kernel(local_dim: int, size: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The filter that leaves the noise as it is."""
    kernel = torch.zeros(local_dim, local_dim, size, size, dtype=dtype, device="cpu")
    diagonal = torch.arange(local_dim, device="cpu")
    kernel[diagonal, diagonal, size // 2, size // 2] = 1.0
    return kernel


def filter_noise(local: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """``local`` (B x L x h x w) convolved with ``kernel`` (L x L x k x k) on the torus, as ``F.conv2d`` with
    circular padding computes it (cross-correlation, centred). A canvas smaller than the kernel wraps it around,
    so any canvas size works and a tileable canvas stays tileable. Through the FFT: the cost does not grow with
    ``k`` (a 4096 px canvas is 256 x 256 cells)."""
    channels, _, k, _ = kernel.shape
    h, w = local.shape[-2:]
    offsets = torch.arange(k, device=local.device) - k // 2
    cells = ((offsets % h)[:, None] * w + (offsets % w)[None, :]).reshape(-1)  # where each tap lands, wrapped
    spectrum = torch.fft.rfft2(local.float())
    out = []
    for o in range(channels):  # one output channel's kernel grid at a time: L x h x w, not L x L x h x w
        grid = torch.zeros(channels, h * w, device=local.device, dtype=torch.float32).index_add(
            1, cells, kernel[o].reshape(channels, k * k).to(local.device, torch.float32)).reshape(channels, h, w)
        # Correlation: the conjugate of the kernel's spectrum.
        out.append((spectrum * torch.fft.rfft2(grid).conj()[None]).sum(dim=1))
    return torch.fft.irfft2(torch.stack(out, dim=1), s=(h, w)).to(local.dtype)


def mixed_kernel(filters: dict[str, torch.Tensor], materials: list[str], weights: torch.Tensor
                 ) -> torch.Tensor | None:
    """The filter of a material mix (``weights``: 1 x n_materials, or n_materials): the materials' kernels
    (the identity where a material has none) averaged by weight, at unit energy; None where no material with a
    filter has weight (the noise is left exactly as it is)."""
    w = weights.reshape(-1).float().cpu()
    used = [(name, float(w[materials.index(name)])) for name in filters if float(w[materials.index(name)]) > 0]
    if not used:
        return None
    size = max(k.shape[-1] for k in filters.values())
    local_dim = next(iter(filters.values())).shape[0]
    total = identity_kernel(local_dim, size) * (1.0 - sum(weight for _, weight in used))
    for name, weight in used:
        kernel = filters[name].float().cpu()
        pad = (size - kernel.shape[-1]) // 2
        total = total + weight * torch.nn.functional.pad(kernel, (pad, pad, pad, pad))
    return unit_energy(total)


def split_filters(name: str, tensors: dict[str, torch.Tensor], config: dict[str, Any], materials: list[str],
                  local_dim: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(the generator's tensors, the filters by material) of a materials GAN file, the filters checked against
    its config: each one named in ``noise_filters``, of a material the model has, L x L x k x k with an odd
    ``k`` up to ``MAX_KERNEL``, finite."""
    described = config.get("noise_filters") or {}
    if not isinstance(described, dict):
        raise CheckpointError(f"{name}: its config's noise_filters must map materials to their descriptions")
    filters = {key[len(TENSOR_PREFIX):]: t for key, t in tensors.items() if key.startswith(TENSOR_PREFIX)}
    if set(filters) != set(described):
        raise CheckpointError(f"{name}: its noise filters ({', '.join(sorted(filters)) or 'none'}) do not match "
                              f"its config's ({', '.join(sorted(described)) or 'none'})")
    for material, kernel in filters.items():
        if material not in materials:
            raise CheckpointError(f"{name}: a noise filter for {material!r}, which is not one of its materials")
        shape = tuple(kernel.shape)
        if len(shape) != 4 or shape[:2] != (local_dim, local_dim) or shape[2] != shape[3] or shape[2] % 2 == 0 \
                or shape[2] > MAX_KERNEL:
            raise CheckpointError(f"{name}: the noise filter for {material!r} has shape {shape}; it must be "
                                  f"{local_dim} x {local_dim} x k x k, k odd and at most {MAX_KERNEL}")
    check_finite(name, {TENSOR_PREFIX + m: k for m, k in filters.items()})
    for material, kernel in filters.items():
        if bool((kernel.float().pow(2).sum(dim=(1, 2, 3)) < 1e-8).any()):
            raise CheckpointError(f"{name}: the noise filter for {material!r} zeroes a channel of the noise")
    weights = {key: t for key, t in tensors.items() if not key.startswith(TENSOR_PREFIX)}
    return weights, {m: unit_energy(k.float().cpu()) for m, k in filters.items()}
