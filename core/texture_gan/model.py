"""Periodic spatial GAN for tileable textures (after SGAN/PSGAN: Jetchev et al. 2016,
Bergmann et al. 2017).

The generator is fully convolutional and maps a spatial noise tensor at 1/8 of
the output resolution to an image, so the output size is free. Its input has
three parts per noise pixel:

* local noise: i.i.d. Gaussian per noise pixel (what varies from place to place);
* global noise: one code per image, broadcast over space (the "look");
* periodic noise: sines whose wave vectors an MLP derives from the global code
  (regular structure such as brick courses or weave);
* fine noise: one Gaussian channel added at each finer stage (StyleGAN-like),
  for grain below the noise stride.

Every convolution in G pads circularly, so on a periodic noise canvas the
output is periodic too: a tileable texture by construction. The discriminator
is a spectrally normalised PatchGAN that scores random crops.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..common.deterministic import CircularConv2d, circular_upsample2x
from ..common.patchgan import PatchDiscriminator
from ..common.subpixel import subpixel_kernel

# Output pixels per noise pixel (the stride) is 2 ** (len(g_channels) - 1).
MODEL_VERSION = 2  # 2: conditional (material) generators, conditional.py
# Training defaults that differ on CUDA (see TextureGANConfig.for_device).
CUDA_TRAINING_DEFAULTS = {"batch_size": 16}


@dataclass
class TextureGANConfig:
    # ---- architecture (stored with the weights; changing it needs retraining)
    local_dim: int = 24
    global_dim: int = 16
    periodic_dim: int = 8
    g_channels: tuple[int, ...] = (128, 64, 32, 16)  # one stage per entry; upsample x2 between stages
    d_channels: tuple[int, ...] = (32, 64, 128, 256)
    # ---- training
    crop_size: int = 128  # side of the crops D sees (multiple of the noise stride); sees larger structure
    batch_size: int = 2
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.99)
    stats_loss_weight: float = 10.0  # sliced-Wasserstein texture-statistics loss beside the GAN loss
    stats_scales: int = 5  # octaves of the random-feature statistics loss (more: larger structures, slower)
    # Features of the statistics loss: "vgg19" (the shared ImageNet VGG19, Heitz et al. 2021: learns courses
    # of bricks and cells of cobbles) or "random" (seeded random filters: cheaper, weaker structure).
    stats_features: str = "vgg19"
    ema_decay: float = 0.995
    augment_flips: bool = True  # mirrored crops; the materials recipe takes none (a surface lit from one side)
    augment_rot90: bool = False  # only for textures without a preferred direction
    color_jitter: float = 0.02  # brightness/contrast jitter of real crops (small data augmentation)
    max_exemplar_side: int = 1024  # larger exemplars are downscaled to this
    preview_every: int = 50
    preview_size: int = 128
    mixed_precision: bool = True  # bf16/fp16 autocast on CUDA only

    ARCHITECTURE_FIELDS = ("local_dim", "global_dim", "periodic_dim", "g_channels", "d_channels")

    def __post_init__(self) -> None:
        self.g_channels = tuple(int(c) for c in self.g_channels)
        self.d_channels = tuple(int(c) for c in self.d_channels)
        self.betas = tuple(float(b) for b in self.betas)
        if len(self.g_channels) < 1 or min(self.g_channels) < 1:
            raise ValueError("g_channels needs at least one positive channel count")
        if self.local_dim < 1 or self.global_dim < 0 or self.periodic_dim < 0:
            raise ValueError("noise dimensions must be >= 0 (local_dim >= 1)")
        if self.stats_features not in ("vgg19", "random"):
            raise ValueError(f"stats_features must be 'vgg19' or 'random', not {self.stats_features!r}")
        if self.crop_size % self.stride or self.crop_size < 2 * self.stride:
            raise ValueError(f"crop_size must be a multiple of {self.stride} and at least {2 * self.stride}")

    @property
    def stride(self) -> int:
        return 2 ** (len(self.g_channels) - 1)

    def ema_decay_at(self, step: int) -> float:
        """The generator's moving-average decay at ``step`` (a schedule may lengthen it)."""
        return self.ema_decay

    @property
    def noise_channels(self) -> int:
        return self.local_dim + self.global_dim + self.periodic_dim

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: [list(x) if isinstance(x, tuple) else x for x in v] if isinstance(v, tuple) else v
                for k, v in d.items()}

    def architecture(self) -> dict[str, Any]:
        d = self.to_dict()
        return {k: d[k] for k in self.ARCHITECTURE_FIELDS}

    @classmethod
    def for_device(cls, device: torch.device | str, **fields: Any) -> "TextureGANConfig":
        """The defaults scaled to the device: a GPU takes 8x the CPU's batch for about the
        same time per step. CPU defaults are the bundled models' recipe; explicit fields win."""
        if torch.device(device).type == "cuda":
            fields = {**CUDA_TRAINING_DEFAULTS, **fields}
        return cls(**fields)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TextureGANConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in known})


