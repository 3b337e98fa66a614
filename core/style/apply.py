"""Load a trained feed-forward style model and stylize frames with it."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..common.checkpoints import load_checked_model
from ..common.device import free_device_memory, is_out_of_memory, pick_device
from ..common.images import from_tensor, to_tensor
from .inputs import ImageLike, check_strength, finish, prepare, unchanged
from .losses import apply_color_preservation
from .transformer import TransformerConfig, TransformerNet
from .tiling import stylize_tiled

MODEL_KIND = "style_transfer"
FALLBACK_TILE = 512


class StyleModel:
    """A trained feed-forward style network, ready for inference."""

    def __init__(self, net: TransformerNet, config: dict[str, Any], device: torch.device, name: str = ""):
        self.net = net.to(device).eval()
        self.config = config
        self.device = device
        self.name = name or str(config.get("name", "style"))
        # fp16 on CUDA: ~2x faster, and instance-norm statistics are computed in fp32 anyway.
        self.half = device.type == "cuda"
        if self.half:
            self.net.half().to(memory_format=torch.channels_last)
        self.preserve_color = config.get("preserve_color") or None

    @classmethod
    def load(cls, path: str | os.PathLike, device=None) -> "StyleModel":
        net, config = load_checked_model(path, MODEL_KIND, "transformer", "network",
                                         lambda arch: TransformerConfig(**arch), TransformerNet)
        return cls(net, config, pick_device(device), config.get("name") or Path(path).stem)

    # ---------------------------------------------------------------- tensors
    @torch.no_grad()
    def stylize_tensor(self, x: torch.Tensor, tile_size: int | None = None, cancel=None) -> torch.Tensor:
        """1x3xHxW sRGB in [0, 1] on any device -> float32 tensor on self.device.

        Untiled when ``tile_size`` is None; if memory runs out, falls back to
        tiles (with a warning) and finally to the CPU.
        """
        x = x.to(self.device, torch.float16 if self.half else torch.float32)
        if self.half:
            x = x.contiguous(memory_format=torch.channels_last)
        if tile_size is not None:
            return stylize_tiled(self.net, x, int(tile_size), cancel=cancel).float()
        try:
            return self.net(x).float()
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
        free_device_memory(self.device)
        for tile in (FALLBACK_TILE, FALLBACK_TILE // 2):
            warnings.warn(f"out of memory stylizing a {x.shape[-1]}x{x.shape[-2]} frame; retrying in {tile}px tiles")
            try:
                return stylize_tiled(self.net, x, tile).float()
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                free_device_memory(self.device)
        if self.device.type == "cpu":
            raise MemoryError("not enough memory to stylize this frame even in 256px tiles")
        warnings.warn("out of GPU memory even in tiles; stylizing on the CPU (slow)")
        cpu_net = TransformerNet(self.net.config)
        cpu_net.load_state_dict({k: v.float().cpu() for k, v in self.net.state_dict().items()})
        return stylize_tiled(cpu_net.eval(), x.float().cpu(), FALLBACK_TILE)

    # ---------------------------------------------------------------- images
    def stylize(self, image: ImageLike, strength: float = 1.0, tile_size: int | None = None,
                cancel=None) -> ImageLike:
        """Stylize one frame; returns the same type (ndarray: sRGB float HxWx3 in [0, 1]).

        ``strength`` blends with the input (0 returns the input exactly);
        ``tile_size`` forces tiled processing (automatic when memory runs out).
        """
        strength = check_strength(strength)
        prep = prepare(image)
        if strength == 0:
            return unchanged(prep)
        out = from_tensor(self.stylize_tensor(to_tensor(prep.srgb), tile_size, cancel))
        out = apply_color_preservation(out, prep.srgb, self.preserve_color)
        return finish(prep, out, strength)

    def __repr__(self) -> str:
        return f"StyleModel({self.name!r}, device={self.device})"


def load_style_model(path: str | os.PathLike, device=None, style=None) -> StyleModel:
    """A fast style model; multi-style files (``file.safetensors#style`` or ``style``: a name or weights)
    give the chosen style or mix (``multistyle.load_fast_style``)."""
    from .multistyle import load_fast_style
    return load_fast_style(path, device, style)


def stylize_array(model: StyleModel, rgb: np.ndarray, tile_size: int | None = None) -> np.ndarray:
    """sRGB HxWx3 -> sRGB HxWx3, full strength (used by the sequence code)."""
    return from_tensor(model.stylize_tensor(to_tensor(rgb), tile_size))
