"""Flipped crops of a training exemplar without a flip kernel per crop: the exemplar is flipped once each way
(``flipped_versions``), and a flipped crop is a view of one of those copies (``flipped_crop``). The texture GAN's
and the texture VAE's samplers cut their batches so: a batch is then one stack (per crop, a flip was up to two
kernel launches, 64 a step at CUDA's VAE batch of 32)."""

from __future__ import annotations

import torch


def flipped_versions(image: torch.Tensor) -> dict[tuple[bool, bool], torch.Tensor]:
    """A CxHxW image as it is and flipped across, down and both, keyed (across, down)."""
    return {(False, False): image, (True, False): image.flip(2), (False, True): image.flip(1),
            (True, True): image.flip(2).flip(1)}


def flipped_crop(versions: dict[tuple[bool, bool], torch.Tensor], top: int, left: int, size: int, across: bool,
                 down: bool) -> torch.Tensor:
    """The ``size`` crop at (``top``, ``left``) of the image, flipped across and/or down: the same pixels as
    flipping the crop, read from the flipped version at the mirrored corner (a view)."""
    image = versions[across, down]
    _, h, w = image.shape
    y = h - top - size if down else top
    x = w - left - size if across else left
    return image[:, y:y + size, x:x + size]
