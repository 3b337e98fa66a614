"""README grid: a real photograph and a held-out render, stylized by every path.

Columns: the input, every bundled fast style model, AdaIN with every painting
(Composition VII was held out of the decoder's training), and optimisation
with Starry Night. Writes ``docs/images/style_grid.jpg``; its cell images go
to a temporary folder.

    python tools/style_grid.py [--out docs/images/style_grid.jpg] [--cell 256]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_style import BUNDLED, paintings, real_inputs  # noqa: E402
from core.common.images import save_image  # noqa: E402
from core.style import StyleModel, stylize_optimize  # noqa: E402
from core.style.adain import default_decoder_path, load_adain_model  # noqa: E402
from tools.contact_sheet import contact_sheet  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "style_grid.jpg")
    parser.add_argument("--cell", type=int, default=256)
    args = parser.parse_args(argv)
    works = paintings()
    if not works:
        sys.exit("style_grid: data/paintings is missing")
    fast = [(p.stem, StyleModel.load(p)) for p in sorted(BUNDLED.glob("*.safetensors")) if p.stem in works]
    adain = load_adain_model(default_decoder_path()) if default_decoder_path().exists() else None
    items: list[tuple[str, Path]] = []
    with tempfile.TemporaryDirectory() as tmp:
        def cell(label: str, rgb: np.ndarray) -> None:
            path = Path(tmp) / f"{len(items):03d}.png"
            save_image(path, np.clip(rgb, 0, 1))
            items.append((label, path))

        for name, painting in works.items():
            cell(f"painting: {name}", painting)
        for _ in range(len(fast) + (len(works) if adain else 0) + 2 - len(works)):
            cell("", np.full((8, 8, 3), 0.094, np.float32))  # pad the painting row
        for kind, frame in real_inputs(quick=False).items():
            cell(f"{kind} (input)", frame)
            for name, model in fast:
                cell(f"fast: {name}", model.stylize(frame))
            if adain is not None:
                for name, painting in works.items():
                    held = " (unseen)" if name == "composition_vii" else ""
                    cell(f"AdaIN: {name}{held}", adain.stylize(frame, painting))
            cell("optimisation: starry_night", stylize_optimize(frame, works["starry_night"]))
        columns = len(fast) + (len(works) if adain else 0) + 2
        contact_sheet(items, args.out.with_suffix(".png"), cell=args.cell, columns=columns)
    from PIL import Image
    with Image.open(args.out.with_suffix(".png")) as im:
        im.convert("RGB").save(args.out, quality=88)
    args.out.with_suffix(".png").unlink()
    print(f"style_grid: wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
