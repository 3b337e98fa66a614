"""Choose each fast style's palette strength on validation frames (never the bench's held-out photo and render).

    .venv/bin/python tools/render_content_frames.py --count 1 --seed 9001 --out /tmp/val9001
    .venv/bin/python tools/render_content_frames.py --count 1 --seed 9003 --out /tmp/val9003
    PYTHONPATH=. .venv/bin/python tools/choose_palette_strength.py --styles udnie street_berlin starry_night \\
        --frames /tmp/val9001/render_000.jpg /tmp/val9003/render_000.jpg /tmp/val9001/photo_astronaut.jpg \\
                 /tmp/val9001/photo_hubble_deep_field.jpg /tmp/val9001/photo_coffee.jpg /tmp/val9001/photo_rocket.jpg

(the fifteenth session's validation set: two Cycles renders of seeds outside the training renders, the astronaut,
which no training sees, and three scikit-image photos that are among the training content, the Hubble deep field
the one dark frame). For every style and strength it prints, per frame, the bench's measures (style-distance cut,
content distance, grain gain; ``tools.model_quality``, ``core.common.quality.grain_gain``) and then the choice
(``choose``): of the strengths at which every frame keeps the content and grain targets, the one with the highest
worst cut (equal to a tenth of a point: the higher next-worst cut). Write the choice into
``MultiStyleRecipe.style_palette_strengths`` and rewrite the model file (``build.py models --only styles
--minutes 0``); then judge it once on the bench's frames (``eval_fast_styles.py``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tools.model_quality import CONTENT_TARGET, GRAIN_TARGET  # noqa: E402

TIE = 0.001  # cuts equal to a tenth of a point are a tie


def choose(rows: dict[float, list[dict]]) -> tuple[float, bool]:
    """(strength, feasible) from ``{strength: [{"cut", "content", "grain"} per frame]}``: the highest worst cut
    among the strengths that keep every frame within the content and grain targets (ties: the higher next-worst
    cut, then the lower strength); ``feasible`` False when none does, and the highest worst cut of all is chosen."""
    if not rows or any(not frames for frames in rows.values()):
        raise ValueError("choose needs at least one frame per strength")

    def keeps(frames: list[dict]) -> bool:
        return all(f["content"] <= CONTENT_TARGET and f["grain"] <= GRAIN_TARGET for f in frames)

    feasible = [s for s, frames in rows.items() if keeps(frames)]
    candidates = feasible or list(rows)

    def rank(strength: float) -> tuple:
        cuts = sorted(f["cut"] for f in rows[strength])
        return tuple(round(c / TIE) for c in cuts[:2]) + (-strength,)

    return max(candidates, key=rank), bool(feasible)


def measure_strengths(model, name: str, frames: dict[str, np.ndarray], strengths: Sequence[float],
                      judge) -> dict[float, list[dict]]:
    from core.common.quality import grain_gain
    from tools.model_quality import measure, painting

    work = painting(next(s for s in model.styles if s["name"] == name)["painting"])
    rows: dict[float, list[dict]] = {}
    for strength in strengths:
        rows[strength] = []
        for frame in frames.values():
            out = model.stylize(frame, name, palette_strength=strength)
            row = measure(judge, out, frame, work, name)
            grain = grain_gain(lambda f: model.stylize(np.clip(f, 0, 1), name, palette_strength=strength), frame,
                               clean=out)
            rows[strength].append({"cut": row["cut"], "content": row["content"], "grain": grain})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "models" / "training" / "fast_styles.safetensors"))
    parser.add_argument("--styles", nargs="+", required=True, metavar="NAME")
    parser.add_argument("--frames", nargs="+", required=True, metavar="IMAGE",
                        help="validation images (never the bench's held-out photo or render)")
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5])
    parser.add_argument("--size", type=int, default=512, help="longer side of the frames (the bench: 512)")
    args = parser.parse_args(argv)
    held_out = {p.name for p in (ROOT / "benchmarks" / "data").glob("*")}
    if any(Path(f).name in held_out for f in args.frames):
        parser.error("the bench's held-out frames are for judging, not for choosing; pass validation frames")
    from core.common.images import load_rgb
    from core.style.multistyle import load_multistyle_model
    from core.style.optimize import fit_max_side
    from tools.model_quality import Judge

    model = load_multistyle_model(args.model, "cpu")
    unknown = [n for n in args.styles if n not in model.style_names]
    if unknown:
        parser.error(f"{', '.join(unknown)}: not styles of {args.model} ({', '.join(model.style_names)})")
    frames = {Path(f).parent.name + "/" + Path(f).stem: fit_max_side(load_rgb(f), args.size) for f in args.frames}
    judge = Judge()
    print(f"# {args.model}: {model.config.get('steps_done')} steps; cut / content / grain gain per frame: "
          + ", ".join(frames))
    for name in args.styles:
        rows = measure_strengths(model, name, frames, args.strengths, judge)
        for strength, cells in rows.items():
            print(f"{name:30} {strength:4.2f}: " + " | ".join(
                f"{100 * c['cut']:5.1f}% {c['content']:.3f} {c['grain']:.2f}" for c in cells), flush=True)
        chosen, feasible = choose(rows)
        worst = min(c["cut"] for c in rows[chosen])
        print(f"{name}: palette strength {chosen:g} (worst cut {100 * worst:.1f} %"
              + ("" if feasible else "; no strength keeps every frame within the content and grain targets") + ")")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