def _conv(cin: int, cout: int, k: int = 3) -> nn.Conv2d:
    return CircularConv2d(cin, cout, k, padding=k // 2)


def pixel_norm_scale(x: torch.Tensor) -> torch.Tensor:
    """PixelNorm's per-pixel scale ``rsqrt(mean over channels of x^2 + 1e-8)``, Bx1xHxW.

    Without gradients the channel sum runs as one multiply-add per channel plane: 8x faster on a CPU than the
    strided reduction of ``x.pow(2).mean(dim=1)`` (0.011 s against 0.092 s for 8x2048^2, one thread)."""
    if torch.is_grad_enabled() or x.shape[1] > 64:
        return torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)
    acc = x[:, :1] * x[:, :1]
    for c in range(1, x.shape[1]):
        acc.addcmul_(x[:, c:c + 1], x[:, c:c + 1])
    return acc.div_(x.shape[1]).add_(1e-8).rsqrt_()


class PixelNorm(nn.Module):
    """Per-pixel channel normalisation: local (so tiles match), no batch statistics."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * pixel_norm_scale(x)


class CircularUpsample(nn.Module):
    """x2 bilinear upsampling that wraps around the edges like circular padding.

    Nearest-neighbour upsampling leaves a faint grid at the noise stride whose
    strongest edges fall exactly on the wrap-around border; bilinear does not.
    """

    reach = 1  # input pixels each side an output pixel depends on

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return circular_upsample2x(x)


# Low-resolution taps of a 3-tap filter applied after CircularUpsample, per output phase (even, odd rows):
# row t of a matrix is the weight of input pixel i-1+t, column k the filter's tap k (see upsample_conv).
_PHASE_TAPS = torch.tensor([[[0.75, 0.25, 0.0], [0.25, 0.75, 0.75], [0.0, 0.0, 0.25]],
                            [[0.25, 0.0, 0.0], [0.75, 0.75, 0.25], [0.0, 0.25, 0.75]]], device="cpu")


def upsample_conv_weight(conv: nn.Conv2d) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The (4*Cout, Cin, 3, 3) low-resolution kernel and bias equal to ``conv`` after ``CircularUpsample``."""
    bias = None if conv.bias is None else conv.bias.repeat_interleave(4)
    return subpixel_kernel(conv.weight, _PHASE_TAPS), bias


def upsample_conv(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """``conv(CircularUpsample()(x))`` for a circular 3x3 ``conv``, as one convolution at the input's resolution
    and a pixel shuffle (the sub-pixel convolution identity, Shi et al. 2016).

    Same multiply-adds, but no upsampled copy of the input and four times the output channels per pass: with
    the folded last stage, 2048^2 ran 2.1x faster on an idle 2-core CPU (interleaved A/B, 2 threads)."""
    weight, bias = upsample_conv_weight(conv)
    y = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="circular"), weight.to(x.dtype),
                 None if bias is None else bias.to(x.dtype))
    return F.pixel_shuffle(y, 2)


