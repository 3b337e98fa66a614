"""The sub-pixel convolution identity (Shi et al. 2016), shared by the texture GAN's and the style networks'
inference: a 3x3 convolution of a 2x upsampled image equals one 3x3 convolution of the small image with four
outputs per channel (one per output phase), then ``pixel_shuffle``."""

from __future__ import annotations

import torch


def subpixel_kernel(weight: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """The (4*Cout, Cin, 3, 3) small-image kernel of the 3x3 ``weight`` applied after a 2x upsampling whose
    ``taps[phase, offset, tap]`` give the weight of small-image pixel ``i - 1 + offset`` in filter tap ``tap`` at
    an output pixel of ``phase`` (0: even, 1: odd), channels ordered as ``pixel_shuffle`` reads them."""
    taps = taps.to(device=weight.device, dtype=weight.dtype)
    # K[o, py, px, c] = taps[py] @ w[o, c] @ taps[px]^T
    return torch.einsum("ytk,ockl,xsl->oyxcts", taps, weight, taps).reshape(-1, weight.shape[1], 3, 3).contiguous()
