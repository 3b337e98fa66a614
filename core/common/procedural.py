"""Procedural exemplar textures the project makes itself (no licences to track).

Deterministic per seed; used by tests, the benchmark and to train the bundled
default models. Each returns float32 HxWx3 in [0, 1] (sRGB-encoded).
"""

from __future__ import annotations

import numpy as np


def _value_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Smooth noise: random lattice values, bicubic-ish (smoothstep) interpolation."""
    gy, gx = cells, max(1, int(round(cells * w / h)))
    lattice = rng.random((gy + 1, gx + 1))
    y = np.linspace(0, gy, h, endpoint=False)
    x = np.linspace(0, gx, w, endpoint=False)
    y0, x0 = y.astype(int), x.astype(int)
    ty, tx = y - y0, x - x0
    ty, tx = ty * ty * (3 - 2 * ty), tx * tx * (3 - 2 * tx)
    a = lattice[y0][:, x0]
    b = lattice[y0][:, x0 + 1]
    c = lattice[y0 + 1][:, x0]
    d = lattice[y0 + 1][:, x0 + 1]
    top = a + (b - a) * tx[None]
    bottom = c + (d - c) * tx[None]
    return top + (bottom - top) * ty[:, None]


def fbm(rng: np.random.Generator, h: int, w: int, base_cells: int = 4, octaves: int = 5) -> np.ndarray:
    out = np.zeros((h, w))
    amp, total = 1.0, 0.0
    for o in range(octaves):
        out += amp * _value_noise(rng, h, w, base_cells * 2 ** o)
        total += amp
        amp *= 0.5
    return out / total


def _colorize(t: np.ndarray, a, b) -> np.ndarray:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return a + (b - a) * t[..., None]


def bricks(size: int = 256, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h = w = size
    bh, bw, mortar = size // 8, size // 4, max(2, size // 64)
    yy, xx = np.mgrid[0:h, 0:w]
    row = yy // bh
    xs = xx + (row % 2) * (bw // 2)
    col = xs // bw
    in_mortar = ((yy % bh) < mortar) | ((xs % bw) < mortar)
    tint = rng.random((row.max() + 2, col.max() + 2))
    base = _colorize(tint[row, col] * 0.5 + 0.25 * fbm(rng, h, w, 8), (0.45, 0.16, 0.10), (0.78, 0.38, 0.25))
    grain = fbm(rng, h, w, 16, 3)[..., None] * 0.25 - 0.12
    mortar_col = _colorize(fbm(rng, h, w, 16, 3), (0.55, 0.53, 0.50), (0.75, 0.73, 0.70))
    img = np.where(in_mortar[..., None], mortar_col, base + grain)
    return np.clip(img, 0, 1).astype(np.float32)


def wood(size: int = 256, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    warp = fbm(rng, size, size, 3, 4)
    rings = np.sin((xx * 10 + warp * 6 + 0.3 * np.sin(yy * 4)) * np.pi * 2)
    t = 0.5 + 0.5 * rings
    t = t ** 1.6 * 0.8 + fbm(rng, size, size, 32, 2) * 0.2
    return np.clip(_colorize(t, (0.30, 0.16, 0.07), (0.72, 0.50, 0.28)), 0, 1).astype(np.float32)


def stones(size: int = 256, seed: int = 0, n: int = 40) -> np.ndarray:
    """Voronoi cobbles with dark gaps."""
    rng = np.random.default_rng(seed)
    pts = rng.random((n, 2)) * size
    yy, xx = np.mgrid[0:size, 0:size]
    # Distances on a torus so the exemplar itself tiles.
    dy = np.abs(yy[..., None] - pts[:, 0])
    dx = np.abs(xx[..., None] - pts[:, 1])
    dy, dx = np.minimum(dy, size - dy), np.minimum(dx, size - dx)
    d = np.sqrt(dy ** 2 + dx ** 2)
    part = np.partition(d, 1, axis=-1)
    edge = part[..., 1] - part[..., 0]
    idx = np.argmin(d, axis=-1)
    tone = rng.random(n)[idx]
    stone = _colorize(0.6 * tone + 0.4 * fbm(rng, size, size, 8), (0.35, 0.34, 0.32), (0.70, 0.68, 0.62))
    gap = np.clip(edge / (size / 60), 0, 1)[..., None]
    img = stone * (0.25 + 0.75 * gap)
    return np.clip(img, 0, 1).astype(np.float32)


def rust(size: int = 256, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = fbm(rng, size, size, 4, 6)
    spots = fbm(rng, size, size, 8, 4)
    metal = _colorize(fbm(rng, size, size, 32, 2), (0.38, 0.40, 0.42), (0.55, 0.57, 0.60))
    rusty = _colorize(n, (0.30, 0.10, 0.03), (0.80, 0.40, 0.12))
    mask = np.clip((spots - 0.45) * 6, 0, 1)[..., None]
    return np.clip(metal * (1 - mask) + rusty * mask, 0, 1).astype(np.float32)


def fabric(size: int = 256, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    period = max(4, size // 32)
    warp_thread = 0.5 + 0.5 * np.cos(2 * np.pi * xx / period)
    weft_thread = 0.5 + 0.5 * np.cos(2 * np.pi * yy / period)
    over = ((xx // period + yy // period) % 2 == 0)
    t = np.where(over, warp_thread, weft_thread) * 0.7 + 0.3 * fbm(rng, size, size, 16, 3)
    return np.clip(_colorize(t, (0.08, 0.12, 0.30), (0.35, 0.45, 0.80)), 0, 1).astype(np.float32)


EXEMPLARS = {"bricks": bricks, "wood": wood, "stones": stones, "rust": rust, "fabric": fabric}


def make_exemplar(name: str, size: int = 256, seed: int = 0) -> np.ndarray:
    if name not in EXEMPLARS:
        raise ValueError(f"unknown procedural exemplar {name!r}; choose from {', '.join(EXEMPLARS)}")
    return EXEMPLARS[name](size, seed)
