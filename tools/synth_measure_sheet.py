"""Contact sheet of instant synthesis on the measuring photographs: exemplar | output | output tiled 2x2.

    python -m tools.synth_measure_sheet [--set measure|validate|tune] [--side 256] [--out docs/images/synth_measure_sheet.jpg]

One row per photograph of data/texture_photos/ in the chosen set, every image at native scale (no
resampling), so courses, mortar lines and stone outlines can be judged as they are.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from core.common.images import load_rgb
from core.texture_synth import synthesize

ROOT = Path(__file__).resolve().parents[1]
GAP = 8


def sheet(photos: list[Path], side: int, seed: int) -> Image.Image:
    rows = []
    for path in photos:
        exemplar = load_rgb(path)
        image = synthesize(exemplar, side, side, seed=seed, tileable=True).image
        tiled = np.tile(image, (2, 2, 1))
        height = max(exemplar.shape[0], tiled.shape[0])
        width = exemplar.shape[1] + image.shape[1] + tiled.shape[1] + 2 * GAP
        row = np.ones((height, width, 3), np.float32)
        x = 0
        for part in (exemplar, image, tiled):
            row[: part.shape[0], x: x + part.shape[1]] = part
            x += part.shape[1] + GAP
        rows.append((path.stem, row))
        print(path.stem, flush=True)
    width = max(r.shape[1] for _, r in rows)
    canvas = Image.new("RGB", (width, sum(r.shape[0] + GAP + 14 for _, r in rows)), "white")
    draw = ImageDraw.Draw(canvas)
    y = 0
    for name, row in rows:
        draw.text((2, y), f"{name}: exemplar | synthesized {side}px (seed {seed}) | tiled 2x2", fill="black")
        canvas.paste(Image.fromarray((np.clip(row, 0, 1) * 255 + 0.5).astype(np.uint8)), (0, y + 14))
        y += row.shape[0] + GAP + 14
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", default="measure", choices=["measure", "validate", "tune"])
    parser.add_argument("--side", type=int, default=256)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "synth_measure_sheet.jpg")
    args = parser.parse_args()
    photos = sorted((ROOT / "data" / "texture_photos").glob(f"{args.set}_*.jpg"))
    sheet(photos, args.side, args.seed).save(args.out, quality=80)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