def run_stage(stage: nn.Sequential, x: torch.Tensor, fused: bool) -> torch.Tensor:
    """One generator stage; ``fused``: its leading upsample + 3x3 conv as ``upsample_conv`` (inference)."""
    if (fused and len(stage) > 1 and isinstance(stage[0], CircularUpsample) and isinstance(stage[1], nn.Conv2d)
            and stage[1].kernel_size == (3, 3) and stage[1].padding_mode == "circular"):
        x = upsample_conv(x, stage[1])
        for layer in list(stage)[2:]:
            x = layer(x)
        return x
    return stage(x)


class Generator(nn.Module):
    def __init__(self, cfg: TextureGANConfig):
        super().__init__()
        # Inference (TextureGenerator) sets this: each stage's upsample + first conv run as one convolution at the
        # lower resolution. Training keeps the plain modules (its numbers, and so its resumes, stay the same).
        self.fused_upsampling = False
        self.cfg = cfg
        self.local_dim, self.global_dim, self.periodic_dim = cfg.local_dim, cfg.global_dim, cfg.periodic_dim
        self.stride = cfg.stride
        ch = cfg.g_channels
        if self.periodic_dim:
            # Global code -> 2D wave vectors (cycles per noise pixel). Without a
            # global code the wave vectors are free parameters.
            hidden = 64
            self.wave_mlp = nn.Sequential(nn.Linear(max(1, self.global_dim), hidden), nn.ReLU(),
                                          nn.Linear(hidden, 2 * self.periodic_dim))
        act = lambda: nn.LeakyReLU(0.2)  # noqa: E731
        stages: list[nn.Module] = [nn.Sequential(_conv(cfg.noise_channels, ch[0]), act(), PixelNorm(),
                                                 _conv(ch[0], ch[0]), act(), PixelNorm())]
        for cin, cout in zip(ch[:-1], ch[1:]):
            stages.append(nn.Sequential(CircularUpsample(),
                                        _conv(cin, cout), act(), PixelNorm(),
                                        _conv(cout, cout), act(), PixelNorm()))
        self.stages = nn.Sequential(*stages)
        # Per-stage noise (StyleGAN-like): one Gaussian channel at each finer scale,
        # scaled per feature channel, gives fine grain the coarse noise cannot.
        self.noise_gains = nn.ParameterList([nn.Parameter(torch.zeros(1, c, 1, 1)) for c in ch[1:]])
        self.to_rgb = nn.Conv2d(ch[-1], 3, 1)

    # ---- noise
    def wave_vectors(self, z_global: torch.Tensor) -> torch.Tensor:
        """Bx(periodic_dim)x2 wave vectors (ky, kx) in cycles per noise pixel, |k| <= 0.5."""
        z = z_global if self.global_dim else torch.ones(z_global.shape[0], 1, device=z_global.device)
        k = self.wave_mlp(z).view(-1, self.periodic_dim, 2)
        return 0.5 * torch.tanh(k)  # below Nyquist of the noise grid

    def build_input(self, local: torch.Tensor, z_global: torch.Tensor, phase: torch.Tensor,
                    quantize_to: tuple[int, int] | None = None) -> torch.Tensor:
        """Stack local, broadcast global and periodic channels into G's input.

        ``local`` BxLxhxw, ``z_global`` BxG, ``phase`` BxP (radians). With
        ``quantize_to=(h, w)`` the wave vectors are rounded so that whole periods
        fit the canvas: the periodic channels then wrap seamlessly.
        """
        b, _, h, w = local.shape
        parts = [local]
        if self.global_dim:
            parts.append(z_global[:, :, None, None].expand(b, self.global_dim, h, w))
        if self.periodic_dim:
            k = self.wave_vectors(z_global)
            if quantize_to is not None:
                qh, qw = quantize_to
                k = torch.stack([torch.round(k[..., 0] * qh) / qh, torch.round(k[..., 1] * qw) / qw], dim=-1)
            yy = torch.arange(h, device=local.device, dtype=local.dtype)
            xx = torch.arange(w, device=local.device, dtype=local.dtype)
            arg = (k[..., 0, None, None] * yy[:, None] + k[..., 1, None, None] * xx[None, :]) * (2 * math.pi)
            parts.append(torch.sin(arg + phase[:, :, None, None]))
        return torch.cat(parts, dim=1)

    # ---- image
    def fine_noise_shapes(self, h: int, w: int) -> list[tuple[int, int, int]]:
        """(channels, height, width) of the per-stage noise for a noise canvas of h x w."""
        return [(1, h * 2 ** i, w * 2 ** i) for i in range(1, len(self.stages))]

    def body(self, x: torch.Tensor, fine: list[torch.Tensor]) -> torch.Tensor:
        """Noise canvas (+ per-stage noise) -> image in [0, 1]; purely convolutional and
        pointwise, so tiles compose exactly."""
        for i, stage in enumerate(self.stages):
            x = run_stage(stage, x, self.fused_upsampling)
            if i > 0:
                x = x + self.noise_gains[i - 1] * fine[i - 1].to(x.dtype)
        return torch.tanh(self.to_rgb(x)) * 0.5 + 0.5

    def forward(self, local, z_global, phase, fine, quantize_to=None) -> torch.Tensor:
        return self.body(self.build_input(local, z_global, phase, quantize_to), fine)

    def margin_noise_pixels(self) -> int:
        """Noise pixels around a tile whose padding artefacts cannot reach the tile's centre."""
        reach = 0  # contaminated output pixels at the current scale
        for i, stage in enumerate(self.stages):
            if i > 0:
                reach = (reach + CircularUpsample.reach) * 2
            reach += sum(m.kernel_size[0] // 2 for m in stage.modules() if isinstance(m, nn.Conv2d))
        return -(-reach // self.stride) + 1


def init_weights(module: nn.Module, generator: torch.Generator) -> None:
    """Seeded init (never the global RNG), so a run is reproducible from its seed."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() > 1:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=generator, device="cpu") * math.sqrt(2.0 / fan_in))
            else:
                p.zero_()
        for name, b in module.named_buffers():
            # spectral-norm power-iteration vectors
            if b.dim() == 1 and b.dtype.is_floating_point:
                b.copy_(F.normalize(torch.randn(b.shape, generator=generator, device="cpu"), dim=0))
        for name, p in module.named_parameters():
            if "noise_gains" in name:
                p.zero_()


def build_models(cfg: TextureGANConfig, seed: int) -> tuple[Generator, PatchDiscriminator]:
    gen = torch.Generator().manual_seed(int(seed))
    # spectral_norm draws its u/v vectors from the global RNG at construction; keep
    # that away from the caller's stream and overwrite them from the seed below.
    with torch.random.fork_rng(devices=[]):
        g, d = Generator(cfg), PatchDiscriminator(cfg.d_channels)
    init_weights(g, gen)
    init_weights(d, gen)
    if cfg.periodic_dim:
        # Start the wave vectors spread over |k| <= 0.2 cycles per noise pixel and
        # only weakly tied to the global code: Kaiming-sized outputs would saturate
        # the tanh at Nyquist, where the sines alias and their gradient vanishes.
        last = g.wave_mlp[-1]
        with torch.no_grad():
            last.weight.mul_(0.1)
            k0 = (torch.rand(last.bias.shape, generator=gen, device="cpu") * 2 - 1) * 0.2
            last.bias.copy_(torch.atanh(2 * k0))
    with torch.no_grad():  # settle the spectral-norm power iteration on the fresh weights
        side = 2 ** (len(cfg.d_channels) + 1)
        probe = torch.zeros(1, 3, side, side, device="cpu")  # the models are still on the CPU here
        for _ in range(10):
            d(probe)
    return g, d
