"""One labelled PNG grid of many results (the demo's contact sheet)."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def plain(label: str) -> str:
    """The label without accents: Pillow's built-in font has no glyph for "é" (it drew a box in "Léger")."""
    return unicodedata.normalize("NFKD", label).encode("ascii", "ignore").decode("ascii")


def contact_sheet(items: list[tuple[str, Path]], out: Path, cell: int = 256, columns: int = 4) -> Path:
    """Lay ``(label, image_path)`` pairs out in a grid, each fitted into ``cell`` px with its label below."""
    font = ImageFont.load_default(size=14) if hasattr(ImageFont, "load_default") else None
    label_h = 22
    rows = (len(items) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * cell, rows * (cell + label_h)), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    for i, (label, path) in enumerate(items):
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((cell, cell), Image.LANCZOS)
            x0 = (i % columns) * cell
            y0 = (i // columns) * (cell + label_h)
            sheet.paste(im, (x0 + (cell - im.width) // 2, y0 + (cell - im.height) // 2))
        draw.text((x0 + 6, y0 + cell + 3), plain(label)[:36], fill=(235, 235, 235), font=font)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out


def as_array(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))
