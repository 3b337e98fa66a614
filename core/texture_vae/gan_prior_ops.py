"""Inference on the texture VAE whose decoder is the materials GAN (``gan_prior.py``).

Same public operations as ``ops.TextureVAE`` (encode, decode, reconstruct, vary, blend, the sizes and the
out-of-memory fallback); what differs is how latents move: ``vary`` steps toward a fresh prior draw and
``blend`` keeps the mixed noise unit-variance. ``seed`` also picks the decoder's detail noise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..common.checkpoints import CheckpointError, build_checked, check_architecture
from ..common.device import seeded_generator
from .gan_prior import GANPriorVAEConfig, GANPriorVAENet, prior_step, renormalised_mix
from .ops import KIND, TextureVAE, _check_size, _check_strength, check_rgb, fit_latents, grid_size


class GANPriorVAE(TextureVAE):
    config: GANPriorVAEConfig

    @classmethod
    def from_checkpoint(cls, path: Path, tensors: dict, meta: dict[str, Any], device: torch.device) -> "GANPriorVAE":
        raw = meta.get("config")
        try:
            config = GANPriorVAEConfig.from_dict(raw)
        except (TypeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{path.name}: its texture VAE config is invalid ({exc})") from exc
        check_architecture(path.name, "texture_gan", config.gan)
        arch = {**config.gan, "base_channels": config.base_channels}
        net = build_checked(path.name, KIND, arch, tensors, lambda: GANPriorVAENet(config))
        net.decoder.requires_grad_(False)
        return cls(net, config, meta.get("name") or path.stem, device, meta)

    @property
    def materials(self) -> list[str]:
        return list(self.config.materials)

    def _fresh_net(self) -> torch.nn.Module:
        net = GANPriorVAENet(self.config)
        net.decode_seed = self.net.decode_seed
        return net

    def decode(self, latents: torch.Tensor, width: int | None = None, height: int | None = None,
               seed: int = 0) -> np.ndarray:
        """``TextureVAE.decode``; ``seed`` draws the detail noise (same seed, same image)."""
        self.net.decode_seed = int(seed)
        return super().decode(latents, width, height)

    def vary(self, rgb: np.ndarray, strength: float, seed: int = 0,
             width: int | None = None, height: int | None = None) -> np.ndarray:
        """A variation of ``rgb``: every cell's noise moved toward a seeded prior draw,
        ``(z + strength * eps) / sqrt(1 + strength^2)``; the material logits are kept. 0 reconstructs (new detail
        noise aside), 0.5 keeps most of the layout, 1 is half way, 3 and more a new sample of the same
        materials. The same seed with a larger strength moves the same way, further."""
        strength = _check_strength(strength)
        a = check_rgb(rgb)
        out_h = int(height) if height is not None else a.shape[0]
        out_w = int(width) if width is not None else a.shape[1]
        _check_size(out_w, out_h)
        f = self.downsample
        z = fit_latents(self.encode(a), grid_size(out_h, f), grid_size(out_w, f))
        if strength > 0:
            eps = torch.randn(z.shape, generator=seeded_generator(int(seed), "cpu"), dtype=torch.float32, device="cpu")
            z = prior_step(z, eps, strength, self.config.local_dim)
        return self.decode(z, out_w, out_h, seed=seed)

    def mix_latents(self, latents: Sequence[torch.Tensor], weights: Sequence[torch.Tensor | float]) -> torch.Tensor:
        return renormalised_mix(latents, weights, self.config.local_dim)
