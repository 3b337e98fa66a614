"""Fit the walls' noise filters onto a materials GAN file (``core/texture_gan/noise_filters.py``).

    PYTHONPATH=. .venv/bin/python tools/fit_noise_filters.py [FILE] [--steps N] [--seeds N]

FILE: the bundled ``models/texture_gan/materials.safetensors`` by default; ``tools/ship_materials.py`` runs this
on every GAN it ships, before measuring it. Per wall in ``tools.zoo.gan.COURSES``: fit (``fit_noise_filters``,
generator frozen; its recipe in ``RECIPES``, on canvases ``FIT_SCALES`` times the measuring size), then measure the
outputs with and without the filter on the bench's seeds and size (the VGG19 ratio to the exemplar's own crops and
the course regularity; for a wall fitted larger, also the regularity at the fit's size). A filter is kept only
where the courses run straighter by ``MIN_REGULARITY_GAIN`` where it was fitted (and no less straight at the bench's
size) and the ratio stays within ``RATIO_CEILING``, on the bench's seeds and on held-out ones (``pays``); a wall
the file already filters keeps its previous filter, measured beside the refit, unless the refit runs at least as
straight on both seed sets (``straighter_than``) or the previous one no longer pays. The kept filters are written
into the file (in its dtype) with their figures in its config. A wall whose outputs are too short for two of its
courses is skipped. About 20-40 minutes a wall on one core of a 2-core CPU (the fifty-first session, beside
other jobs: brick wall 37 min, stone bricks 19).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# The GAN target is 1.6; the ceiling leaves room for the scatter of eight seeds (0.1-0.15 on the walls).
RATIO_CEILING = 1.45
MIN_REGULARITY_GAIN = 0.05
# Per wall: its ``NoiseFilterRecipe`` fields where they differ from the recipe's defaults.
# - Brick wall: an 11 x 11 square at statistics weight 0.5 (the forty-ninth session's probes), fitted at twice the
#   measuring size since the fifty-first session, one output a step (at 512 px, seeds 100/200/300: regularity 0.62
#   /0.63/0.70 fitted at 256 px -> 0.70/0.68/0.72; at 1024 px 0.61 -> 0.69).
# - Stone bricks: the look gives way sooner (at weight 0.5 their ratio went 1.11 -> 1.54 in the forty-eighth
#   session's probe), so weight 2; their courses are short and offset, and a square kernel bought no straightness
#   on held-out seeds. A band 5 cells across the courses and 15 along them (fiftieth session, seeds 200-205:
#   regularity at 384 px 0.61 -> 0.74, at 768 px 0.55 -> 0.70), fitted on canvases twice the measuring size
#   (``FIT_SCALES``), one output a step for 200 steps to keep its cost that of the brick wall's fit.
RECIPES: dict[str, dict] = {"photo_brick": {"statistics_weight": 0.5, "batch": 1},
                            "oa_stone_bricks": {"statistics_weight": 2.0, "kernel": 15, "band": 5, "batch": 1,
                                                "steps": 200}}
# Per wall: the fit's canvas as a multiple of the measuring size (half the exemplar's side). At the measuring size
# the stone bricks' canvas is 12 cells, narrower than a 15-cell kernel: the filter wraps onto itself there, and a
# filter fitted to that torus did not straighten larger textures (fiftieth session: a 31-cell band fitted at 192 px,
# 0.55 -> 0.66 at 192 px, 0.61 -> 0.59 at 384 px). Such a wall's courses are also measured at the fit's size, where
# the filter must pay; at the measuring size they must not lose.
FIT_SCALES: dict[str, int] = {"photo_brick": 2, "oa_stone_bricks": 2}


# The second set of seeds a filter must pay on: the bench draws seeds from 0, and keeping a filter on the seeds
# it is then reported on would pick their noise.
HELD_OUT_FIRST_SEED = 100


def measure(gan, name: str, exemplar, courses: tuple[int, int], seeds: int, first_seed: int = 0,
            scale: int = 1) -> dict:
    """The bench's figures of ``gan``'s ``name`` outputs (``seeds`` seeds from ``first_seed``, half the
    exemplar's side); with ``scale`` > 1 also the course regularity of outputs that many times larger
    (``regularity_at_fit_size``)."""
    import numpy as np

    from tools import model_quality as quality

    size = min(exemplar.shape[:2]) // 2
    judge, base = quality.texture_baseline(name, exemplar, size)
    outputs = [gan.generate(size, size, seed=first_seed + s, material=name) for s in range(seeds)]
    figures = {"ratio": float(np.mean([judge(o) for o in outputs])) / base,
               "regularity": float(np.mean([quality.course_regularity(o, (*courses, 0.0)) for o in outputs]))}
    if scale > 1:
        large = [gan.generate(size * scale, size * scale, seed=first_seed + s, material=name) for s in range(seeds)]
        figures["regularity_at_fit_size"] = float(np.mean([quality.course_regularity(o, (*courses, 0.0))
                                                           for o in large]))
    return figures


def pays(white: dict, filtered: dict) -> bool:
    """Whether a filter's figures on one seed set earn it its place: courses straighter by ``MIN_REGULARITY_GAIN``
    where it was fitted (and no less straight at the measuring size, when that differs), the ratio within
    ``RATIO_CEILING``."""
    if "regularity_at_fit_size" in white:
        straighter = (filtered["regularity_at_fit_size"] >= white["regularity_at_fit_size"] + MIN_REGULARITY_GAIN
                      and filtered["regularity"] >= white["regularity"])
    else:
        straighter = filtered["regularity"] >= white["regularity"] + MIN_REGULARITY_GAIN
    return straighter and filtered["ratio"] <= RATIO_CEILING


def straighter_than(previous: dict, refit: dict) -> bool:
    """Whether a refit's courses run at least as straight as the filter the file had, on one seed set, where
    the refit was fitted (the previous filter measured at the refit's size): a new recipe never costs the walls
    the straightness a shipped filter bought them."""
    key = "regularity_at_fit_size" if "regularity_at_fit_size" in refit else "regularity"
    return refit[key] >= previous[key]


def fit_file(path: Path, steps: int | None = None, seeds: int = 8, exemplar_side: int | None = None,
             only: list[str] | None = None, log=print) -> dict:
    """Fit, measure and keep the walls' filters of the materials GAN at ``path`` (rewritten in place); the
    filters' descriptions by material (kept or not). ``exemplar_side``: the exemplars scaled to it (tests);
    ``only``: these walls (the others' filters and descriptions stay as the file has them)."""
    from core.common.checkpoints import load_checkpoint, model_fields, save_checkpoint
    from core.texture_gan import TextureGenerator
    from core.texture_gan.fit_noise_filters import NoiseFilterRecipe, fit_noise_filter
    from core.texture_gan.generate import KIND
    from core.texture_gan.noise_filters import TENSOR_PREFIX
    from tools.zoo.gan import COURSES, MATERIALS, load_materials

    gan = TextureGenerator.load(path, "cpu")
    walls = [m for m in MATERIALS if m[0] in COURSES and m[0] in gan.materials and (only is None or m[0] in only)]
    # A wall fitted before is fitted again, from white noise; the others keep what the file has. A refitted wall's
    # previous filter is measured beside the refit and stays where it still pays and the refit is not straighter.
    refitted = {m[0] for m in walls}
    previous = {name: kernel for name, kernel in gan.noise_filters.items() if name in refitted}
    previous_described = dict(gan.config.get("noise_filters") or {})
    kept = {}  # the refitted walls' kept filters; the others' stay in the file as they are, bit for bit
    untouched = {key: {name: d for name, d in (gan.config.get(key) or {}).items() if name not in refitted}
                 for key in ("noise_filters", "noise_filters_tried")}
    described = {}  # the refitted walls' figures
    retained = {}  # walls whose previous filter stays: its description
    labels = ("", "held_out_")  # the bench's seeds, the held-out ones
    gan.noise_filters = {}
    for (name, _, _), exemplar in zip(walls, load_materials(walls, exemplar_side)):
        axis, period = COURSES[name]
        size = min(exemplar.shape[:2]) // 2
        if size < 2.5 * period:
            log(f"{name}: {size} px outputs are too short for courses every {period} px; no filter")
            continue
        recipe = NoiseFilterRecipe(**{**RECIPES.get(name, {}), **({} if steps is None else {"steps": steps})})
        scale = FIT_SCALES.get(name, 1)
        kernel = fit_noise_filter(gan, name, exemplar, axis, period, size * scale, recipe)
        arms = [("white", {}), ("filtered", {name: kernel})]
        if name in previous:
            arms.append(("previous", {name: previous[name]}))
        figures = {}
        for label, first in zip(labels, (0, HELD_OUT_FIRST_SEED)):
            for which, filters in arms:
                gan.noise_filters = filters
                figures[label + which] = measure(gan, name, exemplar, (axis, period), seeds, first, scale)
        gan.noise_filters = {}

        def paying(which: str) -> bool:
            return all(pays(figures[label + "white"], figures[label + which]) for label in labels)

        keep = paying("filtered") and not (
            name in previous and paying("previous")
            and not all(straighter_than(figures[label + "previous"], figures[label + "filtered"]) for label in labels))
        if not keep and name in previous and paying("previous"):
            retained[name] = previous_described.get(name, {"kept": True})
        described[name] = {"recipe": recipe.to_dict(), "fit_scale": scale, "seeds": seeds, "kept": keep,
                           **{k: {m: round(v, 4) for m, v in f.items()} for k, f in figures.items()}}
        for label in labels:
            white, filtered = figures[label + "white"], figures[label + "filtered"]
            large = (f", at {scale}x the size {white['regularity_at_fit_size']:.3f} -> "
                     f"{filtered['regularity_at_fit_size']:.3f}" if scale > 1 else "")
            log(f"{name}{' (held-out seeds)' if label else ''}: ratio {white['ratio']:.3f} -> "
                f"{filtered['ratio']:.3f}, course regularity {white['regularity']:.3f} -> "
                f"{filtered['regularity']:.3f}{large}")
            if name in previous:
                log(f"{name}{' (held-out seeds)' if label else ''}: the previous filter: "
                    + ", ".join(f"{m} {v:.3f}" for m, v in figures[label + "previous"].items()))
        log(f"{name}: {'kept' if keep else 'kept the previous filter' if name in retained else 'not kept'}")
        if keep:
            kept[name] = kernel
    tensors, config = load_checkpoint(path, expected_kind=KIND)
    tensors = {k: v for k, v in tensors.items() if not k.startswith(TENSOR_PREFIX)
               or k[len(TENSOR_PREFIX):] not in refitted or k[len(TENSOR_PREFIX):] in retained}
    dtype = next(v for k, v in tensors.items() if not k.startswith(TENSOR_PREFIX)).dtype
    tensors.update({TENSOR_PREFIX + name: kernel.to(dtype).contiguous() for name, kernel in kept.items()})
    config = model_fields(config)
    config["noise_filters"] = {**untouched["noise_filters"], **retained,
                               **{name: d for name, d in described.items() if d["kept"]}}
    config["noise_filters_tried"] = {**untouched["noise_filters_tried"],
                                     **{name: d for name, d in described.items() if not d["kept"]}}
    save_checkpoint(path, tensors, config, KIND)
    TextureGenerator.load(path, "cpu")  # what was written loads
    return described


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", type=Path, default=ROOT / "models" / "texture_gan" / "materials.safetensors")
    parser.add_argument("--steps", type=int, default=None, help="fitting steps per wall (default: the recipe's)")
    parser.add_argument("--seeds", type=int, default=8, help="outputs per wall for the before/after figures")
    parser.add_argument("--only", nargs="+", default=None, metavar="MATERIAL",
                        help="fit these walls only; the others keep the filters the file has")
    args = parser.parse_args(argv)
    fit_file(args.file, args.steps, args.seeds, only=args.only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
