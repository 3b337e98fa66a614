"""Contact sheet of instant synthesis on the measuring photographs: exemplar | output | output tiled 2x2.

    python -m tools.synth_measure_sheet [--set measure|validate|tune|bundled] [--side 256] [--out docs/images/synth_measure_sheet.jpg]

One row per photograph of data/texture_photos/ in the chosen set (``bundled``: the exemplars in
models/exemplars/, photographs then renders), every image at native scale by default (no resampling), so
courses, mortar lines and stone outlines can be judged as they are. The README's overview sheet:

    python -m tools.synth_measure_sheet --set bundled --side 512 --scale 0.5 --tile-scale 0.5 \
        --out docs/images/synth_sheet.jpg
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


def _scaled(rgb: np.ndarray, factor: float) -> np.ndarray:
    if factor == 1:
        return rgb
    image = Image.fromarray((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8))
    size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    return np.asarray(image.resize(size, Image.LANCZOS), np.float32) / 255.0


def sheet(photos: list[Path], side: int, seed: int, scale: float = 1.0, tile_scale: float = 1.0) -> Image.Image:
    """``scale``: every image resized by it for display; ``tile_scale``: the 2x2 tiling further resized."""
    rows = []
    for path in photos:
        source = load_rgb(path)
        image = synthesize(source, side, side, seed=seed, tileable=True).image
        tiled = _scaled(np.tile(image, (2, 2, 1)), scale * tile_scale)
        exemplar, image = _scaled(source, scale), _scaled(image, scale)
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
        shown = "" if scale * tile_scale == 1 else f" at {scale * tile_scale:g}x"
        draw.text((2, y), f"{name}: exemplar | synthesized {side}px (seed {seed}) | tiled 2x2{shown}", fill="black")
        canvas.paste(Image.fromarray((np.clip(row, 0, 1) * 255 + 0.5).astype(np.uint8)), (0, y + 14))
        y += row.shape[0] + GAP + 14
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", default="measure", choices=["measure", "validate", "tune", "bundled"])
    parser.add_argument("--side", type=int, default=256)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scale", type=float, default=1.0, help="display scale of every image (1 = native)")
    parser.add_argument("--tile-scale", type=float, default=1.0, help="the 2x2 tiling's further display scale")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "synth_measure_sheet.jpg")
    args = parser.parse_args()
    if args.set == "bundled":
        folder = ROOT / "models" / "exemplars"
        photos = sorted(folder.glob("photo_*.png")) + sorted(folder.glob("render_*.png"))
    else:
        photos = sorted((ROOT / "data" / "texture_photos").glob(f"{args.set}_*.jpg"))
    sheet(photos, args.side, args.seed, args.scale, args.tile_scale).save(args.out, quality=80)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
