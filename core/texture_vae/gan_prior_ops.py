"""Inference on the texture VAE whose decoder is the materials GAN (``gan_prior.py``).

Same public operations as ``ops.TextureVAE`` (encode, decode, reconstruct, vary, blend, the sizes and the
out-of-memory fallback); what differs is how latents move: ``vary`` steps toward a fresh prior draw and
``blend`` keeps the mixed noise unit-variance. ``seed`` also picks the decoder's detail noise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from ..common.checkpoints import CheckpointError, build_checked, check_architecture
from ..common.device import seeded_generator
from .gan_prior import GANPriorVAEConfig, GANPriorVAENet, prior_step, renormalised_mix
from .ops import KIND, TextureVAE


class GANPriorVAE(TextureVAE):
    config: GANPriorVAEConfig
    decoder_draws_noise = True  # its detail noise, wave phases and lattice shift come from the decode seed
    fit_warning_loss = 0.5  # its materials' crops end refinement at 0.05-0.17, unseen photographs at 1.0-6.8 (ops)

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

    @property
    def prior_channels(self) -> int:
        """The noise channels (the material logits after them have no Gaussian prior)."""
        return self.config.local_dim

    def _fresh_net(self) -> torch.nn.Module:
        return GANPriorVAENet(self.config)

    def perturb(self, z: torch.Tensor, strength: float, seed: int) -> torch.Tensor:
        """``vary``'s move: every cell's noise toward a seeded prior draw, ``(z + strength * eps) /
        sqrt(1 + strength^2)``; the material logits are kept. 0 reconstructs (new detail noise aside), 0.5 keeps
        most of the layout, 1 is half way, 3 and more a new sample of the same materials. The same seed with a
        larger strength moves the same way, further."""
        eps = torch.randn(z.shape, generator=seeded_generator(int(seed), "cpu"), dtype=torch.float32, device="cpu")
        return prior_step(z, eps, strength, self.config.local_dim)

    def mix_latents(self, latents: Sequence[torch.Tensor], weights: Sequence[torch.Tensor | float]) -> torch.Tensor:
        return renormalised_mix(latents, weights, self.config.local_dim)
