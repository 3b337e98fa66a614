"""README grid: a real photograph and a held-out render, stylized by every path.

Columns: the input, every style of the bundled multi-style network (or the
older per-style models when it is not shipped), AdaIN (*Any Painting, Fast*)
with two paintings held out of its decoder's training, and optimisation
(*Any Painting, Best*) with Starry Night. The first row shows the painting
behind each column. Writes ``docs/images/style_grid.jpg``.

    python tools/style_grid.py [--out docs/images/style_grid.jpg] [--cell 256]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_style import BUNDLED, paintings, real_inputs  # noqa: E402
from core.common.images import save_image  # noqa: E402
from core.style import StyleModel, stylize_optimize  # noqa: E402
from core.style.adain import default_decoder_path, load_adain_model  # noqa: E402
from core.style.multistyle import MultiStyleModel, default_multistyle_path  # noqa: E402
from tools.contact_sheet import contact_sheet  # noqa: E402

Column = tuple[str, str, Callable[[np.ndarray], np.ndarray]]  # (label, painting name, frame -> stylized)


def columns(works: dict[str, np.ndarray]) -> list[Column]:
    cols: list[Column] = []
    if default_multistyle_path().exists():
        multi = MultiStyleModel.load(default_multistyle_path())
        for style in multi.styles:
            cols.append((f"fast: {style.get('label', style['name'])}", Path(style.get("painting", "")).stem,
                         lambda f, n=style["name"]: multi.stylize(f, n)))
    else:
        for p in sorted(BUNDLED.glob("*.safetensors")):
            if p.stem in works:
                model = StyleModel.load(p)
                cols.append((f"fast: {p.stem}", p.stem, model.stylize))
    if default_decoder_path().exists():
        adain = load_adain_model(default_decoder_path())
        unseen = [n for n in adain.config.get("held_out_paintings", []) if n in works][:2]
        for name in unseen:
            cols.append((f"AdaIN: {name} (unseen)", name, lambda f, n=name: adain.stylize(f, works[n])))
    cols.append(("optimisation: starry_night", "starry_night",
                 lambda f: stylize_optimize(f, works["starry_night"])))
    return cols


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "style_grid.jpg")
    parser.add_argument("--cell", type=int, default=256)
    args = parser.parse_args(argv)
    works = paintings()
    if not works:
        sys.exit("style_grid: data/paintings is missing")
    cols = columns(works)
    items: list[tuple[str, Path]] = []
    with tempfile.TemporaryDirectory() as tmp:
        def cell(label: str, rgb: np.ndarray) -> None:
            path = Path(tmp) / f"{len(items):03d}.png"
            save_image(path, np.clip(rgb, 0, 1))
            items.append((label, path))

        cell("", np.full((8, 8, 3), 0.094, np.float32))
        for _, painting, _ in cols:
            cell(f"painting: {painting}", works.get(painting, np.full((8, 8, 3), 0.094, np.float32)))
        for kind, frame in real_inputs(quick=False).items():
            cell(f"{kind} (input)", frame)
            for label, _, stylize in cols:
                cell(label, stylize(frame))
        contact_sheet(items, args.out.with_suffix(".png"), cell=args.cell, columns=len(cols) + 1)
    from PIL import Image
    with Image.open(args.out.with_suffix(".png")) as im:
        im.convert("RGB").save(args.out, quality=88)
    args.out.with_suffix(".png").unlink()
    print(f"style_grid: wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
