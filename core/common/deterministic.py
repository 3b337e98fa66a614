"""Layers whose CUDA backward stays deterministic when ``torch.use_deterministic_algorithms`` is on.

Reflection padding's and bilinear upsampling's CUDA backward kernels add with atomics, so two identical
trainings (a resumed one against a straight one) drift apart in the last bits and then, through Adam, visibly;
PyTorch has no deterministic kernel for either. Under deterministic algorithms on CUDA (``device.
make_cuda_deterministic``: the CUDA suite, or ``NEURAL_TEXTURES_DETERMINISTIC=1``) these layers take an
equivalent path made of gathers and elementwise sums, whose backward PyTorch then runs deterministically.
Anywhere else (the CPU, whose kernels are deterministic, and normal GPU runs, which want the fast kernels) they
are the plain PyTorch call. Same parameters and state dicts as the layers they replace.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def deterministic_path(x: torch.Tensor) -> bool:
    """Whether ``x`` needs the deterministic formulation: on CUDA, under deterministic algorithms, with grad."""
    return x.is_cuda and torch.are_deterministic_algorithms_enabled() and torch.is_grad_enabled() and x.requires_grad


def _reflect_index(n: int, before: int, after: int, device: torch.device) -> torch.Tensor:
    i = torch.arange(-before, n + after, device=device).abs()
    return torch.where(i > n - 1, 2 * (n - 1) - i, i)


def _check_reflect(x: torch.Tensor, pad: tuple[int, int, int, int]) -> tuple[int, int]:
    """``x``'s height and width, after checking that each side of ``pad`` is narrower than it (what reflection
    allows)."""
    left, right, top, bottom = pad
    h, w = x.shape[-2:]
    if max(left, right) >= w or max(top, bottom) >= h:
        raise ValueError(f"reflection padding {pad} needs a larger input than {h}x{w}")
    return h, w


def keeps_channels_last(x: torch.Tensor) -> bool:
    """Whether ``reflect_pad`` takes its layout-keeping form: a channels-last 4-D tensor off the CPU. CUDA's
    reflection padding makes its input contiguous and answers in NCHW, so a channels-last network paid a copy
    before and a layout conversion after every padded convolution (the first H200 run's fp16 style frame);
    the CPU's keeps the layout itself."""
    return x.device.type != "cpu" and x.dim() == 4 and not x.is_contiguous() and \
        x.is_contiguous(memory_format=torch.channels_last)


def reflect_pad_channels_last(x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    """``F.pad(x, pad, mode="reflect")`` by mirrored slices and two concatenations, which keep a channels-last
    tensor channels-last (on any device: tested on the CPU)."""
    left, right, top, bottom = pad
    h, w = _check_reflect(x, pad)
    if _inference(x):
        return _pad_canvas(x, pad, h, w, wrap=False, layout=torch.channels_last)
    # Empty sides are left out: an empty part has no layout of its own and would make cat answer in NCHW.
    if left or right:
        parts = [x[..., 1:left + 1].flip(-1)] * bool(left) + [x] + [x[..., w - 1 - right:w - 1].flip(-1)] * bool(right)
        x = torch.cat(parts, dim=-1)
    if top or bottom:
        parts = [x[..., 1:top + 1, :].flip(-2)] * bool(top) + [x] + \
            [x[..., h - 1 - bottom:h - 1, :].flip(-2)] * bool(bottom)
        x = torch.cat(parts, dim=-2)
    return x


def _inference(x: torch.Tensor) -> bool:
    """A 4-D tensor with nothing to differentiate: padded once into a canvas (``_pad_canvas``)."""
    return x.dim() == 4 and not (torch.is_grad_enabled() and x.requires_grad)


def _pad_canvas(x: torch.Tensor, pad: tuple[int, int, int, int], h: int, w: int, wrap: bool,
                layout: torch.memory_format) -> torch.Tensor:
    """Inference's padding (``wrap``: circular, else reflection): the image written once into a canvas of
    ``layout``, the borders copied in after it (the top and bottom rows from the canvas itself, corners
    included). Concatenations copy the whole image twice: 1.35 ms of a 1080p fp16 style frame on the H200 (the
    third slot), and 2.0-2.3x ATen's circular padding on 512-2048 px feature maps on this CPU, where the texture
    GANs generate a 2048 px texture in one pass."""
    left, right, top, bottom = pad
    n, c = x.shape[:2]
    out = torch.empty((n, c, h + top + bottom, w + left + right), dtype=x.dtype, device=x.device,
                      memory_format=layout)
    out[..., top:top + h, left:left + w] = x
    if left:
        out[..., top:top + h, :left] = x[..., w - left:] if wrap else x[..., 1:left + 1].flip(-1)
    if right:
        out[..., top:top + h, left + w:] = x[..., :right] if wrap else x[..., w - 1 - right:w - 1].flip(-1)
    if top:
        out[..., :top, :] = out[..., h:h + top, :] if wrap else out[..., top + 1:2 * top + 1, :].flip(-2)
    if bottom:
        out[..., top + h:, :] = (out[..., top:top + bottom, :] if wrap
                                 else out[..., top + h - 1 - bottom:top + h - 1, :].flip(-2))
    return out


def reflect_pad(x: torch.Tensor, pad: tuple[int, int, int, int], force_gather: bool = False) -> torch.Tensor:
    """``F.pad(x, pad, mode="reflect")`` for a NCHW tensor; by index_select where ``deterministic_path``; by
    mirrored slices for a channels-last tensor off the CPU (``keeps_channels_last``)."""
    if not (force_gather or deterministic_path(x)):
        if keeps_channels_last(x):
            return reflect_pad_channels_last(x, tuple(pad))
        return F.pad(x, pad, mode="reflect")
    left, right, top, bottom = pad
    h, w = _check_reflect(x, pad)
    x = x.index_select(-1, _reflect_index(w, left, right, x.device))
    return x.index_select(-2, _reflect_index(h, top, bottom, x.device))


class ReflectionPad2d(nn.ReflectionPad2d):
    """``nn.ReflectionPad2d`` that stays deterministic under deterministic algorithms on CUDA."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return reflect_pad(x, tuple(self.padding))


def circular_pad(x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    """``F.pad(x, pad, mode="circular")`` for (left, right, top, bottom) padding, as two concatenations of views:
    the same values and gradients bit for bit, in far fewer operations. ATen's writes five strips into a fresh
    tensor and its backward runs through copy-slice nodes: about 55 dispatched operations per padded convolution
    against about 19, most of a texture VAE training step's kernel launches (the H200 profile: host-bound). It
    also keeps a channels-last input channels-last (ATen's returns NCHW)."""
    left, right, top, bottom = (int(p) for p in pad)
    h, w = x.shape[-2:]
    if min(left, right, top, bottom) < 0 or max(left, right) > w or max(top, bottom) > h:
        return F.pad(x, pad, mode="circular")  # its own error for pads wider than the image
    if _inference(x):  # its own layout: ATen's keeps NCHW, the concatenations keep channels-last
        layout = (torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
                  else torch.contiguous_format)
        return _pad_canvas(x, (left, right, top, bottom), h, w, wrap=True, layout=layout)
    if left or right:  # (no empty pieces: they would cost the result its channels-last layout)
        x = torch.cat([p for p, n in ((x[..., w - left:], left), (x, w), (x[..., :right], right)) if n], dim=-1)
    if top or bottom:
        x = torch.cat([p for p, n in ((x[..., h - top:, :], top), (x, h), (x[..., :bottom, :], bottom)) if n], dim=-2)
    return x


class CircularConv2d(nn.Conv2d):
    """``nn.Conv2d(..., padding_mode="circular")`` padding with ``circular_pad``: the same parameters, state dict
    and numbers, a third of the operations per call."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **{**kwargs, "padding_mode": "circular"})

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return F.conv2d(circular_pad(input, tuple(self._reversed_padding_repeated_twice)), weight, bias,
                        self.stride, 0, self.dilation, self.groups)


def circular_upsample2x(x: torch.Tensor, force_shifts: bool = False) -> torch.Tensor:
    """x2 bilinear upsampling (``align_corners=False``) that wraps around the edges.

    Each output pixel is 3/4 of its own input pixel and 1/4 of the neighbour on its side: written with rolls
    where ``deterministic_path`` (or ``force_shifts``), else PyTorch's interpolation of a circularly padded copy.
    """
    if not (force_shifts or deterministic_path(x)):
        x = circular_pad(x, (1, 1, 1, 1))
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)[:, :, 2:-2, 2:-2]
    for dim in (-1, -2):
        before = 0.75 * x + 0.25 * torch.roll(x, 1, dims=dim)  # output 2i: toward pixel i-1
        after = 0.75 * x + 0.25 * torch.roll(x, -1, dims=dim)  # output 2i+1: toward pixel i+1
        # interleave: before, after, before, ... along ``dim``
        x = torch.stack((before, after), dim=-1).flatten(-2) if dim == -1 else \
            torch.stack((before, after), dim=-2).flatten(-3, -2)
    return x
