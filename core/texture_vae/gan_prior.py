"""A texture VAE whose decoder is the materials GAN: variations that change the layout and stay sharp.

Why. The VAE-GAN of ``vaegan.py`` has a latent cell per 8 pixels that mostly stores the image: noise on it
stains colours but never moves a brick, and past strength 1 its decodings leave the textures it knows
(VGG19 ratios 24-300). A variation an artist wants is "same wall, other bricks": a new arrangement drawn
from what the material can look like, at the material's own sharpness.

What. An encoder is trained onto the latent canvas of the conditional texture GAN (``core/texture_gan``):
one cell per 16 pixels, where the GAN's layout lives. Its posterior is Gaussian over the GAN's local noise
channels (prior N(0, 1): the very noise the GAN was trained on) plus per-cell material logits; the decoder
is the GAN's generator, frozen, with its embedding painted per cell (``ConditionalGenerator.stage_images``
with ``spatial=True``) and fresh per-pixel detail noise. Encoders onto a pretrained generator's latent space
are how GAN inversion is done at scale (pSp, Richardson et al. 2021); with the KL term the encoder is the
amortised posterior of a VAE whose decoder happens to be adversarially trained.

* ``vary(strength)`` moves every cell's noise toward a fresh prior draw, ``(z + s*eps) / sqrt(1 + s^2)``:
  0 is the reconstruction, 1 half way, large values a new sample of the same material mix; it never leaves
  the prior the decoder knows.
* ``blend`` mixes latents per cell (a mask paints one material into the other); the noise is renormalised so
  that a half-and-half cell is still unit-variance noise, not a washed-out average.

The decoder knows the GAN's materials only: an image of something else comes back as the nearest mix of them.
The file holds the encoder and a copy of the generator it was trained against (``decoder.*``), so it stands
alone when the GAN trains on.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..common.device import seeded_generator
from ..texture_gan.conditional import ConditionalGANConfig, ConditionalGenerator  # see docs/architecture.md
from .model import _conv, downsampling_body

DECODER = "materials_gan"  # the config's "decoder" value that marks this kind of texture VAE


@dataclass
class GANPriorVAEConfig:
    gan: dict[str, Any] = field(default_factory=dict)  # the generator's architecture (ConditionalGANConfig fields)
    materials: list[str] = field(default_factory=list)  # the generator's materials, in embedding order
    base_channels: int = 16  # 0.25 M parameters: the state must fit the repository's 64 MiB with the others
    encoder_mult: tuple[int, ...] = (1, 2, 4, 4)  # one stride-2 step each: must reach the GAN's stride
    res_blocks: int = 1
    # Loss
    beta: float = 0.01  # KL of the noise channels, per element (the decoder was trained on N(0, 1) canvases)
    coarse_weight: float = 1.0  # L1 of the GAN's coarse stage images against the crop downscaled (the layout)
    perceptual_weight: float = 0.5  # VGG19 relu3_1/relu4_1 features of the output against the crop's
    stats_weight: float = 1.0  # VGG19 sliced-Wasserstein statistics (the material's look, not its exact layout)
    label_weight: float = 0.1  # cross-entropy of the cells' material logits against the crop's material
    # Training decodes each crop with its own material's embedding, not the encoder's soft guess: the generator
    # only ever learnt pure materials (and their even mixes), and a 80/13/5 % mix of gravel, grass and stone
    # bricks decodes to worms. The logits learn from the cross-entropy alone, so they become confident.
    teacher_forced_materials: bool = True
    # How many of the GAN's stages, coarsest first, the L1 term compares. From step 1,292 (200-step trials, 4
    # materials, mean variation ratio): 3 stages and stats 0.2: 3.98; KL x10: 3.90; 2 stages and stats 1: 3.48;
    # that and KL x10: 3.91; 1 stage and stats 2: 3.65. At 3 stages bricks lost their horizontal joints.
    coarse_stages: int = 2
    # Optimisation / data
    crop_size: int = 128
    batch_size: int = 4
    vgg_samples: int = 2
    lr: float = 5e-4
    grad_clip: float = 1.0
    # Mirrored training crops (a recipe field). The decoder draws its materials lit as their exemplars are: a
    # mirrored crop asks the encoder for a surface lit from the other side, which it cannot find on the canvas.
    augment_flips: bool = True
    # The encoder's weights, averaged over the last ~1/(1 - ema_decay) steps, are what the model file holds (0: the
    # last step's). At a constant rate the encoder's one-pass score swings from checkpoint to checkpoint
    # (six seeds, ~1,300 steps apart: 1.12 and 1.24); the average is what the steps agree on.
    ema_decay: float = 0.0
    amp: bool = True
    decoder: str = DECODER

    def __post_init__(self) -> None:
        self.encoder_mult = tuple(int(m) for m in self.encoder_mult)
        self.materials = list(self.materials)

    @property
    def gan_config(self) -> ConditionalGANConfig:
        return ConditionalGANConfig.from_dict(self.gan)

    @property
    def downsample(self) -> int:
        return 2 ** len(self.encoder_mult)

    @property
    def local_dim(self) -> int:
        return int(self.gan["local_dim"])

    @property
    def latent_channels(self) -> int:
        """Noise channels, then one logit per material."""
        return self.local_dim + len(self.materials)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["encoder_mult"] = list(self.encoder_mult)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "GANPriorVAEConfig":
        known = {f.name for f in fields(cls)}
        config = cls(**{k: v for k, v in data.items() if k in known})
        config.validate()
        return config

    def validate(self) -> None:
        if self.decoder != DECODER:
            raise ValueError(f"decoder must be {DECODER!r}, got {self.decoder!r}")
        gan = self.gan_config
        if gan.n_materials != len(self.materials) or not self.materials:
            raise ValueError(f"the generator has {gan.n_materials} materials but the config names "
                             f"{len(self.materials)}")
        if self.downsample != gan.stride:
            raise ValueError(f"the encoder's stride {self.downsample} must equal the generator's {gan.stride}")
        if self.base_channels < 1 or min(self.encoder_mult) < 1 or self.res_blocks < 0:
            raise ValueError("base_channels and encoder_mult must be positive, res_blocks >= 0")
        if self.crop_size < self.downsample or self.crop_size % self.downsample:
            raise ValueError(f"crop_size must be a multiple of {self.downsample}, got {self.crop_size}")
        if min(self.beta, self.coarse_weight, self.perceptual_weight, self.stats_weight, self.label_weight) < 0:
            raise ValueError("loss weights must not be negative")
        if self.batch_size < 1 or self.lr <= 0 or self.vgg_samples < 1:
            raise ValueError("batch_size and vgg_samples must be >= 1 and lr > 0")


class CanvasEncoder(nn.Module):
    """Image -> per cell of the GAN's canvas: noise mean, noise log-variance, material logits."""

    def __init__(self, cfg: GANPriorVAEConfig):
        super().__init__()
        self.body, prev = downsampling_body([cfg.base_channels * m for m in cfg.encoder_mult], cfg.res_blocks)
        self.local_dim, self.n_materials = cfg.local_dim, len(cfg.materials)
        self.head = _conv(prev, 2 * cfg.local_dim + self.n_materials)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.head(F.silu(self.body(x * 2.0 - 1.0)))
        mean, logvar, logits = h.split([self.local_dim, self.local_dim, self.n_materials], dim=1)
        return mean, logvar.clamp(-12.0, 6.0), logits


