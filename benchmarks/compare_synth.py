"""Before/after on the texture photographs: this checkout's synthesizer against another checkout's, same run.

    python -m benchmarks.compare_synth --baseline-root /path/to/other/checkout [--set tune|measure|all]

Both synthesize a tileable 512 px texture of every photograph (seed 1); the VGG19 sliced-Wasserstein
distance of their crops to the photograph is divided by that of the photograph's own random crops, drawn
once and shared by both, so the two ratios differ only by the synthesizer. Writes the outputs and a
Markdown table under --out.
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from core.common.images import load_rgb, save_image
from core.common.quality import vgg_texture_distance
from core.texture_synth import synthesize

from .bench_texture_synth import _crops, crop_side, photographs


def _load_other(root: Path):
    """The other checkout's ``core`` package under the name ``core_baseline`` (it imports relatively)."""
    spec = importlib.util.spec_from_file_location("core_baseline", root / "core" / "__init__.py",
                                                  submodule_search_locations=[str(root / "core")])
    module = importlib.util.module_from_spec(spec)
    sys.modules["core_baseline"] = module
    spec.loader.exec_module(module)
    return importlib.import_module("core_baseline.texture_synth").synthesize


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-root", type=Path, required=True)
    parser.add_argument("--set", default="tune", help="comma-separated: tune, measure, bundled (or all)")
    parser.add_argument("--side", type=int, default=512)
    parser.add_argument("--crops", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("bench_output/compare_synth"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    before = _load_other(args.baseline_root.resolve())
    rows = []
    for name, kind, path in photographs(quick=False):
        wanted = set(args.set.split(","))
        group = "bundled" if path.suffix == ".png" else kind
        if "all" not in wanted and group not in wanted:
            continue
        exemplar = load_rgb(path)
        crop = crop_side(exemplar, args.side)
        rng = np.random.default_rng(0)
        own = float(np.mean([vgg_texture_distance(c, exemplar, seed=i)
                             for i, c in enumerate(_crops(exemplar, crop, args.crops, rng))]))
        row = [name, kind]
        for label, fn in (("before", before), ("after", synthesize)):
            cpu, wall = _cpu(), time.perf_counter()
            image = fn(exemplar, args.side, args.side, seed=1, tileable=True).image
            cpu, wall = _cpu() - cpu, time.perf_counter() - wall
            save_image(args.out / f"{name}_{label}.png", image)
            crops = _crops(image, crop, args.crops, np.random.default_rng(1))
            dist = float(np.mean([vgg_texture_distance(c, exemplar, seed=i) for i, c in enumerate(crops)]))
            row += [dist / own, cpu, wall]
        rows.append(row)
        print(f"{name:28s} before {row[2]:.2f}x ({row[3]:.1f} s CPU)  after {row[5]:.2f}x ({row[6]:.1f} s CPU)",
              flush=True)
    lines = ["| photograph | set | before: SW ratio | before: CPU s | after: SW ratio | after: CPU s |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r[0]} | {r[1]} | {r[2]:.2f} | {r[3]:.1f} | {r[5]:.2f} | {r[6]:.1f} |" for r in rows]
    (args.out / f"table_{args.set.replace(',', '_')}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"torch threads {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
