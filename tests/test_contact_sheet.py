"""The demo's contact sheet keeps every label readable inside its cell."""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from tools.contact_sheet import contact_sheet, fit_label


def _draw():
    return ImageDraw.Draw(Image.new("RGB", (8, 8))), ImageFont.load_default(size=14)


def test_long_labels_wrap_at_words_and_fit_the_cell():
    draw, font = _draw()
    label = "VAE blend: cobblestones -> rusty metal"
    lines = fit_label(label, draw, font, 244)
    assert " ".join(lines) == label  # wrapped, nothing lost (it was cut to "rusty met")
    assert len(lines) == 2 and all(draw.textlength(line, font=font) <= 244 for line in lines)


def test_labels_too_long_for_two_lines_end_in_an_ellipsis_within_the_cell():
    draw, font = _draw()
    lines = fit_label("word " * 40 + "Supercalifragilisticexpialidocious" * 3, draw, font, 120)
    assert len(lines) == 2 and lines[-1].endswith("...")
    assert all(draw.textlength(line, font=font) <= 120 for line in lines)
    single = fit_label("Supercalifragilisticexpialidocious" * 3, draw, font, 120)  # one word wider than the cell
    assert single[-1].endswith("...") and draw.textlength(single[0], font=font) <= 120
    assert fit_label("Style: Contrast of Forms (Léger)", draw, font, 244) == ["Style: Contrast of Forms (Leger)"]


def test_sheet_lays_out_every_image_with_room_for_two_label_lines(tmp_path: Path):
    paths = []
    for i, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", (64, 32), colour).save(paths[-1])
    out = contact_sheet([(f"item {i} with a label that needs two lines", p) for i, p in enumerate(paths)],
                        tmp_path / "sheet.png", cell=64, columns=2)
    sheet = np.asarray(Image.open(out).convert("RGB"))
    assert sheet.shape[1] == 128 and sheet.shape[0] == 2 * (64 + 40)
    assert tuple(sheet[32, 32]) == (255, 0, 0) and tuple(sheet[32, 96]) == (0, 255, 0)
    assert tuple(sheet[104 + 32, 32]) == (0, 0, 255)
    label_band = sheet[64:104, :64]
    assert (label_band > 200).any(axis=-1).sum() > 20  # text drawn below the first cell
