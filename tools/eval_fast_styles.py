"""Quick verdict on the fast paths' latest checkpoints: are they good enough to ship?

    PYTHONPATH=. .venv/bin/python tools/eval_fast_styles.py [--out eval_fast_styles.png] [--size 512]
        [--styles models/training/fast_styles.safetensors] [--adain models/training/adain.safetensors]
        [--ship]

A fresh clone has only the committed training states: write the model files first with
``python build.py models --only adain styles --minutes 0`` (no training, a few seconds).

On the bench's held-out photograph (a city skyline) and held-out render
(benchmarks/data), prints for every style of the multi-style network and
for AdaIN with paintings outside its training set: the style-distance cut
against the unstylized frame (target >= 40 %) and the content distance
(target <= 1.0), the bench's measures (``core.common.quality``), then writes a
side-by-side grid PNG (rows: input, every style, AdaIN; columns: photo, render).
``--ship`` copies each model that meets every target into models/style/: every
bundled style on both frames; the AdaIN decoder over every painting its config
holds out (``adain_ships``).
About two minutes on a 2-core CPU (frames at 512 px, as in the bench).
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.common.images import load_rgb  # noqa: E402
from core.common.quality import lattice_line_share  # noqa: E402
from tools.model_quality import (CONTENT_TARGET, CUT_TARGET, Judge, held_out_inputs, measure,  # noqa: E402,F401
                                 meets_targets as _verdict)

PAINTINGS = ROOT / "data" / "paintings"
ADAIN_UNSEEN = ("starry_night", "the_kiss")
MIN_BUNDLED_STYLES = 6  # the floor for the bundled fast styles
# AdaIN is for any painting, so it is judged over all its held-out paintings rather than one or two: every one
# keeps the frame (content <= target on photo and render), the mean cut on each frame meets the target, and no
# painting is left nearly untouched (this floor).
ADAIN_CUT_FLOOR = 0.30
SHIPPED = {"styles": ROOT / "models" / "style" / "fast_styles.safetensors",
           "adain": ROOT / "models" / "style" / "adain_decoder.safetensors"}


def grid(rows: list[tuple[str, dict[str, np.ndarray]]], out: Path, height: int = 200) -> None:
    """One row per model (its label above), one column per held-out input."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=13) if hasattr(ImageFont, "load_default") else None
    kinds = list(rows[0][1])
    widths = {k: rows[0][1][k].shape[1] * height // rows[0][1][k].shape[0] for k in kinds}
    label_h = 18
    sheet = Image.new("RGB", (sum(widths.values()) + 4 * len(kinds), len(rows) * (height + label_h)), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    for i, (label, images) in enumerate(rows):
        y = i * (height + label_h)
        draw.text((4, y + 2), label[:60], fill=(235, 235, 235), font=font)
        x = 0
        for kind in kinds:
            im = Image.fromarray((np.clip(images[kind], 0, 1) * 255).astype(np.uint8))
            sheet.paste(im.resize((widths[kind], height), Image.LANCZOS), (x, y + label_h))
            x += widths[kind] + 4
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--styles", default=str(ROOT / "models" / "training" / "fast_styles.safetensors"))
    parser.add_argument("--adain", default=str(ROOT / "models" / "training" / "adain.safetensors"))
    parser.add_argument("--size", type=int, default=512, help="longer side of the held-out frames (the bench: 512)")
    parser.add_argument("--out", default=str(ROOT / "eval_fast_styles.png"))
    parser.add_argument("--ship", action="store_true", help="copy each model that meets every target to models/style")
    parser.add_argument("--frames", nargs="+", metavar="IMAGE",
                        help="judge on these images instead of the bench's held-out photo and render (e.g. a "
                             "validation set, to choose a setting without tuning on the bench's own inputs)")
    parser.add_argument("--palette-strength", type=float, default=None,
                        help="override the multi-style network's palette step (0: the network's own colours)")
    parser.add_argument("--paintings", nargs="+", metavar="NAME", default=list(ADAIN_UNSEEN),
                        help="AdaIN's paintings (data/paintings/NAME.jpg; default: %(default)s); 'held-out': every "
                             "painting the decoder's config names as held out of its training")
    parser.add_argument("--alpha", type=float, nargs="+", default=[1.0],
                        help="AdaIN style strengths to judge (one row per painting and strength; default 1.0)")
    parser.add_argument("--max-gain", type=float, nargs="+", default=None,
                        help="AdaIN gain limits to judge (one row per painting, strength and limit; default: the "
                             "core's DEFAULT_MAX_GAIN); choose one on --frames, never on the bench's inputs")
    args = parser.parse_args(argv)
    if args.ship and args.frames:
        parser.error("--ship judges on the bench's held-out inputs only; drop --frames")
    if args.ship and args.palette_strength is not None:
        parser.error("--ship bundles the model with its own palette strength; drop --palette-strength")
    if args.ship and args.paintings != list(ADAIN_UNSEEN):
        parser.error("--ship judges AdaIN on every painting its config holds out; drop --paintings")
    if args.ship and args.alpha != [1.0]:
        parser.error("--ship judges AdaIN at full strength (the bench's); drop --alpha")
    if args.ship and args.max_gain is not None:
        parser.error("--ship judges AdaIN at the core's gain limit (the panel's default); drop --max-gain")
    t0 = time.monotonic()
    if args.frames:
        from core.style.optimize import fit_max_side

        inputs = {Path(f).parent.name + "/" + Path(f).stem: fit_max_side(load_rgb(f), args.size) for f in args.frames}
    else:
        inputs = held_out_inputs(args.size)
    columns: list[tuple[str, dict]] = [("input", inputs)]
    passed_rows: dict[tuple[str, str], bool] = {}  # (model, style or painting): every input met the targets
    figures: dict[str, dict] = {"styles": {}, "adain": {}}
    thumbnails: dict[str, np.ndarray] = {}
    judge = Judge()
    print(f"{'model':8} {'style / painting':32} {'on':7} {'cut':>6} {'content':>8} {'grid %':>7}  verdict "
          f"(grid %: the spectrum's share on the 8-px lattice lines, quality.lattice_line_share)")
    for kind, frame in inputs.items():
        print(f"{'input':8} {'(the frame itself)':32} {kind:7} {'':6} {'':8} {lattice_line_share(frame):7.2f}")

    def report(model: str, name: str, outs: dict[str, np.ndarray], painting: np.ndarray) -> None:
        for kind, frame in inputs.items():
            row = measure(judge, outs[kind], frame, painting, name)
            ok = _verdict(row)
            passed_rows[(model, name)] = passed_rows.get((model, name), True) and ok
            figures[model].setdefault(name, {}).update({f"style_cut_{kind}": round(row["cut"], 3),
                                                        f"content_distance_{kind}": round(row["content"], 3)})
            print(f"{model:8} {name:32} {kind:7} {100 * row['cut']:5.0f}% {row['content']:8.3f} "
                  f"{lattice_line_share(outs[kind]):7.2f}  {'ok' if ok else 'MISSES'}", flush=True)
        columns.append((f"{model}: {name}", outs))

    if Path(args.styles).is_file():
        from core.style.multistyle import load_multistyle_model

        model = load_multistyle_model(args.styles, "cpu")
        print(f"# multi-style network: {model.config.get('steps_done')} steps ({args.styles})")
        for style in model.styles:
            painting = load_rgb(PAINTINGS / style["painting"])
            outs = {k: model.stylize(f, style["name"], palette_strength=args.palette_strength)
                    for k, f in inputs.items()}
            thumbnails[style["name"]] = outs["render"] if "render" in outs else next(iter(outs.values()))
            report("styles", style["name"], outs, painting)
    if Path(args.adain).is_file():
        from core.style.adain import load_adain_model

        model = load_adain_model(args.adain, "cpu")
        trained_on = set(model.config.get("paintings") or [])
        print(f"# AdaIN decoder: {model.config.get('steps_done')} steps ({args.adain})")
        names = args.paintings
        if names == ["held-out"] or args.ship:
            names = list(model.config.get("held_out_paintings") or ADAIN_UNSEEN)
        for name in names:
            if f"{name}.jpg" in trained_on:
                print(f"  (warning: {name} was in the decoder's training set)")
            painting = load_rgb(PAINTINGS / f"{name}.jpg")
            for alpha, gain in itertools.product(args.alpha, args.max_gain or [None]):
                label = (f"{name} (unseen)" + ("" if alpha == 1.0 else f" alpha {alpha:g}")
                         + ("" if gain is None else f" gain {gain:g}"))
                outs = {k: model.stylize(f, painting, alpha=alpha, **({} if gain is None else {"max_gain": gain}))
                        for k, f in inputs.items()}
                thumbnails.setdefault("adain", outs["render"] if "render" in outs else next(iter(outs.values())))
                report("adain", label, outs, painting)
    grid(columns, Path(args.out))
    print(f"grid: {args.out}; {time.monotonic() - t0:.0f} s")
    for model in dict.fromkeys(m for m, _ in passed_rows):
        rows = {name: good for (m, name), good in passed_rows.items() if m == model}
        ok, kept = all(rows.values()), [name for name, good in rows.items() if good]
        if model == "adain":
            ok = adain_ships(figures["adain"], list(inputs))
        # The multi-style network ships the styles that meet every target, when they are enough to bundle.
        partial = model == "styles" and not ok and len(kept) >= MIN_BUNDLED_STYLES
        print(f"{model}: {'meets every target' if ok else 'not yet'}"
              + (f"; {len(kept)} styles do ({', '.join(kept)})" if partial else ""))
        if (ok or partial) and args.ship:
            ship(model, Path(args.styles if model == "styles" else args.adain),
                 {n: f for n, f in figures[model].items() if ok or n in kept}, thumbnails, kept if partial else None)
    return 0


def adain_ships(figures: dict[str, dict], kinds: list[str]) -> bool:
    """The decoder's verdict over its held-out paintings (``ADAIN_CUT_FLOOR``); prints what it misses."""
    if not figures:
        return False
    misses = [f"{name} content {f[f'content_distance_{k}']:.2f} on the {k}" for name, f in figures.items()
              for k in kinds if f[f"content_distance_{k}"] > CONTENT_TARGET]
    for k in kinds:
        cuts = {name: f[f"style_cut_{k}"] for name, f in figures.items()}
        if sum(cuts.values()) / len(cuts) < CUT_TARGET:
            misses.append(f"mean cut {100 * sum(cuts.values()) / len(cuts):.0f} % on the {k}")
        misses += [f"{name} cut {100 * c:.0f} % on the {k}" for name, c in cuts.items() if c < ADAIN_CUT_FLOOR]
    print("adain over its held-out paintings: " + ("; ".join(misses) if misses else
          f"every content <= {CONTENT_TARGET}, mean cut >= {100 * CUT_TARGET:.0f} % on each frame, none under "
          f"{100 * ADAIN_CUT_FLOOR:.0f} %"))
    return not misses


def ship(model: str, source: Path, quality: dict, thumbnails: dict[str, np.ndarray],
         only_styles: list[str] | None = None) -> None:
    """Copy the checkpoint into models/style (float16; ``only_styles``: a file with just those styles) and record
    it in models/manifest.json (command, steps, time, machine)."""
    from PIL import Image

    from core.common.checkpoints import read_checkpoint_config
    from tools.half_models import halve
    from tools.model_zoo import _update_manifest

    target = SHIPPED[model]
    if model == "styles":
        from core.style.multistyle import load_multistyle_model, save_style_subset

        names = only_styles or load_multistyle_model(source, "cpu").style_names
        save_style_subset(source, target, names, half=True)
        thumbnails = {n: t for n, t in thumbnails.items() if n in names}
    else:
        shutil.copy2(source, target)
        shutil.copy2(source.with_suffix(".json"), target.with_suffix(".json"))
        halve(target)
        thumbnails = {n: t for n, t in thumbnails.items() if n == "adain"}  # the decoder's one picture
    config = read_checkpoint_config(target)
    history = config.get("history") or []
    # the add-on's library shows each bundled model's NAME.png (the multi-style file: one per style)
    for name, image in thumbnails.items():
        thumb = Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8))
        thumb.thumbnail((128, 128), Image.LANCZOS)
        thumb.save(target.with_name(f"{target.stem}_{name}.png") if model == "styles" else target.with_suffix(".png"))
    entry = {"name": "fast_styles" if model == "styles" else "adain_decoder",
             "label": "Bundled Styles" if model == "styles" else "Any Painting (Fast)",
             "kind": config.get("kind"), "file": target.relative_to(ROOT / "models").as_posix(),
             "command": f"python build.py models --only {model} --minutes N (resumed over {len(history)} session(s); "
                        f"tools/zoo/{model}.py)",
             "steps": config.get("steps_done"), "seed": config.get("seed"),
             "training_seconds": round(sum(h.get("seconds", 0.0) for h in history), 1),
             "trained_on": sorted({h.get("machine", "?") for h in history}),
             "sessions": [{k: h.get(k) for k in ("date", "start_step", "end_step", "seconds", "machine", "profile")}
                          for h in history],
             "data": ["data/content", "models/content_frames", "data/paintings"],
             "size_mb": round(target.stat().st_size / 1e6, 2),
             "quality": quality, "quality_measured_on": "held-out photo and render (benchmarks/data), 512 px"}
    if config.get("averaged_from"):  # a mean of checkpoints of this training (tools/average_checkpoints.py)
        entry["averaged_from"] = config["averaged_from"]
        entry["command"] += ("; then python tools/average_checkpoints.py with the checkpoints at "
                             + ", ".join(str(s["steps_done"]) for s in config["averaged_from"]) + " steps")
    if model == "styles":
        entry["styles"] = [s["name"] for s in config.get("styles") or []]
        left = (config.get("subset_of") or {}).get("styles") or []
        entry["styles_still_training"] = [n for n in left if n not in entry["styles"]]
    else:
        from core.style.adain import DEFAULT_MAX_GAIN
        entry["held_out_paintings"] = config.get("held_out_paintings")
        entry["quality_measured_with"] = {"alpha": 1.0, "max_gain": DEFAULT_MAX_GAIN}
    _update_manifest(ROOT / "models" / "manifest.json", entry)
    print(f"  shipped: {target.relative_to(ROOT)} (+ models/manifest.json entry {entry['name']!r})")


if __name__ == "__main__":
    raise SystemExit(main())
