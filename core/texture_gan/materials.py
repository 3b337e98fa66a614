"""Inference for the conditional (material) texture GAN: a ``TextureGenerator`` that takes a material.

``generate(..., material="photo_brick")`` or ``material={"photo_brick": 0.7, "photo_grass": 0.3}``
(an interpolation of the materials' embeddings). Everything else (sizes, tiles, tileability, the
out-of-memory fallback) is ``TextureGenerator``'s.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..common.checkpoints import CheckpointError, build_checked
from ..common.device import chunked_randn
from .conditional import CONDITIONAL_VERSION, ConditionalGANConfig, ConditionalGenerator, mix_weights
from .generate import KIND, TextureGenerator
from .noise_filters import filter_noise, mixed_kernel, split_filters

_VARIATION_SEED_OFFSET = 7919
_LATTICE_SEED_OFFSET = 104729  # the lattice's shift has its own stream: models without one draw as before

Mix = str | dict[str, float] | None


class MaterialTextureGenerator(TextureGenerator):
    """A conditional texture GAN: ``materials`` names its labels, in embedding order; ``noise_filters``: the
    materials whose local noise is filtered (``noise_filters.py``), their kernels."""

    def __init__(self, generator: ConditionalGenerator, config: dict[str, Any], name: str, device: torch.device,
                 noise_filters: dict[str, torch.Tensor] | None = None):
        super().__init__(generator, config, name, device)
        self.materials: list[str] = list(config.get("materials") or [f"material_{i}" for i in
                                                                     range(generator.n_materials)])
        self.noise_filters: dict[str, torch.Tensor] = dict(noise_filters or {})
        self._weights = mix_weights(self.materials, None)

    @classmethod
    def from_checkpoint(cls, p: Path, tensors: dict, config: dict, device: torch.device) -> "MaterialTextureGenerator":
        if config.get("version", 0) > CONDITIONAL_VERSION:
            raise CheckpointError(f"{p.name}: conditional texture GAN version {config.get('version')!r} is newer "
                                  "than this add-on supports; update the add-on")
        arch = config["architecture"]
        try:
            cfg = ConditionalGANConfig.from_dict(arch)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{p.name}: invalid architecture in its config ({exc})") from exc
        materials = config.get("materials")
        if not isinstance(materials, list) or len(materials) != cfg.n_materials:
            raise CheckpointError(f"{p.name}: its config must name its {cfg.n_materials} materials")
        weights, filters = split_filters(p.name, tensors, config, materials, cfg.local_dim)
        g = build_checked(p.name, KIND, arch, weights, lambda: ConditionalGenerator(cfg))
        return cls(g, config, str(config.get("name") or p.name.removesuffix(".safetensors")), device, filters)

    def material_weights(self, material: Mix) -> torch.Tensor:
        return mix_weights(self.materials, material)

    @torch.no_grad()
    def generate(self, width: int, height: int, seed: int = 0, tileable: bool = True, variation: float = 0.0,
                 tile_size: int | None = None, cancel=None, material: Mix = None) -> np.ndarray:
        self._weights = self.material_weights(material)
        return super().generate(width, height, seed, tileable, variation, tile_size, cancel)

    @torch.no_grad()
    def generate_tensor(self, width: int, height: int, seed: int = 0, tileable: bool = True,
                        variation: float = 0.0, tile_size: int | None = None, cancel=None,
                        material: Mix = None) -> torch.Tensor:
        if material is not None:
            self._weights = self.material_weights(material)
        return super().generate_tensor(width, height, seed, tileable, variation, tile_size, cancel)

    def on_cpu(self) -> "MaterialTextureGenerator":
        cpu = super().on_cpu()
        cpu._weights = self._weights
        cpu.noise_filters = self.noise_filters
        return cpu

    def noise_kernel(self, weights: torch.Tensor) -> torch.Tensor | None:
        """The local noise's filter for a material mix; None: white noise, as the generator was trained on."""
        return mixed_kernel(self.noise_filters, self.materials, weights) if self.noise_filters else None

    def canvas_noise(self, hn: int, wn: int, seed: int, variation: float, tileable: bool):
        return material_canvas(self.generator, hn, wn, seed, self._weights, variation, tileable,
                               self.noise_kernel(self._weights))


@torch.no_grad()
def material_canvas(g: ConditionalGenerator, hn: int, wn: int, seed: int, weights: torch.Tensor,
                    variation: float = 0.0, tileable: bool = True, noise_kernel: torch.Tensor | None = None):
    """The canvas of a material mix, a pure function of (seed, weights).

    ``variation`` nudges the embedding along a seeded direction by up to half the spread of the
    materials' embeddings: the same material, a different look. ``noise_kernel``: the local noise's filter
    (``noise_filters.py``); None, white noise.
    """
    return material_canvas_differentiable(g, hn, wn, seed, weights, variation, tileable, noise_kernel)


def material_canvas_differentiable(g: ConditionalGenerator, hn: int, wn: int, seed: int, weights: torch.Tensor,
                                   variation: float = 0.0, tileable: bool = True,
                                   noise_kernel: torch.Tensor | None = None):
    """``material_canvas`` with gradients to ``noise_kernel`` (fitting a filter: ``fit_noise_filters``)."""
    device = next(g.parameters()).device
    gen = torch.Generator().manual_seed(int(seed))
    phase = torch.rand(1, g.periodic_dim, generator=gen, device="cpu") * (2 * math.pi)
    keys = [int(k) for k in torch.randint(2 ** 62, (1 + len(g.fine_noise_shapes(hn, wn)),), generator=gen,
                                          device="cpu")]
    local = chunked_randn((1, g.local_dim, hn, wn), keys[0])
    if noise_kernel is not None:
        local = filter_noise(local.to(device), noise_kernel.to(device))
    fine = [chunked_randn((1, *shape), key).to(device) for shape, key in zip(g.fine_noise_shapes(hn, wn), keys[1:])]
    z = g.mix(weights.to(device))
    if variation:
        other = torch.Generator().manual_seed(int(seed) + _VARIATION_SEED_OFFSET)
        direction = torch.randn(z.shape, generator=other, device="cpu").to(device)
        spread = g.embedding.std(dim=0, keepdim=True) if g.n_materials > 1 else g.embedding.abs()
        z = z + float(variation) * 0.5 * spread * direction
    canvas = g.build_input(local.to(device), z, phase.to(device), quantize_to=(hn, wn) if tileable else None)
    if g.lattice_stages:
        own = torch.Generator().manual_seed(int(seed) + _LATTICE_SEED_OFFSET)
        fine = g.lattice_inputs(fine, torch.rand(1, 2, generator=own, device="cpu"),
                                quantize_to=(hn, wn) if tileable else None)
    return canvas, fine
