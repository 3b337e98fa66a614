"""Feed-forward style network (Johnson et al. 2016, with Ulyanov's instance norm).

Reflection-padded convolutions, instance norm, residual blocks and
nearest-upsample + conv (no transposed convs: no checkerboard artefacts).
A global skip connection (the net predicts a change in logit space) makes
the untrained net the identity, so short trainings converge on style quickly.
The default (``base_channels=16``, 3 residual blocks) has ~0.28 M parameters
(1.1 MB in fp32), small enough for 1080p frames on a CPU.

Instance norm normalises every feature map by its own statistics, so two
tiles of one frame would be normalised differently and disagree. ``StatsNorm``
can therefore *record* its statistics on one pass (the whole frame, or a
downscaled copy of it) and *reuse* them on later passes (the tiles).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..common.deterministic import ReflectionPad2d
from ..common.inference import cpu_inference
from .fused_convs import runs_space_to_depth, space_to_depth_conv, upsampled_conv

OUTPUTS = ("logit", "linear")
UPSAMPLES = ("nearest", "bilinear")


@dataclass
class TransformerConfig:
    base_channels: int = 16
    residual_blocks: int = 3
    # How the residual meets the input. "logit": sigmoid(logit(input) + residual), the first CPU nets' choice;
    # its gradient vanishes near black and white (sigmoid' ~ 1e-3 at logit +-6.9), so dark frames stayed
    # untouched and regions pushed dark never came back (black blobs). "linear": input + residual, clamped
    # at inference only; training keeps it in range with a penalty instead (as pytorch/examples' nets do).
    output: str = "logit"
    # How the decoder doubles its resolution before each conv: "nearest" (every pixel into a 2x2 block) or
    # "bilinear". Tried against the multi-style net's lattice over flat skies: bilinear kept it (see
    # MultiStyleRecipe.upsample), so the bundled nets stay nearest.
    upsample: str = "nearest"

    def as_dict(self) -> dict:
        out = asdict(self)
        if self.upsample == "nearest":  # the nets trained before the field keep their configs and identities
            del out["upsample"]
        return out


class StatsNorm(nn.Module):
    """Affine instance norm whose per-channel statistics can be recorded and reused."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps
        self.mode = "instance"  # "instance" | "record" | "reuse"
        self.stored: tuple[torch.Tensor, torch.Tensor] | None = None

    def affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, shift) applied after normalising, broadcastable to NxCx1x1."""
        return self.weight.view(1, -1, 1, 1), self.bias.view(1, -1, 1, 1)

    def forward(self, x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        """``inplace``: normalise ``x`` itself (inference, where ``x`` is a convolution's fresh output)."""
        one_pass = device_inference(x)
        if self.mode == "reuse":
            if self.stored is None:
                raise RuntimeError("StatsNorm has no recorded statistics to reuse")
            mean, var = self.stored
        elif one_pass:
            mean, var = one_pass_statistics(x)
            if self.mode == "record":
                self.stored = (mean, var)
        else:
            # Two passes (mean, then the centred squares' mean) rather than torch.var_mean: on channels_last
            # frames var_mean's one-pass reduction was a quarter of a 1024x768 stylization on the CPU.
            xf = x.float()
            mean = xf.mean(dim=(2, 3), keepdim=True)
            centred = xf - mean
            var = (centred.square_() if inplace else centred.square()).mean(dim=(2, 3), keepdim=True)
            if self.mode == "record":
                self.stored = (mean.detach(), var.detach())
        weight, bias = self.affine()
        scale = weight * torch.rsqrt(var + self.eps)
        shift = bias - mean * scale
        if inplace:
            return x.mul_(scale.to(x.dtype)).add_(shift.to(x.dtype))
        if one_pass:
            return torch.addcmul(shift.to(x.dtype), x, scale.to(x.dtype))  # one kernel
        return x * scale.to(x.dtype) + shift.to(x.dtype)


def device_inference(x: torch.Tensor) -> bool:
    """Inference (no gradient wanted) on a GPU: the norms take ``one_pass_statistics`` and one kernel to apply."""
    return x.device.type != "cpu" and not (torch.is_grad_enabled() and x.requires_grad)


def one_pass_statistics(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and (biased) variance of NxCxHxW ``x`` as float32, in one pass over ``x`` in its own
    dtype (the reduction accumulates in float32 for fp16/bf16). The training path's float32 copy and two passes
    were over half of a 1080p fp16 stylization's device time on an H200 (the first GPU run's profile)."""
    var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, correction=0)
    return mean.float(), var.float()


class ConvLayer(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, norm: bool = True, relu: bool = True,
                 norm_layer=StatsNorm):
        layers: list[nn.Module] = [ReflectionPad2d(kernel // 2), nn.Conv2d(c_in, c_out, kernel, stride)]
        if norm:
            layers.append(norm_layer(c_out))
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not cpu_inference(x):
            return super().forward(x)
        conv = self[1]
        padded = self[0](x)
        # An RGB head with a wide kernel: a sixth of a 1024x768 frame as a plain convolution (fused_convs).
        y = space_to_depth_conv(padded, conv) if conv.kernel_size[0] >= 5 and runs_space_to_depth(padded, conv) \
            else conv(padded)
        return self.after_conv(y)

    def after_conv(self, y: torch.Tensor) -> torch.Tensor:
        """The layers after the convolution; without gradients the norm works in place on ``y``."""
        for layer in list(self)[2:]:
            y = layer(y, inplace=cpu_inference(y)) if isinstance(layer, StatsNorm) else layer(y)
        return y


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, norm_layer=StatsNorm):
        super().__init__()
        self.body = nn.Sequential(ConvLayer(channels, channels, 3, norm_layer=norm_layer),
                                  ConvLayer(channels, channels, 3, relu=False, norm_layer=norm_layer))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class UpsampleConv(nn.Module):
    def __init__(self, c_in: int, c_out: int, norm_layer=StatsNorm, mode: str = "nearest"):
        super().__init__()
        self.conv = ConvLayer(c_in, c_out, 3, norm_layer=norm_layer)
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "nearest" and cpu_inference(x):
            # Inference on the CPU: upsampling, padding and the convolution as one convolution of the small image
            # (fused_convs), without the 4x image and its padded copy.
            return self.conv.after_conv(upsampled_conv(x, self.conv[1]))
        if self.mode == "nearest":
            return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))
        return self.conv(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))


class TransformerNet(nn.Module):
    """sRGB image in [0, 1] -> stylized sRGB image in [0, 1], any size (padded to /4)."""

    def __init__(self, config: TransformerConfig | None = None, norm_layer=StatsNorm):
        """``norm_layer(channels)`` builds every normalisation (``multistyle`` passes conditional ones)."""
        super().__init__()
        self.config = config or TransformerConfig()
        if self.config.output not in OUTPUTS:
            raise ValueError(f"transformer output must be one of {', '.join(OUTPUTS)}, not {self.config.output!r}")
        if self.config.upsample not in UPSAMPLES:
            raise ValueError(f"transformer upsample must be one of {', '.join(UPSAMPLES)}, "
                             f"not {self.config.upsample!r}")
        c, n = self.config.base_channels, norm_layer
        self.encoder = nn.Sequential(ConvLayer(3, c, 9, norm_layer=n), ConvLayer(c, 2 * c, 3, stride=2, norm_layer=n),
                                     ConvLayer(2 * c, 4 * c, 3, stride=2, norm_layer=n))
        self.residuals = nn.Sequential(*[ResidualBlock(4 * c, n) for _ in range(self.config.residual_blocks)])
        up = self.config.upsample
        self.decoder = nn.Sequential(UpsampleConv(4 * c, 2 * c, n, up), UpsampleConv(2 * c, c, n, up),
                                     ConvLayer(c, 3, 9, norm=False, relu=False))
        # Global skip (see TransformerConfig.output) with a near-zero last layer:
        # the untrained net is the identity, so short CPU trainings spend their steps on style.
        with torch.no_grad():
            self.decoder[-1][1].weight.mul_(0.1)
            self.decoder[-1][1].bias.zero_()

    def forward(self, x: torch.Tensor, clamp: bool = True) -> torch.Tensor:
        """Runs in the weights' dtype (fp16 after ``.half()``) and answers in the input's.

        ``clamp=False`` (training of a "linear" net): the output unclamped, so a region pushed out of range
        still gets gradients back (a clamp's zero gradient left such regions black for good)."""
        in_dtype = x.dtype
        x = x.to(self.decoder[-1][1].weight.dtype)
        h, w = x.shape[-2:]
        ph, pw = (-h) % 4, (-w) % 4
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        residual = self.decoder(self.residuals(self.encoder(x * 2.0 - 1.0)))
        if self.config.output == "linear":
            y = x + residual
            y = y.clamp(0.0, 1.0) if clamp else y
        else:
            y = torch.sigmoid(residual + torch.logit(x.clamp(0.0, 1.0), eps=1e-3))
        return y[..., :h, :w].to(in_dtype)

    # ---------------------------------------------------------------- norm statistics
    def norms(self) -> list[StatsNorm]:
        return [m for m in self.modules() if isinstance(m, StatsNorm)]

    def set_norm_mode(self, mode: str) -> None:
        for m in self.norms():
            m.mode = mode
            if mode == "instance":
                m.stored = None
