"""data/content/: the training content for fast styles and AdaIN is present, well-formed and licensed.

Every image must have exactly one SOURCES.md row naming a free licence, be an RGB JPEG with its shorter
side 320 px and at most 3:2, and the bench's held-out photo and render must not be in it (not even
resized or recompressed: compared by a 16x16 average hash).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CONTENT = ROOT / "data" / "content"
FREE = re.compile(r"CC0|CC-BY|CC BY|public domain|GPL|no known copyright restrictions", re.I)
NON_FREE = re.compile(r"\bNC\b|non-?commercial|\bND\b|no-?deriv|all rights reserved", re.I)


def _images():
    return sorted(CONTENT.glob("*.jpg"))


def _rows():
    rows = {}
    for line in (CONTENT / "SOURCES.md").read_text().splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if cells and cells[0].endswith(".jpg"):
            assert cells[0] not in rows, f"two SOURCES.md rows for {cells[0]}"
            rows[cells[0]] = cells
    return rows


def test_at_least_300_images_from_photos_and_renders():
    names = [p.name for p in _images()]
    renders = [n for n in names if n.startswith("render_")]
    assert len(names) >= 300, f"{len(names)} content images"
    assert len(renders) >= 100 and len(names) - len(renders) >= 150, (len(renders), len(names))


def test_every_image_has_one_free_licence_row_and_every_row_a_file():
    rows, names = _rows(), {p.name for p in _images()}
    assert set(rows) == names, (sorted(names - set(rows))[:5], sorted(set(rows) - names)[:5])
    for name, cells in rows.items():
        text = " ".join(cells)
        assert FREE.search(text), f"{name}: no free licence named: {text}"
        assert not NON_FREE.search(text), f"{name}: non-free terms: {text}"


def test_images_are_small_rgb_jpegs_with_shorter_side_320():
    total = 0
    for path in _images():
        with Image.open(path) as im:
            assert im.format == "JPEG" and im.mode == "RGB", path.name
            w, h = im.size
            assert min(w, h) == 320 and max(w, h) <= 480, (path.name, im.size)
        total += path.stat().st_size
    assert total <= 12 * 2**20, f"data/content is {total / 2**20:.1f} MiB (budget 12)"


def _ahash(image: Image.Image) -> np.ndarray:
    a = np.asarray(image.convert("L").resize((16, 16), Image.BILINEAR), dtype=np.float32)
    return (a > np.median(a)).ravel()


def test_bench_holdouts_are_not_in_the_training_content():
    skimage_data = pytest.importorskip("skimage.data")
    held = {p.name: _ahash(Image.open(p)) for p in (ROOT / "benchmarks" / "data").glob("*.jpg")}
    held["skimage astronaut"] = _ahash(Image.fromarray(skimage_data.astronaut()))
    assert len(held) >= 3
    for path in _images():
        h = _ahash(Image.open(path))
        for name, hh in held.items():
            # Measured on the three held-out images: a resize + JPEG re-encode changes 0-2 of the 256 bits,
            # a 3 % border crop 14-26; the closest content image to any of them differs in 48 bits.
            assert int((h != hh).sum()) > 30, f"{path.name} looks like held-out {name}"
