"""Training frames for feed-forward style models: the user's, or generated here.

Generated frames (no downloads, no licences) mix the procedural material
exemplars of ``core.common.procedural`` with simple render-like compositions
(sky gradient, ground plane, shaded spheres and boxes), so a model learns to
stylize both texture detail and large smooth shapes with hard silhouettes,
like a typical Blender frame.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..common.checkpoints import fingerprint_arrays, fingerprint_files
from ..common.images import ImageError, image_from_array, load_image, resize_rgb, to_srgb
from ..common.procedural import EXEMPLARS, fbm, make_exemplar

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".exr", ".tif", ".tiff", ".bmp", ".webp", ".npy"}


def render_like_scene(size: int, seed: int) -> np.ndarray:
    """A toy 'render': sky, textured ground with horizon, lit spheres and boxes, soft shadows."""
    rng = np.random.default_rng(seed)
    h = w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64) / size
    horizon = rng.uniform(0.35, 0.65)
    sky_top, sky_bottom = rng.uniform(0.2, 0.6, 3) * (0.6, 0.8, 1.0), rng.uniform(0.6, 1.0, 3)
    img = sky_top + (sky_bottom - sky_top) * np.clip(yy / horizon, 0, 1)[..., None]
    ground = rng.uniform(0.15, 0.7, 3)
    tex = fbm(rng, h, w, 6, 4)[..., None]
    depth = np.clip((yy - horizon) / (1 - horizon), 0, 1)[..., None]
    ground_img = ground * (0.6 + 0.5 * tex) * (0.5 + 0.5 * depth)
    img = np.where(yy[..., None] > horizon, ground_img, img)
    light = np.array([-0.5, -0.6, 0.62])
    light /= np.linalg.norm(light)
    for _ in range(rng.integers(2, 6)):
        colour = rng.uniform(0.1, 1.0, 3)
        cy, cx = rng.uniform(horizon - 0.1, 0.95), rng.uniform(0.05, 0.95)
        r = rng.uniform(0.06, 0.22)
        if rng.random() < 0.6:  # sphere with Lambert + specular shading and a contact shadow
            shadow = np.exp(-(((xx - cx) / (1.3 * r)) ** 2 + ((yy - cy - r) / (0.3 * r)) ** 2))
            img = img * (1 - 0.5 * shadow[..., None])
            dx, dy = (xx - cx) / r, (yy - cy) / r
            inside = dx ** 2 + dy ** 2 < 1
            nz = np.sqrt(np.clip(1 - dx ** 2 - dy ** 2, 0, 1))
            lam = np.clip(dx * light[0] + dy * light[1] + nz * light[2], 0, 1)
            spec = lam ** 40
            shade = colour * (0.15 + 0.85 * lam[..., None]) + spec[..., None] * 0.6
            img = np.where(inside[..., None], shade, img)
        else:  # box: front face and a darker side face
            bw, bh = r * rng.uniform(1, 2), r * rng.uniform(1, 2.5)
            front = (np.abs(xx - cx) < bw / 2) & (yy > cy - bh) & (yy < cy)
            side = (xx >= cx + bw / 2) & (xx < cx + bw / 2 + bw * 0.3) & (yy > cy - bh - (xx - cx - bw / 2) * 0.6) & (yy < cy - (xx - cx - bw / 2) * 0.6)
            top = (np.abs(xx - cx - bw * 0.15) < bw / 2) & (yy <= cy - bh) & (yy > cy - bh - bw * 0.18)
            img = np.where(front[..., None], colour * 0.8, img)
            img = np.where(side[..., None], colour * 0.45, img)
            img = np.where(top[..., None], np.clip(colour * 1.1, 0, 1), img)
    img = img * (1.0 + 0.04 * rng.standard_normal((h, w, 1)))  # render noise
    return np.clip(img, 0, 1).astype(np.float32)


def generate_training_frames(count: int = 48, size: int = 320, seed: int = 0) -> list[np.ndarray]:
    """Half render-like compositions, half procedural material exemplars."""
    names = sorted(EXEMPLARS)
    frames = []
    for i in range(count):
        if i % 2 == 0:
            frames.append(render_like_scene(size, seed * 1000 + i))
        else:
            frames.append(make_exemplar(names[(i // 2) % len(names)], size, seed * 1000 + i))
    return frames


def list_image_files(folder: str | os.PathLike) -> list[Path]:
    p = Path(folder)
    if not p.is_dir():
        raise ImageError(f"frames folder not found: {p}")
    files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
                   and not f.name.startswith("."))
    if not files:
        raise ImageError(f"{p} contains no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def load_training_frames(frames, size: int, generated_count: int = 48, seed: int = 0
                         ) -> tuple[list[np.ndarray], dict]:
    """sRGB frames whose shorter side is at least ``size``, plus a description for the config."""
    if frames is None:
        arrays = generate_training_frames(generated_count, max(size + size // 4, 64), seed)
        info = {"source": f"generated: render-like scenes + procedural exemplars, count={generated_count}, seed={seed}",
                "fingerprint": fingerprint_arrays(arrays), "count": len(arrays)}
        return arrays, info
    if isinstance(frames, (str, os.PathLike)):
        items: Sequence = list_image_files(frames)
        source = str(frames)
    else:
        items = list(frames)
        source = "list"
    if not items:
        raise ImageError("no training frames were given")
    arrays, paths = [], []
    for i, item in enumerate(items):
        if isinstance(item, np.ndarray):
            rgb = to_srgb(image_from_array(item, "srgb", f"frame {i}")).rgb
        else:
            rgb = to_srgb(load_image(item)).rgb
            paths.append(item)
        h, w = rgb.shape[:2]
        if min(h, w) < size:  # upscale small frames so a full crop fits
            scale = size / min(h, w)
            rgb = np.clip(resize_rgb(rgb, max(size, round(w * scale)), max(size, round(h * scale))), 0, 1)
        arrays.append(rgb)
    fp = fingerprint_files(paths) if len(paths) == len(arrays) else fingerprint_arrays(arrays)
    return arrays, {"source": source, "fingerprint": fp, "count": len(arrays)}


def sample_batch(frames: list[np.ndarray], batch: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """Random crops with random horizontal flips, drawn from ``generator`` only."""
    crops = []
    for _ in range(batch):
        idx = int(torch.randint(len(frames), (1,), generator=generator))
        f = frames[idx]
        h, w = f.shape[:2]
        y = int(torch.randint(h - size + 1, (1,), generator=generator))
        x = int(torch.randint(w - size + 1, (1,), generator=generator))
        crop = torch.from_numpy(np.ascontiguousarray(f[y:y + size, x:x + size].transpose(2, 0, 1)))
        if bool(torch.rand(1, generator=generator) < 0.5):
            crop = crop.flip(-1)
        crops.append(crop)
    return torch.stack(crops).float()
