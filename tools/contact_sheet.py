"""One labelled PNG grid of many results (the demo's contact sheet)."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def plain(label: str) -> str:
    """The label without accents: Pillow's built-in font has no glyph for "é" (it drew a box in "Léger")."""
    return unicodedata.normalize("NFKD", label).encode("ascii", "ignore").decode("ascii")


def fit_label(label: str, draw: ImageDraw.ImageDraw, font, width: int, lines: int = 2) -> list[str]:
    """The label wrapped at spaces into at most ``lines`` lines of at most ``width`` px; a last line that still
    overflows ends in "..." (the sheet cut labels at 36 characters, mid-word: "rusty met")."""
    words, out = plain(label).split(), []
    while words and len(out) < lines:
        line = words.pop(0)
        while words and draw.textlength(f"{line} {words[0]}", font=font) <= width:
            line = f"{line} {words.pop(0)}"
        out.append(line)
    if words or (out and draw.textlength(out[-1], font=font) > width):
        last = out[-1]
        while last and draw.textlength(last + "...", font=font) > width:
            last = last[:-1]
        out[-1] = last.rstrip() + "..."
    return out


def contact_sheet(items: list[tuple[str, Path]], out: Path, cell: int = 256, columns: int = 4) -> Path:
    """Lay ``(label, image_path)`` pairs out in a grid, each fitted into ``cell`` px with its label below
    (wrapped to two lines within the cell)."""
    font = ImageFont.load_default(size=14) if hasattr(ImageFont, "load_default") else None
    line_h = 17
    label_h = 2 * line_h + 6
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
        for k, line in enumerate(fit_label(label, draw, font, cell - 12)):
            draw.text((x0 + 6, y0 + cell + 3 + k * line_h), line, fill=(235, 235, 235), font=font)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out


def as_array(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))
