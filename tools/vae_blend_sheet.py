"""The README's blend figure: the bundled materials VAE blending pairs of its materials, evenly and through a mask.

    PYTHONPATH=. .venv/bin/python tools/vae_blend_sheet.py [--vae models/texture_vae/materials.safetensors]
                                                           [--cell 160] [--refine-steps 30] [--out docs/images/vae_blend.jpg]

One row per pair: texture A | texture B | A with B through a round mask | the even blend (t = 0.5) | the same mask
blend by the previous bundled VAE (``models/texture_vae/previous``, the plain VAE it replaced), when present.
A and B are crops of the materials' exemplars; the blends use the panel's default Refine Steps. About a minute on
a 2-core CPU.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PAIRS = (("oa_cracked_ground", "oa_stone_bricks"), ("photo_grass", "photo_gravel"),
         ("render_rusty_metal", "render_cobblestones"))
PREVIOUS = ROOT / "models" / "texture_vae" / "previous" / "materials.safetensors"


def round_mask(side: int) -> np.ndarray:
    """1 inside a soft disc of half the side's diameter, 0 outside (the blend's B region)."""
    yy, xx = np.mgrid[0:side, 0:side] + 0.5
    r = np.hypot(yy - side / 2, xx - side / 2) / (side / 4)
    return np.clip(1.5 - r, 0.0, 1.0).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    from PIL import Image

    from core.texture_vae import load_texture_vae
    from core.texture_vae.jobs import DEFAULT_REFINE_STEPS
    from tools.model_quality import crops
    from tools.zoo.gan import MATERIALS, load_materials

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vae", type=Path, default=ROOT / "models" / "texture_vae" / "materials.safetensors")
    parser.add_argument("--cell", type=int, default=160)
    parser.add_argument("--refine-steps", type=int, default=DEFAULT_REFINE_STEPS)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "vae_blend.jpg")
    args = parser.parse_args(argv)

    vae = load_texture_vae(args.vae, "cpu")
    previous = load_texture_vae(PREVIOUS, "cpu") if PREVIOUS.is_file() else None
    exemplars = dict(zip([m[0] for m in MATERIALS], load_materials(MATERIALS, None)))
    mask, rows = round_mask(args.cell), []
    for a_name, b_name in PAIRS:
        a, b = (crops(exemplars[n], args.cell, 1, 7)[0] for n in (a_name, b_name))
        cells = [a, b, vae.blend([a, b], mask=mask, refine_steps=args.refine_steps),
                 vae.blend([a, b], t=0.5, refine_steps=args.refine_steps)]
        if previous is not None:
            cells.append(previous.blend([a, b], mask=mask, refine_steps=args.refine_steps))
        rows.append(np.concatenate([np.asarray(c, np.float32)[:args.cell, :args.cell] for c in cells], axis=1))
        print(f"{a_name} + {b_name}", flush=True)
    sheet = (np.clip(np.concatenate(rows, axis=0), 0, 1) * 255 + 0.5).astype(np.uint8)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).save(args.out, quality=88)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
