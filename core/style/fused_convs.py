"""Inference-only rewrites of a few convolutions the style networks run at full resolution on the CPU.

Each gives the same sums as the layers it stands for (to float rounding) in a shape the CPU runs faster:

* ``upsampled_conv_kernel``: a 3x3 convolution of a 2x nearest-upsampled image is a 3x3 convolution of the
  small image with four outputs per channel (one per sub-pixel phase) followed by ``pixel_shuffle``; the
  upsampled image's reflected border is the small image's replicated one. No 4x image, no padded copy of it.
* ``space_to_depth_kernel``: a convolution with a few outputs (an RGB head) as a convolution of the image's
  2x2 ``pixel_unshuffle`` with four outputs per channel: the CPU's convolution is slow with 3 outputs.

Training runs the plain layers (their gradients are what the resumable trainings reproduce).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..common.subpixel import subpixel_kernel


def _taps(kernel: int, factor: int, pad: int, device) -> torch.Tensor:
    """0/1 map [phase, tap, sub-pixel, offset] of a stride-1 ``kernel`` tap at a fine pixel of ``phase`` onto the
    coarse grid (``factor`` fine pixels per coarse one): fine offset ``phase + tap - pad`` lies in coarse cell
    ``offset`` at ``sub-pixel``."""
    span = (factor - 1 + kernel - 1 - pad) // factor - (-pad // factor) + 1
    taps = torch.zeros(factor, kernel, factor, span, device=device)
    for p in range(factor):
        for t in range(kernel):
            cell, sub = divmod(p + t - pad, factor)
            taps[p, t, sub, cell - (-pad // factor)] = 1
    return taps


def upsampled_conv_kernel(weight: torch.Tensor) -> torch.Tensor:
    """A 3x3 convolution of the 2x nearest-upsampled image as one 3x3 convolution of the image itself with
    four outputs per channel (one per sub-pixel phase, ``pixel_shuffle``'s order)."""
    if weight.shape[-2:] != (3, 3):
        raise ValueError("upsampled_conv_kernel fuses 3x3 kernels only")
    # Nearest upsampling: every tap reads one small-image pixel whichever sub-pixel it falls on.
    return subpixel_kernel(weight, _taps(3, 2, 1, weight.device).sum(2).transpose(1, 2))


def space_to_depth_kernel(weight: torch.Tensor) -> torch.Tensor:
    """A stride-1 convolution (on a padded image) as a convolution of the image's 2x2 space-to-depth rearrangement
    (``pixel_unshuffle``) with four outputs per channel (``pixel_shuffle``'s order): the same sums, in a shape
    the CPU's convolution runs far faster when the output has a few channels (an RGB head)."""
    cout, cin, k, _ = weight.shape
    taps = _taps(k, 2, 0, weight.device).to(weight.dtype)  # phase x tap x sub x cell
    fused = torch.einsum("ocyx,pyiY,qxjX->opqcijYX", weight, taps, taps)
    return fused.reshape(cout * 4, cin * 4, taps.shape[-1], taps.shape[-1])


def fuses_upsampling(conv: torch.nn.Module) -> bool:
    """Whether ``upsampled_conv`` can stand for ``conv`` after a 2x upsampling: a plain 3x3 convolution."""
    return (isinstance(conv, torch.nn.Conv2d) and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
            and conv.groups == 1 and conv.dilation == (1, 1))


def _rewritten(conv: torch.nn.Conv2d, name: str, kernel) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(kernel(conv.weight), bias repeated 4 times)``, kept on ``conv`` until its weight or bias changes: built
    once per weight, not per frame, and outside a CUDA graph's capture (the bias's ``repeat_interleave`` waits
    for the device, which a capture refuses: the third H200 run's rewritten style network did not capture)."""
    w, b = conv.weight, conv.bias
    if torch.is_grad_enabled() and (w.requires_grad or (b is not None and b.requires_grad)):
        return kernel(w), None if b is None else b.repeat_interleave(4)  # gradients reach the weights
    # The entry holds the weights it was built from, so their memory cannot be reused by another tensor that
    # would then match the key. Weights changed through ``.data`` keep their version: a caller doing that
    # deletes ``conv._rewritten_kernels``.
    key = (w.data_ptr(), w._version, w.dtype, w.device, None if b is None else (b.data_ptr(), b._version))
    cache = conv.__dict__.setdefault("_rewritten_kernels", {})
    hit = cache.get(name)
    if hit is None or hit[0] != key:
        with torch.no_grad():
            hit = cache[name] = (key, (kernel(w), None if b is None else b.repeat_interleave(4)), (w.detach(), b))
    return hit[1]


def upsampled_conv(x: torch.Tensor, conv: torch.nn.Conv2d) -> torch.Tensor:
    """``conv(reflection_pad(nearest_upsample_2x(x), 1))`` for a 3x3 ``conv``, by ``upsampled_conv_kernel``."""
    if not fuses_upsampling(conv):
        raise ValueError("upsampled_conv fuses a plain 3x3 convolution (a 1-pixel reflected border) only")
    weight, bias = _rewritten(conv, "upsampled", upsampled_conv_kernel)
    return F.pixel_shuffle(F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), weight, bias), 2)


def space_to_depth_conv(padded: torch.Tensor, conv: torch.nn.Conv2d) -> torch.Tensor:
    """``conv(padded)`` (stride 1, even sides) by ``space_to_depth_kernel``."""
    weight, bias = _rewritten(conv, "space_to_depth", space_to_depth_kernel)
    return F.pixel_shuffle(F.conv2d(F.pixel_unshuffle(padded, 2), weight, bias), 2)


def runs_space_to_depth(padded: torch.Tensor, conv: torch.nn.Conv2d) -> bool:
    """Whether ``space_to_depth_conv`` applies and pays: an RGB-like head, stride 1, even padded sides."""
    return (conv.stride == (1, 1) and conv.out_channels <= 4 and conv.groups == 1 and conv.dilation == (1, 1)
            and padded.shape[-2] % 2 == 0 and padded.shape[-1] % 2 == 0)


def run_decoder_layers(layers, x: torch.Tensor) -> torch.Tensor:
    """A decoder written as a flat list of layers (``ReflectionPad2d`` + ``Conv2d`` pairs, ReLUs, 2x nearest
    ``Upsample``s), run for inference on the CPU: channels-last, in-place ReLUs (every ReLU here follows a
    convolution's fresh output), each upsampling fused with the 3x3 convolution after it, an RGB head by space
    to depth. Returns a contiguous tensor, like the plain layers."""
    layers = list(layers)
    x = x.contiguous(memory_format=torch.channels_last)
    i = 0
    while i < len(layers):
        layer = layers[i]
        following = layers[i + 1:i + 3]
        if isinstance(layer, torch.nn.Upsample) and layer.mode == "nearest" and layer.scale_factor in (2, 2.0) \
                and len(following) == 2 and isinstance(following[0], torch.nn.ReflectionPad2d) \
                and tuple(following[0].padding) == (1, 1, 1, 1) and fuses_upsampling(following[1]):
            x, i = upsampled_conv(x, following[1]), i + 3
        elif isinstance(layer, torch.nn.ReflectionPad2d) and following and isinstance(following[0], torch.nn.Conv2d):
            padded, conv = layer(x), following[0]
            x = space_to_depth_conv(padded, conv) if runs_space_to_depth(padded, conv) else conv(padded)
            i += 2
        elif isinstance(layer, torch.nn.ReLU) and i > 0 and isinstance(layers[i - 1], torch.nn.Conv2d):
            x, i = x.relu_(), i + 1
        else:
            x, i = layer(x), i + 1
    return x.contiguous()
