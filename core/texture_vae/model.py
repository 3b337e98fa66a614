"""Convolutional texture VAE with a spatial latent grid.

The encoder maps an RGB image (sRGB-encoded, [0, 1]) of HxW pixels to a grid of
``latent_channels`` x H/f x W/f Gaussian posteriors, f = 2**len(channel_mult);
the decoder maps any latent grid back to pixels. Every convolution pads
circularly, so a decoded image tiles seamlessly whatever its size, and the
network holds no normalisation layer whose statistics would change with the
image size (training crops are small, inference images large).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..common.deterministic import CircularConv2d, circular_upsample2x
from ..common.device import host_to_device


# Training defaults that differ on CUDA (see TextureVAEConfig.for_device).
CUDA_TRAINING_DEFAULTS = {"batch_size": 32, "crop_size": 128}


@dataclass
class TextureVAEConfig:
    # Defaults = the recipe of the bundled default model (5 procedural exemplars, CPU).
    # Architecture
    base_channels: int = 16
    channel_mult: tuple[int, ...] = (1, 2, 4)  # one entry per 2x downsampling: factor 8
    latent_channels: int = 8
    res_blocks: int = 1  # residual blocks per resolution
    # Loss
    beta: float = 0.002  # weight of the KL term (per latent element, against per-pixel L1)
    stats_weight: float = 0.1  # sliced-Wasserstein texture-statistics term on reconstructions
    variation_stats_weight: float = 0.03  # same term on decoded perturbed latents (keeps variations textured)
    variation_strength: float = 1.0  # perturbation used for that term (same units as TextureVAE.vary)
    stats_features: str = "vgg19"  # features of those terms: the ImageNet VGG19, or "random" filters (cheaper)
    # Optimisation / data
    crop_size: int = 64
    batch_size: int = 6
    lr: float = 2e-3
    lr_final_fraction: float = 0.1  # cosine decay to lr * this at the last step
    grad_clip: float = 1.0
    amp: bool = True  # mixed precision on CUDA only (see core.common.device.autocast)

    @property
    def downsample(self) -> int:
        return 2 ** len(self.channel_mult)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["channel_mult"] = list(self.channel_mult)
        return d

    @classmethod
    def for_device(cls, device: torch.device | str, **fields: Any) -> "TextureVAEConfig":
        """The defaults scaled to the device: a GPU trains on larger batches of larger crops
        in about the CPU's time per step. CPU defaults are the bundled model's recipe."""
        if torch.device(device).type == "cuda":
            fields = {**CUDA_TRAINING_DEFAULTS, **fields}
        return cls(**fields)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TextureVAEConfig":
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        if "channel_mult" in kwargs:
            kwargs["channel_mult"] = tuple(int(c) for c in kwargs["channel_mult"])
        config = cls(**kwargs)
        config.validate()
        return config

    def validate(self) -> None:
        if self.base_channels < 1 or self.latent_channels < 1 or not self.channel_mult:
            raise ValueError("TextureVAEConfig: base_channels, latent_channels and channel_mult must be positive")
        if any(int(c) < 1 for c in self.channel_mult):
            raise ValueError("TextureVAEConfig: channel_mult entries must be >= 1")
        if self.crop_size < self.downsample or self.crop_size % self.downsample:
            raise ValueError(f"TextureVAEConfig: crop_size must be a multiple of the downsampling factor "
                             f"{self.downsample}, got {self.crop_size}")
        if self.batch_size < 1 or self.lr <= 0:
            raise ValueError("TextureVAEConfig: batch_size must be >= 1 and lr > 0")
        if self.stats_features not in ("vgg19", "random"):
            raise ValueError(f"TextureVAEConfig: stats_features must be 'vgg19' or 'random', not {self.stats_features!r}")
        if min(self.beta, self.stats_weight, self.variation_stats_weight, self.variation_strength) < 0:
            raise ValueError("TextureVAEConfig: loss weights must not be negative")


def _conv(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> nn.Conv2d:
    return CircularConv2d(cin, cout, kernel, stride=stride, padding=kernel // 2)


class ResBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = _conv(channels, channels)
        self.conv2 = _conv(channels, channels)
        # Start each block near identity so the un-normalised stack trains stably.
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.silu(self.conv1(F.silu(x))))


class PeriodicUpsample(nn.Module):
    """2x bilinear upsampling that wraps around the border (F.interpolate clamps instead).

    Nearest upsampling would also wrap, but leaves blocky cell edges that make
    every cell boundary, the tile border included, visible.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return circular_upsample2x(x)


def downsampling_body(chans: list[int], res_blocks: int) -> tuple[nn.Sequential, int]:
    """RGB -> features at 1/2**len(chans): residual blocks and a stride-2 convolution per entry of ``chans``
    (the encoders' trunk); returns the body and its output channels."""
    layers: list[nn.Module] = [_conv(3, chans[0])]
    prev = chans[0]
    for c in chans:
        layers += [ResBlock(prev) for _ in range(res_blocks)]
        layers += [_conv(prev, c, 3, stride=2)]
        prev = c
    layers += [ResBlock(prev) for _ in range(res_blocks)]
    return nn.Sequential(*layers), prev


class Encoder(nn.Module):
    def __init__(self, cfg: TextureVAEConfig):
        super().__init__()
        self.body, prev = downsampling_body([cfg.base_channels * m for m in cfg.channel_mult], cfg.res_blocks)
        self.head = _conv(prev, 2 * cfg.latent_channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.head(F.silu(self.body(x * 2.0 - 1.0)))
        mean, logvar = h.chunk(2, dim=1)
        return mean, logvar.clamp(-12.0, 6.0)


class Decoder(nn.Module):
    def __init__(self, cfg: TextureVAEConfig):
        super().__init__()
        chans = [cfg.base_channels * m for m in cfg.channel_mult][::-1]
        layers: list[nn.Module] = [_conv(cfg.latent_channels, chans[0])]
        layers += [ResBlock(chans[0]) for _ in range(cfg.res_blocks)]
        prev = chans[0]
        for c in chans:
            layers += [PeriodicUpsample(), _conv(prev, c)]
            layers += [ResBlock(c) for _ in range(cfg.res_blocks)]
            prev = c
        self.body = nn.Sequential(*layers)
        self.out = _conv(prev, 3)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.out(F.silu(self.body(z))))


class TextureVAENet(nn.Module):
    def __init__(self, cfg: TextureVAEConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)

    @property
    def downsample(self) -> int:
        return self.cfg.downsample

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: Nx3xHxW in [0, 1], H and W multiples of ``downsample`` -> (mean, logvar)."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor, seed: int = 0) -> torch.Tensor:
        """Latents -> image. The decoder draws no noise, so ``seed`` changes nothing (a GAN-prior net's does)."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        mean, logvar = self.encode(x)
        # Drawn on the CPU generator (resumable, same on every device); copied through pinned memory on CUDA, so
        # the host does not wait for the GPU's queue.
        eps = host_to_device(torch.randn(mean.shape, generator=generator, device="cpu"), mean.device, mean.dtype)
        z = mean + torch.exp(0.5 * logvar) * eps
        return self.decode(z), mean, logvar


def kl_divergence(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q || N(0, 1)), averaged over latent elements."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()
