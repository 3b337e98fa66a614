"""Before/after on the texture photographs: this checkout's synthesizer against another checkout's, same run.

    python -m benchmarks.compare_synth --baseline-root /path/to/other/checkout [--set tune|measure|validate|bundled|all] [--seeds 1,2]

Both synthesize a tileable 512 px texture of every photograph (--seeds, default 1); the VGG19
sliced-Wasserstein distance of their crops to the photograph is divided by that of the photograph's own
random crops, drawn once and shared by both, so the ratios differ only by the synthesizer. A third column is
this checkout with the layout its "auto" did not pick, to show whether the pick was the better one. Writes
the outputs and a Markdown table under --out.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from core.common.images import load_rgb, save_image
from core.common.quality import vgg_texture_distance
from core.texture_synth import structure, synthesize

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


def _ratio(image: np.ndarray, exemplar: np.ndarray, crop: int, n_crops: int, own: float) -> float:
    crops = _crops(image, crop, n_crops, np.random.default_rng(1))
    return float(np.mean([vgg_texture_distance(c, exemplar, seed=i) for i, c in enumerate(crops)])) / own


def _picked_layout(exemplar: np.ndarray) -> str:
    """The layout this checkout's ``layout="auto"`` takes for the exemplar."""
    return structure.layout_for([structure.find_lattice(structure.flatten_lighting(exemplar)[0])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-root", type=Path, required=True)
    parser.add_argument("--set", default="tune", help="comma-separated: tune, measure, validate, bundled (or all)")
    parser.add_argument("--side", type=int, default=512)
    parser.add_argument("--crops", type=int, default=4)
    parser.add_argument("--only", default="", help="comma-separated photograph names (default: the whole set)")
    parser.add_argument("--seeds", default="1", help="comma-separated synthesis seeds; ratios are averaged")
    parser.add_argument("--out", type=Path, default=Path("bench_output/compare_synth"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    before = _load_other(args.baseline_root.resolve())
    seeds = [int(s) for s in args.seeds.split(",")]
    rows, ratios_all = [], {}
    for name, kind, path in photographs(quick=False):
        wanted = set(args.set.split(","))
        group = "bundled" if path.suffix == ".png" else kind
        if ("all" not in wanted and group not in wanted) or (args.only and name not in args.only.split(",")):
            continue
        exemplar = load_rgb(path)
        crop = crop_side(exemplar, args.side)
        rng = np.random.default_rng(0)
        own = float(np.mean([vgg_texture_distance(c, exemplar, seed=i)
                             for i, c in enumerate(_crops(exemplar, crop, args.crops, rng))]))
        picked = _picked_layout(exemplar)
        other = "sliced" if picked == "blocks" else "blocks"
        # before: the baseline's default; after: this checkout's default (auto); other: the layout auto left out.
        runs = (("before", before, {}), ("after", synthesize, {}), ("other", synthesize, {"layout": other}))
        ratios = {label: [] for label, _, _ in runs}
        cpus = {label: [] for label, _, _ in runs}
        for seed in seeds:
            done: list[tuple[np.ndarray, float]] = []
            for label, fn, kwargs in runs:
                cpu = _cpu()
                image = fn(exemplar, args.side, args.side, seed=seed, tileable=True, **kwargs).image
                cpus[label].append(_cpu() - cpu)
                save_image(args.out / f"{name}_{label}_s{seed}.png", image)
                # An identical image has the identical ratio (same crops, same seeds): measured once.
                same = [r for im, r in done if np.array_equal(im, image)]
                ratio = same[0] if same else _ratio(image, exemplar, crop, args.crops, own)
                done.append((image, ratio))
                ratios[label].append(ratio)
        ratios_all[name] = ratios
        row = [name, kind, picked] + [float(np.mean(ratios[k])) for k in ("before", "after", "other")]
        row += [float(np.mean(cpus[k])) for k in ("before", "after")]
        row += [" / ".join(f"{r:.2f}" for r in ratios["after"]), other]
        rows.append(row)
        (args.out / "rows.json").write_text(json.dumps({"seeds": seeds, "rows": rows, "ratios": ratios_all}))
        print(f"{name:28s} auto={picked:6s} before {row[3]:.2f}x  after {row[4]:.2f}x ({row[8]})  "
              f"{other} {row[5]:.2f}x  CPU s {row[6]:.1f} -> {row[7]:.1f}", flush=True)
    lines = ["| photograph | set | auto picks | before (main): SW ratio | after (auto): SW ratio | per seed "
             "| the other layout: SW ratio | before: CPU s | after: CPU s |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.2f} | {r[4]:.2f} | {r[8]} | {r[5]:.2f} ({r[9]}) | {r[6]:.1f} "
              f"| {r[7]:.1f} |" for r in rows]
    (args.out / f"table_{args.set.replace(',', '_')}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"torch threads {torch.get_num_threads()}, seeds {seeds}")


if __name__ == "__main__":
    main()
