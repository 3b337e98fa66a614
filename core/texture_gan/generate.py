"""Inference: load a texture GAN and generate textures of any size, tiled when needed."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..common.checkpoints import CheckpointError, build_checked, load_checkpoint
from ..common.device import (autocast, chunked_randn, free_device_memory, host_array, is_out_of_memory,
                             pick_device)
from ..common.jobs import check_cancel
from .model import MODEL_VERSION, Generator, TextureGANConfig

log = logging.getLogger(__name__)

KIND = "texture_gan"
MAX_SIDE = 16384
# Above this many output pixels the CPU generates in tiles, which bounds memory. Each tile recomputes a margin
# of 7 noise pixels (112 px at stride 16) around it: 512 px tiles did twice the work of one pass, and with the
# fused upsampling a whole 2048^2 canvas ran as fast as 1024 px tiles and 1.2x faster than 512 px ones.
CPU_UNTILED_MAX_PIXELS = 2048 * 2048
CPU_TILE = 1024
# Smaller tiles spend nearly all their time on the margins around each tile (1 px: 100x slower).
MIN_TILE = 64
# Seed offset of the second global code the variation knob blends towards.
_VARIATION_SEED_OFFSET = 7919


def _global_and_phase(gen: torch.Generator, g: Generator) -> tuple[torch.Tensor, torch.Tensor]:
    z = torch.randn(1, g.global_dim, generator=gen, device="cpu")
    phase = torch.rand(1, g.periodic_dim, generator=gen, device="cpu") * (2 * math.pi)
    return z, phase


def model_device(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


def canvas_noise(g: Generator, hn: int, wn: int, seed: int, variation: float = 0.0,
                 tileable: bool = True) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """G's whole input canvas (1xCxhnxwn) and per-stage noise (float32, on G's device), a
    pure function of the seed.

    Drawn on a seeded CPU generator, then moved, so every device gets identical
    noise. The variation knob blends the seed's global code towards another
    seed's along a great circle (keeps the code's norm, i.e. its statistics).
    """
    device = model_device(g)
    gen = torch.Generator().manual_seed(int(seed))
    z, phase = _global_and_phase(gen, g)
    # The spatial noise (28 M values for 4096^2) is drawn on every CPU core, block-seeded from `gen`.
    keys = [int(k) for k in torch.randint(2 ** 62, (1 + len(g.fine_noise_shapes(hn, wn)),), generator=gen,
                                          device="cpu")]
    local = chunked_randn((1, g.local_dim, hn, wn), keys[0])
    fine = [chunked_randn((1, *shape), key).to(device) for shape, key in zip(g.fine_noise_shapes(hn, wn), keys[1:])]
    if variation:
        other = torch.Generator().manual_seed(int(seed) + _VARIATION_SEED_OFFSET)
        z_other, _ = _global_and_phase(other, g)
        angle = float(variation) * math.pi / 2
        z = math.cos(angle) * z + math.sin(angle) * z_other
    with torch.no_grad():
        canvas = g.build_input(local.to(device), z.to(device), phase.to(device),
                               quantize_to=(hn, wn) if tileable else None)
    return canvas, fine


def periodic_resize(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Band-limited (Fourier) resize of a periodic image: periodic in, periodic out.

    Used to fit a canvas of whole noise pixels to an odd size (a shrink of less
    than one noise pixel). Unlike spatial kernels it blurs every column alike, so
    the wrap-around border looks like any other column boundary.
    """

    def axis(t: torch.Tensor, n_out: int, dim: int) -> torch.Tensor:
        n_in = t.shape[dim]
        if n_in == n_out:
            return t
        keep = torch.cat([torch.arange((n_out + 1) // 2, device=t.device),
                          torch.arange(n_in - n_out // 2, n_in, device=t.device)])
        # One channel at a time in complex64: a 3.6x lower peak than one complex128 transform of the
        # whole image (8191x8190 needed 14 GB), within 1e-6 of it (a 16-bit step is 1.5e-5).
        channels = [(torch.fft.ifft(torch.fft.fft(c.float(), dim=dim).index_select(dim, keep), dim=dim).real
                     * (n_out / n_in)).to(t.dtype) for c in t.split(1, dim=1)]
        return torch.cat(channels, dim=1)

    return axis(axis(x, height, 2), width, 3)


class TextureGenerator:
    """A trained texture GAN ready to generate (eval mode, no gradients)."""

    def __init__(self, generator: Generator, config: dict[str, Any], name: str, device: torch.device):
        self.generator = generator.eval().to(device)
        self.generator.fused_upsampling = True  # model.upsample_conv: the same image, fewer passes over memory
        if device.type == "cuda":  # NHWC convolutions: the tensor-core layout
            self.generator.to(memory_format=torch.channels_last)
        self.config = config
        self.name = name
        self.device = device
        self.last_message = ""  # e.g. why generation fell back to tiles or to the CPU
        self.last_device = str(device)  # where the last image was made (the CPU after a fallback)

    @classmethod
    def load(cls, path: str | Path, device=None) -> "TextureGenerator":
        p = Path(path)
        dev = pick_device(device)
        tensors, config = load_checkpoint(p, expected_kind=KIND, device="cpu")
        version = config.get("version")
        if not isinstance(version, int) or version > MODEL_VERSION:
            raise CheckpointError(f"{p.name}: texture GAN version {version!r} is not supported by this add-on "
                                  f"(supports up to {MODEL_VERSION}); update the add-on")
        arch = config.get("architecture")
        if not isinstance(arch, dict):
            raise CheckpointError(f"{p.name}: its config has no architecture section")
        if "n_materials" in arch:  # one generator for several materials (conditional.py)
            from .materials import MaterialTextureGenerator
            return MaterialTextureGenerator.from_checkpoint(p, tensors, config, dev)
        try:
            cfg = TextureGANConfig.from_dict(arch)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{p.name}: invalid architecture in its config ({exc})") from exc
        g = build_checked(p.name, KIND, arch, tensors, lambda: Generator(cfg))
        return cls(g, config, str(config.get("name") or p.name.removesuffix(".safetensors")), dev)

    @property
    def stride(self) -> int:
        return self.generator.stride

    @torch.no_grad()
    def generate(self, width: int, height: int, seed: int = 0, tileable: bool = True, variation: float = 0.0,
                 tile_size: int | None = None, cancel=None) -> np.ndarray:
        """float32 HxWx3 sRGB in [0, 1].

        ``tileable``: the result wraps seamlessly on both axes. ``variation`` in
        [0, 1] moves the look away from the seed's own towards another one while
        keeping the layout. ``tile_size`` (output pixels) forces tiled
        generation; tiles give the same image as one pass. ``cancel`` (a
        CancelToken) is checked between tiles.
        """
        image = self.generate_tensor(width, height, seed, tileable, variation, tile_size, cancel)
        return host_array(image[0].clamp(0, 1).permute(1, 2, 0))

    @torch.no_grad()
    def generate_tensor(self, width: int, height: int, seed: int = 0, tileable: bool = True,
                        variation: float = 0.0, tile_size: int | None = None, cancel=None) -> torch.Tensor:
        """``generate`` as a 1x3xHxW float32 tensor, left on the device it was made on."""
        width, height = int(width), int(height)
        if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
            raise ValueError(f"texture size must be between 1 and {MAX_SIDE} pixels per side, got {width}x{height}")
        if not 0.0 <= float(variation) <= 1.0:
            raise ValueError(f"variation must be between 0 and 1, got {variation}")
        s = self.stride
        if tile_size is not None and not max(MIN_TILE, s) <= int(tile_size) <= MAX_SIDE:
            raise ValueError(f"tile size must be between {max(MIN_TILE, s)} and {MAX_SIDE} pixels, got {tile_size}")
        g = self.generator
        margin = g.margin_noise_pixels()
        if tileable:
            hn, wn = -(-height // s), -(-width // s)
        else:
            # A canvas larger than the output, cropped: its wrap-around lies outside.
            hn, wn = -(-height // s) + 2 * margin, -(-width // s) + 2 * margin
        self.last_message = ""
        if tile_size is None and self.device.type == "cpu" and hn * wn * s * s > CPU_UNTILED_MAX_PIXELS:
            tile_size = CPU_TILE
        try:
            noise = self.canvas_noise(hn, wn, seed, variation, tileable)
            image = self._run_tiled(noise, tile_size, cancel) if tile_size is not None else self._run(noise)
        except RuntimeError as exc:
            if not is_out_of_memory(exc):
                raise
            image = self._out_of_memory_fallback(width, height, hn, wn, seed, variation, tileable, cancel)
        self.last_device = str(image.device)
        if tileable:
            image = periodic_resize(image, height, width)
        else:
            top = (image.shape[2] - height) // 2
            left = (image.shape[3] - width) // 2
            image = image[:, :, top: top + height, left: left + width]
        return image

    def _out_of_memory_fallback(self, width, height, hn, wn, seed, variation, tileable, cancel=None
                                ) -> torch.Tensor:
        """Halve the tile size until the device copes; past the smallest tile, finish on the CPU."""
        s = self.stride
        free_device_memory(self.device)
        tile_size = 1024
        while tile_size >= 2 * s:
            self.last_message = (f"not enough {self.device.type} memory for {width}x{height} in one pass; "
                                 f"generating in {tile_size}px tiles")
            log.warning(self.last_message)
            try:
                return self._run_tiled(self.canvas_noise(hn, wn, seed, variation, tileable), tile_size, cancel)
            except RuntimeError as exc:
                if not is_out_of_memory(exc):
                    raise
                free_device_memory(self.device)
                tile_size //= 2
        if self.device.type == "cpu":
            raise MemoryError(f"not enough memory to generate {width}x{height} even in {4 * s}px tiles; "
                              "choose a smaller size")
        self.last_message = (f"not enough {self.device.type} memory for {width}x{height} even in small tiles; "
                             "generating on the CPU (slower)")
        log.warning(self.last_message)
        cpu = self.on_cpu()
        return cpu._run_tiled(cpu.canvas_noise(hn, wn, seed, variation, tileable), CPU_TILE, cancel)

    def on_cpu(self) -> "TextureGenerator":
        cpu = type(self)(type(self.generator)(self.generator.cfg), self.config, self.name, torch.device("cpu"))
        cpu.generator.load_state_dict({k: v.float().cpu() for k, v in self.generator.state_dict().items()})
        return cpu

    def canvas_noise(self, hn: int, wn: int, seed: int, variation: float, tileable: bool):
        """G's input canvas and per-stage noise for this model (see ``canvas_noise``)."""
        return canvas_noise(self.generator, hn, wn, seed, variation, tileable)

    def _run(self, noise: tuple[torch.Tensor, list[torch.Tensor]]) -> torch.Tensor:
        """G on a noise canvas, on the model's device; float32 out, left there."""
        mixed = bool(self.config.get("training_config", {}).get("mixed_precision", True))
        canvas, fine = noise
        if self.device.type == "cuda":
            canvas = canvas.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, enabled=mixed):
            out = self.generator.body(canvas, fine)
        return out.float()

    def _run_tiled(self, noise: tuple[torch.Tensor, list[torch.Tensor]], tile_size: int, cancel=None
                   ) -> torch.Tensor:
        """Run G on overlapping tiles of the noise canvas (wrapping at its edges, as
        circular padding does) and keep each tile's centre: identical to one pass."""
        s = self.stride
        m = self.generator.margin_noise_pixels()
        canvas, fine = noise
        _, _, hn, wn = canvas.shape
        tn = max(1, int(tile_size) // s)
        out = torch.empty(1, 3, hn * s, wn * s, device=canvas.device)
        for y0 in range(0, hn, tn):
            th = min(tn, hn - y0)
            for x0 in range(0, wn, tn):
                tw = min(tn, wn - x0)
                check_cancel(cancel)
                tile_canvas = _wrapped_window(canvas, y0 - m, th + 2 * m, x0 - m, tw + 2 * m, 1)
                tile_fine = [_wrapped_window(f, y0 - m, th + 2 * m, x0 - m, tw + 2 * m, 2 ** (i + 1))
                             for i, f in enumerate(fine)]
                result = self._run((tile_canvas, tile_fine))
                out[:, :, y0 * s:(y0 + th) * s, x0 * s:(x0 + tw) * s] = \
                    result[:, :, m * s:(m + th) * s, m * s:(m + tw) * s]
        return out


def _wrapped_window(t: torch.Tensor, y: int, h: int, x: int, w: int, scale: int) -> torch.Tensor:
    """Window of noise-pixel rows y..y+h, cols x..x+w of a map at ``scale`` x the
    noise resolution, wrapping around its edges as circular padding does."""
    rows = torch.arange(y * scale, (y + h) * scale, device=t.device) % t.shape[2]
    cols = torch.arange(x * scale, (x + w) * scale, device=t.device) % t.shape[3]
    return t.index_select(2, rows).index_select(3, cols)


def load_texture_gan(path: str | Path, device=None) -> TextureGenerator:
    return TextureGenerator.load(path, device)


def generate_texture(model: TextureGenerator | str | Path, width: int, height: int, seed: int = 0,
                     tileable: bool = True, variation: float = 0.0, device=None) -> np.ndarray:
    if not isinstance(model, TextureGenerator):
        model = TextureGenerator.load(model, device)
    return model.generate(width, height, seed=seed, tileable=tileable, variation=variation)
