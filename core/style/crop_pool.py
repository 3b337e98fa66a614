"""Cached training targets for CPU trainings: pools of content crops with their frozen VGG19 features.

A training step of AdaIN or of the multi-style network needs the frozen
encoder's features of its content crops and the statistics of its paintings.
Both are fixed, so they are computed once per *pool* (a few hundred crops drawn
from a seeded generator) instead of once per step; a step then runs only the
trained network and one VGG pass on its output. A pool is replaced every
``pool_steps`` steps by another one drawn from the pool's own seed, so a long
training still sees fresh crops, and a resumed training rebuilds exactly the
pool it was using (the same files give the same crops, bit for bit).

The content folder may grow between sessions (new photographs and renders):
that is recorded in the training's history, never refused.

Also here: the time budget and the clean stop (SIGTERM) shared by the trainings.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..common.checkpoints import fingerprint_files
from ..common.images import load_image, to_srgb
from ..common.jobs import StopSignals
from ..common.perception import Perception, mean_std
from .data import list_image_files
from .optimize import fit_max_side

# The bench's held-out photograph (scikit-image's astronaut) and render: never trained on.
HELD_OUT_NAMES = ("astronaut", "holdout")
CONTENT_MAX_SIDE = 512  # content images are kept at most this large (the data folder stores 256-512 px)


def content_files(folders: Sequence[str | Path], exclude: Sequence[str] = HELD_OUT_NAMES) -> list[Path]:
    """Every image of ``folders`` (sorted per folder) except held-out ones; missing folders are skipped."""
    files: list[Path] = []
    for folder in folders:
        p = Path(folder)
        if p.is_dir():
            files += [f for f in list_image_files(p) if not any(key in f.stem for key in exclude)]
    if not files:
        raise FileNotFoundError(f"no content images in {', '.join(str(f) for f in folders)}")
    return files


def describe_files(files: Sequence[Path]) -> dict:
    """Count and fingerprint of a set of files (recorded in a training's history)."""
    return {"count": len(files), "fingerprint": fingerprint_files(files)}


def load_content(files: Sequence[Path], max_side: int = CONTENT_MAX_SIDE) -> list[np.ndarray]:
    """sRGB images as uint8 HxWx3 (a quarter of float32's memory), longer side at most ``max_side``."""
    out = []
    for f in files:
        rgb = fit_max_side(to_srgb(load_image(f)).rgb, max_side)
        out.append(np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8))
    return out


def pool_generator(seed: int, *keys: int) -> torch.Generator:
    """The generator of one pool, from the training's seed and the pool's keys (phase, index)."""
    digest = hashlib.sha256(repr((int(seed), *map(int, keys))).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:7], "little"))