class GANPriorVAENet(nn.Module):
    """Encoder + the frozen conditional generator. Latents: noise channels, then material logits, per cell.

    ``encode``/``decode`` follow ``TextureVAENet``'s contract, so ``ops.TextureVAE`` runs it unchanged;
    ``decode``'s ``seed`` picks the decoder's detail noise and the phase of its periodic channels.
    """

    def __init__(self, cfg: GANPriorVAEConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.encoder = CanvasEncoder(cfg)
        self.decoder = ConditionalGenerator(cfg.gan_config)
        self.decoder.requires_grad_(False)

    @property
    def downsample(self) -> int:
        return self.cfg.downsample

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: Nx3xHxW in [0, 1] -> (mean, logvar) over the latent channels (the logits are exact: logvar -12)."""
        mean, logvar, logits = self.encoder(x)
        return torch.cat([mean, logits], 1), torch.cat([logvar, torch.full_like(logits, -12.0)], 1)

    def canvas(self, z: torch.Tensor, seed: int, weights: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The generator's input canvas and per-stage noise for latents ``z`` (N x latent x h x w).
        ``weights``: material weights (N x materials x h x w, or N x materials) to use instead of the
        latents' logits (training decodes with each crop's own material)."""
        g, local_dim = self.decoder, self.cfg.local_dim
        n, _, h, w = z.shape
        local, logits = z[:, :local_dim], z[:, local_dim:]
        if weights is None:
            weights = torch.softmax(logits.float(), dim=1)
        elif weights.dim() == 2:
            weights = weights[:, :, None, None].expand(-1, -1, h, w)
        weights = weights.to(local.dtype)
        emb = torch.einsum("nmhw,mg->nghw", weights, g.embedding.to(local.dtype))
        gen = seeded_generator(int(seed), "cpu")
        parts = [local, emb]
        if g.periodic_dim:
            # Each cell's own wave vectors, rounded to whole periods over the canvas so that it still tiles.
            k = g.wave_vectors(emb.permute(0, 2, 3, 1).reshape(-1, emb.shape[1]))
            k = k.view(n, h, w, g.periodic_dim, 2)
            k = torch.stack([torch.round(k[..., 0] * h) / h, torch.round(k[..., 1] * w) / w], dim=-1)
            yy = torch.arange(h, device=z.device, dtype=local.dtype)[None, :, None, None]
            xx = torch.arange(w, device=z.device, dtype=local.dtype)[None, None, :, None]
            phase = (torch.rand(n, 1, 1, g.periodic_dim, generator=gen, device="cpu") * (2 * math.pi)).to(z.device)
            arg = (k[..., 0] * yy + k[..., 1] * xx) * (2 * math.pi) + phase.to(local.dtype)
            parts.append(torch.sin(arg).permute(0, 3, 1, 2))
        fine = [torch.randn((n, *shape), generator=gen, device="cpu").to(z.device, local.dtype)
                for shape in g.fine_noise_shapes(h, w)]
        if g.lattice_stages:  # the GAN's lattice inputs, shifted at random, whole periods
            fine = g.lattice_inputs(fine, torch.rand(n, 2, generator=gen, device="cpu"), quantize_to=(h, w))
        return torch.cat(parts, 1), fine

    def stage_images(self, z: torch.Tensor, seed: int, weights: torch.Tensor | None = None) -> list[torch.Tensor]:
        x, fine = self.canvas(z, seed, weights)
        return self.decoder.stage_images(x, fine, spatial=True)

    def decode(self, z: torch.Tensor, seed: int = 0) -> torch.Tensor:
        x, fine = self.canvas(z, seed)
        return self.decoder.stage_images(x, fine, final_only=True, spatial=True)[-1]


def renormalised_mix(latents: Sequence[torch.Tensor], weights: Sequence[torch.Tensor | float], local_dim: int
                     ) -> torch.Tensor:
    """Weighted sum of latents whose noise channels are rescaled by 1/sqrt(sum w^2): the mix of independent
    unit-variance noises stays unit-variance (a plain average would fade the texture where they meet)."""
    z = sum(w * l for w, l in zip(weights, latents))
    norm = sum(torch.as_tensor(w, dtype=torch.float32) ** 2 for w in weights).clamp_min(1e-8).sqrt()
    z = z.clone()
    z[:, :local_dim] = z[:, :local_dim] / norm
    return z


def prior_step(z: torch.Tensor, eps: torch.Tensor, strength: float, local_dim: int) -> torch.Tensor:
    """``vary``'s move: the noise channels toward ``eps`` by ``strength``, on the prior; logits kept."""
    out = z.clone()
    out[:, :local_dim] = (z[:, :local_dim] + strength * eps[:, :local_dim]) / math.sqrt(1.0 + strength ** 2)
    return out
