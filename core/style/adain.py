"""Arbitrary style in one pass: AdaIN (Huang & Belongie 2017).

The encoder is the shared ImageNet VGG19 (``core.common.perception``) up to
relu4_1, frozen. Adaptive instance normalisation gives the content features
the painting's per-channel mean and standard deviation; a trained decoder (the
encoder mirrored: reflection-padded 3x3 convs, nearest upsampling, ReLU, at
half VGG's widths so it is cheap on a CPU) turns them back into an image.
``alpha`` blends content and restyled features (0 = the decoder's
reconstruction of the frame, 1 = full style), so any painting stylizes a frame
without per-style training or a minute of optimisation.

Large frames are processed in tiles (``tiling.stylize_tiled``) with the content
statistics taken once from the whole (downscaled) frame, so tiles agree.
Input handling (alpha channel, linear/HDR, strength blending) is the style
package's (``inputs.prepare``/``finish``).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..common.checkpoints import (CheckpointError, fingerprint_files, load_checked_model, rng_state,
                                  save_model_and_state, sync_model_with_state)
from ..common.deterministic import ReflectionPad2d
from ..common.device import adam, pick_device
from ..common.images import from_tensor, load_image, to_srgb, to_tensor
from ..common.jobs import CancelToken, JobCancelled, ProgressCallback, check_cancel, report
from ..common.inference import cpu_inference
from ..common.perception import Perception, load_perception, mean_std, perception_from_spec
from .data import list_image_files, load_training_frames, sample_batch
from .inputs import ImageLike, finish, prepare, unchanged
from .fused_convs import run_decoder_layers
from .losses import apply_color_preservation, match_color_histogram, normalize_preserve_color
from .optimize import fit_max_side
from .tiling import stylize_tiled
from .train import checked_training_target, resume_from_state, training_state_path

MODEL_KIND = "style_adain"
ENCODER_LAYER = "relu4_1"
ENCODER_CHANNELS = 512
STYLE_LOSS_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
DOWNSCALE = 8  # relu4_1 is at 1/8 resolution
DEFAULT_STYLE_SIZE = 512  # longer side of the painting when measuring its statistics
# AdaIN scales each relu4_1 channel by the painting's std over the frame's. A Cycles render has about a third of a
# photo's feature energy, so on renders that gain is ~2x at the median and 8-12x in the tail (photos: ~1x): the
# decoder then turns render noise and flat floors into streaks (relu4_2 content distance 1.4-1.5 with Starry Night
# and Composition VII on validation renders, 12,264-step decoder). Capping the gain at 1.25 brings those to about
# 1.0 with the style cut still 40-55 %, and leaves photos (gain ~1) nearly as they were. Chosen on the
# validation frames (astronaut, renders of seeds 9001/9003), not the bench's; 1.5 left renders at 1.05-1.2.
DEFAULT_MAX_GAIN = 1.25
STATS_MAX_SIDE = 1024  # longer side of the frame when measuring content statistics for tiles
TILE_CONTEXT = 64  # extra pixels per tile side: VGG's receptive field to relu4_1 is wide
# Above this many pixels frames go through tiles anyway (VGG's full-resolution activations of a 4K frame
# need gigabytes); tiles match the untiled pass up to float rounding, so nothing changes but memory.
AUTO_TILE_PIXELS = 2_500_000
AUTO_TILE = 1024
# The decoder paints a faint line a few pixels inside the frame's left border (its learned response to the reflected
# border: a dark-then-bright pair of columns 2-5 px in, ~5 % peak to peak; fainter at the top). The frame is stylized
# with this many mirrored pixels around it, cropped off after: the first 8 columns then differ from a 48-px margin's
# by 0.009-0.05 (none: 0.05-0.16; 8 px: no better; 16 px: 0.02-0.07), at 1.11x the pixels of a 1024x768 frame.
BORDER_MARGIN = 24


def default_decoder_path() -> Path:
    """The bundled decoder (models/style/adain_decoder.safetensors)."""
    return Path(__file__).resolve().parents[2] / "models" / "style" / "adain_decoder.safetensors"


# --------------------------------------------------------------------------- network

@dataclass
class DecoderConfig:
    # Widths at 1/8, 1/4 and 1/2 resolution of the mirrored VGG (paper: 256, 128, 64; half is ~4x cheaper).
    widths: tuple[int, int, int] = (128, 64, 32)
    # 3x3 convs that keep the width at each of those stages (paper: 3, 1, 1).
    extra_convs: tuple[int, int, int] = (3, 1, 1)
    # Kernel of the first conv (512 channels in). 1 (a channel reduction, then the 3x3 convs) costs a ninth of
    # the paper's 3x3 there, where most of a narrow decoder's weights and a third of its time are.
    entry_kernel: int = 3

    def validate(self) -> None:
        if len(self.widths) != 3 or len(self.extra_convs) != 3:
            raise ValueError("decoder widths and extra_convs need three entries (1/8, 1/4, 1/2 resolution)")
        if not all(isinstance(w, int) and 8 <= w <= 1024 for w in self.widths):
            raise ValueError(f"decoder widths must be integers in 8..1024, got {list(self.widths)}")
        if not all(isinstance(n, int) and 0 <= n <= 8 for n in self.extra_convs):
            raise ValueError(f"decoder extra_convs must be integers in 0..8, got {list(self.extra_convs)}")
        if self.entry_kernel not in (1, 3):
            raise ValueError(f"decoder entry_kernel must be 1 or 3, got {self.entry_kernel!r}")

    def as_dict(self) -> dict:
        out = {"widths": list(self.widths), "extra_convs": list(self.extra_convs)}
        if self.entry_kernel != 3:  # decoders saved before the option read back unchanged
            out["entry_kernel"] = self.entry_kernel
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "DecoderConfig":
        cfg = cls(tuple(data["widths"]), tuple(data["extra_convs"]), data.get("entry_kernel", 3))
        cfg.validate()
        return cfg


def _conv(c_in: int, c_out: int, relu: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [ReflectionPad2d(1), nn.Conv2d(c_in, c_out, 3)]
    return layers + [nn.ReLU(inplace=True)] if relu else layers


class AdaINDecoder(nn.Sequential):
    """relu4_1 features (512 channels, 1/8 resolution) -> sRGB image."""

    def __init__(self, config: DecoderConfig | None = None):
        cfg = config or DecoderConfig()
        cfg.validate()
        entry = (_conv(ENCODER_CHANNELS, cfg.widths[0]) if cfg.entry_kernel == 3 else
                 [nn.Conv2d(ENCODER_CHANNELS, cfg.widths[0], 1), nn.ReLU(inplace=True)])
        layers = entry + [nn.Upsample(scale_factor=2, mode="nearest")]
        for i, (width, extra) in enumerate(zip(cfg.widths, cfg.extra_convs)):
            for _ in range(extra):
                layers += _conv(width, width)
            if i < 2:
                layers += _conv(width, cfg.widths[i + 1]) + [nn.Upsample(scale_factor=2, mode="nearest")]
        layers += _conv(cfg.widths[2], cfg.widths[2]) + _conv(cfg.widths[2], 3, relu=False)
        super().__init__(*layers)
        self.config = cfg

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not cpu_inference(x):
            return super().forward(x)
        return run_decoder_layers(self, x)  # inference on the CPU: the same sums, ~1.5x faster (fused_convs)


def adain(content: torch.Tensor, style_mean: torch.Tensor, style_std: torch.Tensor,
          content_stats: tuple[torch.Tensor, torch.Tensor] | None = None, max_gain: float | None = None
          ) -> torch.Tensor:
    """Content features renormalised to the style's per-channel mean/std (stats given or measured).

    ``max_gain``: no channel's contrast is amplified more than this (style std / content std is capped; the
    mean still moves to the style's). None: the paper's AdaIN."""
    c_mean, c_std = content_stats if content_stats is not None else mean_std(content)
    gain = style_std / c_std
    if max_gain is not None:
        gain = gain.clamp(max=max_gain)
    return (content - c_mean) * gain + style_mean


class _AdaINPass(nn.Module):
    """encode -> AdaIN -> blend by alpha -> decode, with ``set_norm_mode`` so ``stylize_tiled`` can drive it.

    "record" measures the content statistics on the (downscaled) whole frame,
    "reuse" applies them to every tile, "instance" measures per call.
    """

    def __init__(self, encoder: Perception, decoder: AdaINDecoder, style_mean: torch.Tensor,
                 style_std: torch.Tensor, alpha: float, max_gain: float | None = None):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.style_mean, self.style_std, self.alpha, self.max_gain = style_mean, style_std, alpha, max_gain
        self.mode = "instance"
        self.stats: tuple[torch.Tensor, torch.Tensor] | None = None

    def set_norm_mode(self, mode: str) -> None:
        self.mode = mode
        if mode == "instance":
            self.stats = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        # Reflect-pad to a multiple of 8 so pooling and upsampling give back exactly h x w.
        ph, pw = (-h) % DOWNSCALE, (-w) % DOWNSCALE
        padded = F.pad(x, (0, pw, 0, ph), mode="reflect") if (ph or pw) else x
        if padded.is_cuda:  # the encoder's convolutions answer in the input's layout; the decoder's pads keep it
            padded = padded.contiguous(memory_format=torch.channels_last)
        feats = self.encoder(padded, (ENCODER_LAYER,))[ENCODER_LAYER]
        if self.mode == "reuse" and self.stats is not None:
            stats = self.stats
        else:
            stats = mean_std(feats)
            if self.mode == "record":
                self.stats = stats
        t = adain(feats, self.style_mean, self.style_std, stats, self.max_gain)
        if self.alpha < 1.0:
            t = self.alpha * t + (1.0 - self.alpha) * feats
        return self.decoder(t)[..., :h, :w]


def border_margin(h: int, w: int) -> int:
    """Mirrored pixels around an h x w frame (``BORDER_MARGIN``; fewer, a multiple of ``DOWNSCALE``, on frames too
    small to mirror that much)."""
    return min(BORDER_MARGIN, (min(h, w) - 1) // DOWNSCALE * DOWNSCALE)


def _check_alpha(alpha: float) -> float:
    a = float(alpha)
    if not math.isfinite(a) or a < 0.0 or a > 1.0:
        raise ValueError(f"alpha (style strength) must be between 0 and 1, got {alpha}")
    return a


MAX_GAIN_RANGE = (0.5, 100.0)


def _check_max_gain(max_gain: float | None) -> float | None:
    """None: uncapped (the paper's AdaIN); else a number in ``MAX_GAIN_RANGE``."""
    if max_gain is None:
        return None
    g = float(max_gain)
    if not math.isfinite(g) or not MAX_GAIN_RANGE[0] <= g <= MAX_GAIN_RANGE[1]:
        raise ValueError(f"max_gain (gain limit) must be between {MAX_GAIN_RANGE[0]:g} and {MAX_GAIN_RANGE[1]:g}, "
                         f"got {max_gain}")
    return g


class AdaINModel:
    """The shipped (or a trained) decoder with the shared VGG19 encoder, ready for any painting."""

    def __init__(self, decoder: AdaINDecoder, config: dict[str, Any], device: torch.device,
                 encoder: Perception | None = None):
        self.device = device
        self.decoder = decoder.to(device).eval().requires_grad_(False)
        if device.type == "cuda":  # NHWC end to end (_AdaINPass): the first H200 run's frame spent 18 % of its
            self.decoder.to(memory_format=torch.channels_last)  # device time converting layouts around cuDNN
        self.config = config
        spec = config.get("encoder") or {"kind": "vgg19_imagenet", "pooling": "max"}
        self.encoder = encoder if encoder is not None else perception_from_spec(spec, device)
        self.name = str(config.get("name") or "adain")

    @classmethod
    def load(cls, path: str | os.PathLike, device=None) -> "AdaINModel":
        decoder, config = load_checked_model(path, MODEL_KIND, "decoder", "decoder", DecoderConfig.from_dict,
                                             AdaINDecoder)
        return cls(decoder, config, pick_device(device))

    # ---------------------------------------------------------------- tensors
    @torch.no_grad()
    def style_statistics(self, style_srgb: np.ndarray, style_size: int = DEFAULT_STYLE_SIZE
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """relu4_1 mean/std of a painting (sRGB HxWx3), measured at ``style_size`` on its longer side."""
        small = fit_max_side(np.asarray(style_srgb, np.float32), style_size)
        feats = self.encoder(to_tensor(small).to(self.device), (ENCODER_LAYER,))[ENCODER_LAYER]
        return mean_std(feats)

    @torch.no_grad()
    def stylize_tensor(self, x: torch.Tensor, style_stats: tuple[torch.Tensor, torch.Tensor], alpha: float = 1.0,
                       tile_size: int | None = None, cancel: CancelToken | None = None,
                       max_gain: float | None = DEFAULT_MAX_GAIN) -> torch.Tensor:
        """1x3xHxW sRGB in [0, 1] -> 1x3xHxW (not clamped). ``alpha`` 0 is the decoder's reconstruction;
        ``max_gain``: see ``adain`` and ``DEFAULT_MAX_GAIN``."""
        alpha = _check_alpha(alpha)
        net = _AdaINPass(self.encoder, self.decoder, style_stats[0], style_stats[1], alpha, _check_max_gain(max_gain))
        x = x.to(self.device, torch.float32)
        check_cancel(cancel)
        h, w = x.shape[-2:]
        margin = border_margin(h, w)
        if margin:
            x = F.pad(x, (margin, margin, margin, margin), mode="reflect")
        return self._stylize_padded(net, x, tile_size, cancel)[..., margin:margin + h, margin:margin + w]

    def _stylize_padded(self, net: "_AdaINPass", x: torch.Tensor, tile_size: int | None,
                        cancel: CancelToken | None) -> torch.Tensor:
        if tile_size is None and x.shape[-2] * x.shape[-1] > AUTO_TILE_PIXELS:
            tile_size = AUTO_TILE
        if tile_size is not None:
            # Every tile and its context must start on the encoder's 8-pixel pooling grid, or its features
            # are computed on a shifted grid and disagree with the neighbours': pad the frame to a multiple
            # of 8 and keep tile size and overlap multiples of 8.
            h, w = x.shape[-2:]
            padded = F.pad(x, (0, (-w) % DOWNSCALE, 0, (-h) % DOWNSCALE), mode="reflect")
            tile = max(32, int(tile_size) // DOWNSCALE * DOWNSCALE)
            overlap = max(DOWNSCALE, tile // 8 // DOWNSCALE * DOWNSCALE)
            out = stylize_tiled(net, padded, tile, overlap=overlap, context=TILE_CONTEXT,
                                stats_max_side=STATS_MAX_SIDE, cancel=cancel)
            return out[..., :h, :w]
        return net(x)

    # ---------------------------------------------------------------- images
    def stylize(self, content: ImageLike, style: ImageLike, alpha: float = 1.0, preserve_color: bool | str = False,
                tile_size: int | None = None, style_size: int = DEFAULT_STYLE_SIZE,
                progress: ProgressCallback | None = None, cancel: CancelToken | None = None,
                refine_steps: int = 0, refine_max_side: int = 512,
                max_gain: float | None = DEFAULT_MAX_GAIN) -> ImageLike:
        """Stylize ``content`` in the manner of ``style``; returns the same type as ``content``.

        ``alpha`` is AdaIN's style strength (feature space; 0 returns the input
        exactly). ``preserve_color``: False, True/"luminance" (only the
        painting's brightness pattern) or "histogram" (the painting recoloured to
        the frame's palette first). ``refine_steps`` > 0: that many optimisation
        (L-BFGS) steps starting from the decoder's output, at ``refine_max_side``
        at most: the quality knob between the decoder and Any Painting (Best).
        ``max_gain``: how much AdaIN may amplify the frame's own feature contrast (``DEFAULT_MAX_GAIN``: keeps
        flat renders clean; higher: more painterly texture; None: uncapped, the paper's AdaIN).
        """
        alpha = _check_alpha(alpha)
        max_gain = _check_max_gain(max_gain)
        mode = normalize_preserve_color(preserve_color)
        prep = prepare(content, "content image")
        if alpha == 0:
            return unchanged(prep)
        style_srgb = prepare(style, "style image").srgb
        if mode == "histogram":
            style_srgb = match_color_histogram(style_srgb, prep.srgb)
        report(progress, 0, 2, "reading the painting")
        check_cancel(cancel)
        stats = self.style_statistics(style_srgb, style_size)
        report(progress, 1, 2, "stylizing")
        out = self.stylize_tensor(to_tensor(prep.srgb), stats, alpha, tile_size, cancel, max_gain)
        out = np.clip(from_tensor(out), 0.0, 1.0)
        if refine_steps > 0:
            from .optimize import stylize_optimize
            out = np.asarray(stylize_optimize(prep.srgb, style_srgb, steps=int(refine_steps),
                                              refine_steps=int(refine_steps), init=out, max_side=refine_max_side,
                                              device=self.device, cancel=cancel), np.float32)
        out = apply_color_preservation(out, prep.srgb, mode)
        report(progress, 2, 2, "done")
        return finish(prep, out, 1.0)

    def __repr__(self) -> str:
        return f"AdaINModel({self.name!r}, device={self.device})"


class AdaINStylizer:
    """Frame stylizer for animations (``temporal.stylize_sequence``): one painting, statistics read once."""

    def __init__(self, model: AdaINModel, style: ImageLike, alpha: float = 1.0, tile_size: int | None = None,
                 style_size: int = DEFAULT_STYLE_SIZE, max_gain: float | None = DEFAULT_MAX_GAIN):
        self.model, self.alpha, self.tile_size = model, _check_alpha(alpha), tile_size
        self.max_gain = _check_max_gain(max_gain)
        self.stats = model.style_statistics(prepare(style, "style image").srgb, style_size)

    def __call__(self, srgb: np.ndarray, warm: np.ndarray | None) -> np.ndarray:
        out = self.model.stylize_tensor(to_tensor(srgb), self.stats, self.alpha, self.tile_size, max_gain=self.max_gain)
        return np.clip(from_tensor(out), 0.0, 1.0)


def bundled_decoder_path() -> str:
    """The bundled decoder's path, or a clear error saying what to do when this build has none."""
    path = default_decoder_path()
    if not path.is_file():
        raise CheckpointError("Any Painting (Fast) needs the AdaIN decoder, and this build ships none: train one "
                              "with 'python -m core style adain-train' (a GPU is needed in practice; see the "
                              "README) and choose it as the model, or use Any Painting (Best)")
    return str(path)


def load_adain_model(path: str | os.PathLike, device=None) -> AdaINModel:
    return AdaINModel.load(path, device)


# --------------------------------------------------------------------------- training

@dataclass
class AdaINTrainConfig:
    name: str = "adain"
    decoder: dict = field(default_factory=lambda: DecoderConfig().as_dict())
    image_size: int = 192  # training crop size (multiple of 8)
    batch_size: int = 4
    learning_rate: float = 1e-4
    style_weight: float = 10.0  # lambda in the paper
    # First steps: plain pixel reconstruction of the content (decoder(encoder(x)) = x). Cheap (no gradient
    # through VGG) and it gives the decoder a working VGG inverse before the paper's losses take over,
    # which matters on a CPU budget of a few hundred steps.
    warmup_steps: int = 0
    style_scales: tuple[float, float] = (1.0, 2.5)  # painting's shorter side, in crops, before cropping
    hue_jitter: float = 0.5  # max hue rotation, in half turns
    saturation_jitter: tuple[float, float] = (0.5, 1.4)

    def validate(self) -> None:
        DecoderConfig.from_dict(self.decoder)
        if self.image_size < 32 or self.image_size % DOWNSCALE:
            raise ValueError("image_size must be a multiple of 8 and at least 32")
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if not (math.isfinite(self.learning_rate) and 0 < self.learning_rate < 1):
            raise ValueError("learning_rate must be in (0, 1)")
        if self.warmup_steps < 0:
            raise ValueError("warmup_steps must be >= 0")
        if not (math.isfinite(self.style_weight) and self.style_weight >= 0):
            raise ValueError("style_weight must be a finite number >= 0")
        lo, hi = self.style_scales
        if not 1.0 <= lo <= hi:
            raise ValueError("style_scales must satisfy 1 <= low <= high")
        if not 0 <= self.hue_jitter <= 1 or not 0 <= self.saturation_jitter[0] <= self.saturation_jitter[1]:
            raise ValueError("hue_jitter must be in [0, 1] and saturation_jitter a (low, high) range")

    @classmethod
    def from_dict(cls, data: dict) -> "AdaINTrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], device="cpu")
_FROM_YIQ = torch.linalg.inv(_TO_YIQ)


def _jitter_colour(crop: torch.Tensor, hue: float, saturation: float) -> torch.Tensor:
    """Rotate the chroma plane (YIQ) by ``hue`` radians and scale it by ``saturation``; 3xHxW in [0, 1]."""
    c, s = math.cos(hue) * saturation, math.sin(hue) * saturation
    chroma = torch.tensor([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]], device="cpu")  # crops are CPU data
    return (_FROM_YIQ @ chroma @ _TO_YIQ @ crop.reshape(3, -1)).reshape(crop.shape).clamp(0, 1)


def sample_style_batch(styles: Sequence[np.ndarray], batch: int, size: int, cfg: AdaINTrainConfig,
                       generator: torch.Generator) -> torch.Tensor:
    """Style crops at random scales, flipped and colour-jittered, drawn from ``generator`` only."""
    crops = []
    for _ in range(batch):
        rgb = styles[int(torch.randint(len(styles), (1,), generator=generator))]
        lo, hi = cfg.style_scales
        short = size * (lo + (hi - lo) * float(torch.rand(1, generator=generator)))
        h, w = rgb.shape[:2]
        scale = short / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        t = F.interpolate(to_tensor(rgb), size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)[0]
        y = int(torch.randint(nh - size + 1, (1,), generator=generator))
        x = int(torch.randint(nw - size + 1, (1,), generator=generator))
        crop = t[:, y:y + size, x:x + size]
        if bool(torch.rand(1, generator=generator) < 0.5):
            crop = crop.flip(-1)
        if bool(torch.rand(1, generator=generator) < 0.5):
            hue = (float(torch.rand(1, generator=generator)) * 2 - 1) * cfg.hue_jitter * math.pi
            s_lo, s_hi = cfg.saturation_jitter
            crop = _jitter_colour(crop, hue, s_lo + (s_hi - s_lo) * float(torch.rand(1, generator=generator)))
        crops.append(crop.clamp(0, 1))
    return torch.stack(crops).float()


def adain_losses(encoder: Perception, decoder: AdaINDecoder, content: torch.Tensor, style: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(content loss, style loss) of the paper: relu4_1 against the AdaIN target, mean/std over relu1_1..4_1."""
    with torch.no_grad():
        style_feats = encoder(style, STYLE_LOSS_LAYERS)
        target = adain(encoder(content, (ENCODER_LAYER,))[ENCODER_LAYER], *mean_std(style_feats[ENCODER_LAYER]))
    out_feats = encoder(decoder(target), STYLE_LOSS_LAYERS)
    l_content = F.mse_loss(out_feats[ENCODER_LAYER], target)
    l_style = content.new_zeros(())
    for name in STYLE_LOSS_LAYERS:
        (om, os_), (sm, ss) = mean_std(out_feats[name]), mean_std(style_feats[name])
        l_style = l_style + F.mse_loss(om, sm) + F.mse_loss(os_, ss)
    return l_content, l_style


def _load_styles(paths: Sequence[Path]) -> list[np.ndarray]:
    # Paintings are reduced once so each step's random rescale stays cheap.
    return [fit_max_side(to_srgb(load_image(p)).rgb, 768) for p in paths]


def train_adain_decoder(content_frames, style_images: Sequence[str | os.PathLike], out_path, steps: int, *,
                        config: AdaINTrainConfig | None = None, seed: int = 0, device=None,
                        progress: ProgressCallback | None = None, cancel: CancelToken | None = None,
                        checkpoint_every: int = 100, resume: bool = True) -> Path:
    """Train (or resume) an AdaIN decoder; ``content_frames`` a folder/list, ``style_images`` files or folders."""
    cfg = config or AdaINTrainConfig()
    cfg.validate()
    out = checked_training_target(steps, out_path)
    style_paths: list[Path] = []
    for item in style_images:
        p = Path(item)
        style_paths += list_image_files(p) if p.is_dir() else [p]
    if not style_paths:
        raise ValueError("no style images were given")
    dev = pick_device(device)
    frames, frames_info = load_training_frames(content_frames, cfg.image_size)
    styles = _load_styles(style_paths)
    styles_info = {"files": [p.name for p in style_paths], "fingerprint": fingerprint_files(style_paths)}
    encoder = load_perception(dev, "max")
    decoder_cfg = DecoderConfig.from_dict(cfg.decoder)
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's global RNG
        torch.manual_seed(seed)
        decoder = AdaINDecoder(decoder_cfg)
    decoder = decoder.to(dev).train()
    optimizer = adam(decoder.parameters(), dev, lr=cfg.learning_rate)
    generator = torch.Generator().manual_seed(seed)
    identity = {"frames": frames_info["fingerprint"], "styles": styles_info["fingerprint"],
                "config": asdict(cfg), "seed": seed, "encoder": encoder.spec()}
    step = 0
    state_path = training_state_path(out)
    if resume and state_path.exists():
        step = resume_from_state(state_path, identity, decoder, optimizer, generator, dev, "frames, styles")

    def save(current: int) -> None:
        model_config = {"name": cfg.name, "decoder": decoder_cfg.as_dict(), "encoder": encoder.spec(),
                        "encoder_source": encoder.source, "training": asdict(cfg), "frames": frames_info,
                        "styles": styles_info, "steps_done": current, "seed": seed}
        save_model_and_state(out, decoder.state_dict(), model_config, MODEL_KIND,
                             state_path, {"identity": identity, "step": current, "model": decoder.state_dict(),
                                          "optimizer": optimizer.state_dict(), "rng": rng_state(generator)})

    if resume and state_path.exists():
        sync_model_with_state(out, "steps_done", step, save)  # also hands back a model for a finished job

    while step < steps:
        if cancel is not None and cancel.cancelled:
            save(step)
            raise JobCancelled(f"training cancelled at step {step}; checkpoint saved to {out}")
        content = sample_batch(frames, cfg.batch_size, cfg.image_size, generator).to(dev)
        style = sample_style_batch(styles, cfg.batch_size, cfg.image_size, cfg, generator).to(dev)
        if step == cfg.warmup_steps > 0:
            optimizer.state.clear()  # Adam's moments at the pixel loss's scale mean nothing at the feature loss's
        optimizer.zero_grad(set_to_none=True)
        if step < cfg.warmup_steps:
            with torch.no_grad():
                feats = encoder(content, (ENCODER_LAYER,))[ENCODER_LAYER]
            l_content, l_style = F.mse_loss(decoder(feats), content), content.new_zeros(())
        else:
            l_content, l_style = adain_losses(encoder, decoder, content, style)
        loss = l_content + cfg.style_weight * l_style
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training diverged at step {step} (loss is {float(loss)}); "
                                     "lower the learning rate or the style weight")
        loss.backward()
        optimizer.step()
        step += 1
        if step % max(1, checkpoint_every) == 0 or step == steps:
            save(step)
        report(progress, step, steps, "training AdaIN decoder",
               {"content": float(l_content.detach()), "style": float(l_style.detach())})
    return out

