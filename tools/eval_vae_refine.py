"""The materials VAE's variations with and without latent refinement, side by side (same crops, same seeds).

    PYTHONPATH=. .venv/bin/python tools/eval_vae_refine.py [--vae models/texture_vae/materials.safetensors]
        [--refine-steps 0 30] [--seeds 2] [--materials photo_grass oa_stone_bricks]

Per material and refinement setting: the bench's VAE figures (``tools/zoo/gan_vae.evaluate_file``): the VGG19
sliced-Wasserstein ratio of variations at strength 0.5 to the exemplar over its own crops' (target <= 1.6) and
their gradient energy over the crop's (>= 0.85). Refinement runs the decoder and VGG19 forward and backward per
step: about 0.5-1 s per step for a 256 px crop on one CPU core.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vae", type=Path, default=ROOT / "models" / "texture_vae" / "materials.safetensors")
    parser.add_argument("--refine-steps", type=int, nargs="+", default=[0, 30])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--materials", nargs="+", default=None, help="these materials only (default: all)")
    args = parser.parse_args(argv)
    from tools.zoo.gan_vae import evaluate_file

    results = {}
    for steps in args.refine_steps:
        start = time.perf_counter()
        results[steps] = evaluate_file(args.vae, seeds=args.seeds, refine_steps=steps, only=args.materials)
        print(f"# refine steps {steps}: score {results[steps]['score']:.3f}, {time.perf_counter() - start:.0f} s",
              flush=True)
    print("material              " + "".join(f"  ratio/energy @{k:<4}" for k in args.refine_steps))
    for i, row in enumerate(results[args.refine_steps[0]]["rows"]):
        if row.get("missing"):
            continue
        cells = [results[k]["rows"][i] for k in args.refine_steps]
        print(f"{row['material']:<22}" + "".join(f"  {c['ratio']:>6.2f} / {c['grad_energy']:.2f}     " for c in cells))
    print("targets: ratio <= 1.6, energy >= 0.85")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
