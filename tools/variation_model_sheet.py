"""The README's picture of *Train From Image* for a Variation Model: per photograph, a crop of it, then variations
by the panel's recipe (the bundled pair fine-tuned, ``core/texture_vae/from_image.py``) and by the plain recipe
trained as long (the bench's comparison, ``benchmarks/bench_texture_vae.py``).

    PYTHONPATH=. .venv/bin/python tools/variation_model_sheet.py [--work bench_output/texture_vae/texture_vae]
        [--photos validate_ground_dry ...] [--steps 400] [--out docs/images/variation_model_from_image.jpg]

Models already in ``--work`` (the bench's, same names) are reused: both recipes resume to the same step count, so
nothing trains again; missing ones are trained here (the plain one for ``--plain-steps``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_texture_vae import FROM_IMAGE_PHOTOS, FROM_IMAGE_STEPS  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=ROOT / "bench_output" / "texture_vae" / "texture_vae")
    parser.add_argument("--photos", nargs="+", default=list(FROM_IMAGE_PHOTOS))
    parser.add_argument("--steps", type=int, default=FROM_IMAGE_STEPS)
    parser.add_argument("--plain-steps", type=int, default=1000, help="the plain recipe's steps when not in --work")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--cell", type=int, default=192)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "variation_model_from_image.jpg")
    args = parser.parse_args(argv)

    from PIL import Image, ImageDraw

    from core.common.images import load_rgb, resize_rgb
    from core.texture_vae import load_texture_vae, train_texture_vae
    from core.texture_vae.from_image import train_variation_model
    from core.texture_vae.jobs import DEFAULT_REFINE_STEPS
    from tools.eval_materials import VARY_STRENGTH, crops

    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.photos:
        photo = ROOT / "data" / "texture_photos" / f"{name}.jpg"
        exemplar = load_rgb(photo)
        tuned, plain = args.work / f"from_image_{name}.safetensors", args.work / f"plain_{name}.safetensors"
        if not tuned.is_file():
            train_variation_model([photo], tuned, args.steps, seed=0)
        if not plain.is_file():
            train_texture_vae([photo], plain, args.plain_steps, seed=0)
        size = min(256, min(exemplar.shape[:2]) // 2)
        source = crops(exemplar, size, 1, 7)[0]  # the bench's crop
        cells = [source]
        for path in (tuned, plain):
            model = load_texture_vae(path, "cpu")
            cells += [model.vary(source, VARY_STRENGTH, seed=s, refine_steps=DEFAULT_REFINE_STEPS)
                      for s in range(args.seeds)]
        rows.append([np.clip(resize_rgb(c, args.cell, args.cell), 0, 1) for c in cells])
        print(name, "done", flush=True)
    cell, label_h, gap = args.cell, 22, 6
    columns = len(rows[0])
    sheet = Image.new("RGB", (columns * cell + 2 * gap, label_h + len(rows) * cell), "white")
    draw = ImageDraw.Draw(sheet)
    titles = ["photo crop"] + [f"fine-tuned pair, seed {s}" for s in range(args.seeds)] + \
             [f"plain VAE, seed {s}" for s in range(args.seeds)]
    for i, title in enumerate(titles):
        x = i * cell + (gap if i > 0 else 0) + (gap if i > args.seeds else 0)
        draw.text((x + 4, 5), title, fill="black")
    for r, row in enumerate(rows):
        for i, image in enumerate(row):
            x = i * cell + (gap if i > 0 else 0) + (gap if i > args.seeds else 0)
            sheet.paste(Image.fromarray((image * 255 + 0.5).astype(np.uint8)), (x, label_h + r * cell))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, quality=88)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
