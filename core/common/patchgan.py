"""The spectrally normalised PatchGAN discriminator the GAN families share (texture GAN, materials GAN,
VAE-GAN): the parameter names (``net.<i>...``) are those of their checkpoints and training states."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn


class PatchDiscriminator(nn.Module):
    """Stride-2 4x4 convs (spectral norm keeps it Lipschitz), then a 3x3 conv to ``maps`` logit maps:
    one logit per patch in each map. Takes images in [0, 1]."""

    def __init__(self, channels: Sequence[int], maps: int = 1):
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm
        layers: list[nn.Module] = []
        cin = 3
        for cout in channels:
            layers += [sn(nn.Conv2d(cin, cout, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
            cin = cout
        layers.append(sn(nn.Conv2d(cin, maps, 3, padding=1)))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2.0 - 1.0)