def sample_crops(images: Sequence[np.ndarray], count: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` square crops (count x 3 x size x size, float32 in [0, 1]) at random scales, flipped at random.

    The crop's side in the source image lies between ``size`` and the image's
    shorter side, so crops range from details to whole-frame views; images
    smaller than ``size`` are upscaled.
    """
    crops = torch.empty(count, 3, size, size, device="cpu")  # pools are staged on the CPU
    for i in range(count):
        rgb = images[int(torch.randint(len(images), (1,), generator=generator))]
        h, w = rgb.shape[:2]
        short = min(h, w)
        lo, hi = min(size, short), short
        side = int(round(lo + (hi - lo) * float(torch.rand(1, generator=generator))))
        y = int(torch.randint(h - side + 1, (1,), generator=generator))
        x = int(torch.randint(w - side + 1, (1,), generator=generator))
        box = torch.from_numpy(np.ascontiguousarray(rgb[y:y + side, x:x + side].transpose(2, 0, 1))).float() / 255.0
        crop = F.interpolate(box[None], size=(size, size), mode="bilinear", antialias=side > size,
                             align_corners=False)[0] if side != size else box
        if bool(torch.rand(1, generator=generator) < 0.5):
            crop = crop.flip(-1)
        crops[i] = crop.clamp(0, 1)
    return crops


@torch.no_grad()
def encode(encoder: Perception, images: torch.Tensor, layers: Sequence[str], chunk: int = 8,
           device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Frozen features of ``images`` at ``layers``, computed ``chunk`` images at a time, kept on the CPU."""
    out: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    for start in range(0, images.shape[0], chunk):
        feats = encoder(images[start:start + chunk].to(device), layers)
        for name in layers:
            out[name].append(feats[name].float().cpu())
    return {name: torch.cat(parts) for name, parts in out.items()}


class CropPool:
    """Crops and their frozen features; rebuilt on demand when the training moves to another pool key."""

    def __init__(self, images: Sequence[np.ndarray], encoder: Perception, layers: Sequence[str], seed: int,
                 device: torch.device | str = "cpu"):
        self.images, self.encoder, self.layers = images, encoder, tuple(layers)
        self.seed, self.device = seed, device
        self.key: tuple | None = None
        self.crops = torch.empty(0, device="cpu")
        self.features: dict[str, torch.Tensor] = {}

    def ensure(self, key: tuple, count: int, size: int) -> bool:
        """Make the pool of ``key`` current; True when it had to be built."""
        if self.key == (key, count, size):
            return False
        self.crops = sample_crops(self.images, count, size, pool_generator(self.seed, *key))
        self.features = encode(self.encoder, self.crops, self.layers, device=self.device)
        self.key = (key, count, size)
        return True


# --------------------------------------------------------------------------- paintings

_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], device="cpu")
_FROM_YIQ = torch.linalg.inv(_TO_YIQ)


class PhasedRecipe:
    """What the style trainings' recipes (dataclasses with ``phases``: (first step, crop, batch, crops per
    pool) rows, and ``pool_steps``) share: reading one back from a stored dict, and a step's phase."""

    @classmethod
    def from_dict(cls, data: dict):
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def phase(self, step: int) -> tuple[int, int, int, int, int]:
        """(phase index, first step, crop, batch, pool crops) of ``step``."""
        index = max(i for i, p in enumerate(self.phases) if p[0] <= step)
        return (index, *[int(v) for v in self.phases[index]])


def refresh_pool(pool: CropPool, recipe, step: int, log) -> tuple[int, int, int, float]:
    """(crop, batch, pool count, the step's start time) at ``step`` of a phased recipe (``recipe.phase``,
    ``recipe.pool_steps``): renews the pool when the step enters a new phase or pool period (the step's
    time then starts after the renewal)."""
    t0 = time.monotonic()
    phase, first, crop, batch, pool_count = recipe.phase(step)
    if pool.ensure((phase, (step - first) // recipe.pool_steps), pool_count, crop):
        log(f"step {step}: new pool of {pool_count} crops at {crop} px ({time.monotonic() - t0:.0f} s)")
        t0 = time.monotonic()
    return crop, batch, pool_count, t0


def recolour(image: torch.Tensor, hue: float, saturation: float) -> torch.Tensor:
    """3xHxW rotated in chroma (YIQ) by ``hue`` radians and its chroma scaled by ``saturation``."""
    c, s = math.cos(hue) * saturation, math.sin(hue) * saturation
    chroma = torch.tensor([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]], device="cpu")  # paintings are recoloured on the CPU
    return (_FROM_YIQ @ chroma @ _TO_YIQ @ image.reshape(3, -1)).reshape(image.shape).clamp(0, 1)


def painting_variants(rgb: np.ndarray, sizes: Sequence[int], recoloured: int, generator: torch.Generator
                      ) -> list[torch.Tensor]:
    """The painting at each longer side in ``sizes``, plus ``recoloured`` hue/saturation-jittered copies each.

    More colour variety than the paintings have teaches AdaIN's decoder palettes it never saw.
    """
    out = []
    for size in sizes:
        base = torch.from_numpy(np.ascontiguousarray(fit_max_side(rgb, size).transpose(2, 0, 1))).float()
        out.append(base)
        for _ in range(recoloured):
            hue = (float(torch.rand(1, generator=generator)) * 2 - 1) * math.pi
            sat = 0.6 + 0.8 * float(torch.rand(1, generator=generator))
            out.append(recolour(base, hue, sat))
    return out


@torch.no_grad()
def painting_statistics(encoder: Perception, images: Sequence[torch.Tensor], layers: Sequence[str],
                        device: torch.device | str = "cpu") -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per layer, (means, stds) each K x C: AdaIN's statistics of every image (one VGG pass each)."""
    means: dict[str, list] = {name: [] for name in layers}
    stds: dict[str, list] = {name: [] for name in layers}
    for image in images:
        feats = encoder(image[None].to(device), layers)
        for name in layers:
            m, s = mean_std(feats[name])
            means[name].append(m.flatten().cpu())
            stds[name].append(s.flatten().cpu())
    return {name: (torch.stack(means[name]), torch.stack(stds[name])) for name in layers}


# --------------------------------------------------------------------------- time budget

class Budget(StopSignals):
    """Wall-clock budget of a training run, with a checkpoint cadence and a clean stop on SIGTERM/SIGINT."""

    def __init__(self, minutes: float, checkpoint_seconds: float):
        super().__init__()
        self.start = time.monotonic()
        self.deadline = self.start + max(0.0, float(minutes)) * 60.0
        self.checkpoint_seconds = checkpoint_seconds
        self.last_checkpoint = self.start

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def exhausted(self, margin_seconds: float = 0.0) -> bool:
        """True when the budget (less the expected length of the next step) is spent, or a stop was asked."""
        return self.requested or time.monotonic() + margin_seconds >= self.deadline

    def checkpoint_due(self) -> bool:
        if time.monotonic() - self.last_checkpoint >= self.checkpoint_seconds:
            self.last_checkpoint = time.monotonic()
            return True
        return False
