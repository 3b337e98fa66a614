"""AdaIN figures: style/content distances against the unstylized frame, 1024x768 time, side-by-side images.

    .venv/bin/python tools/adain_report.py [--model models/style/adain_decoder.safetensors] [--images docs/images]

For a real photograph and a Cycles render (models/content_frames) and two
paintings (Composition VII, held out of the decoder's training, and Starry
Night): ``style_distance`` to the painting and ``content_distance`` to the
input for the unstylized frame and for AdaIN at alpha 1, the same measures the
bench uses; plus the time to stylize a 1024x768 frame; and
``adain_<content>_<painting>.jpg`` side-by-sides (input | painting | AdaIN).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.common.images import load_rgb, resize_rgb  # noqa: E402
from core.common.quality import content_distance, style_distance  # noqa: E402
from core.style.adain import default_decoder_path, load_adain_model  # noqa: E402
from core.style.optimize import fit_max_side  # noqa: E402

FRAMES = ROOT / "models" / "content_frames"
STYLES = ROOT / "data" / "paintings"
CONTENTS = {"photo": FRAMES / "photo_chelsea.jpg", "render": FRAMES / "render_000.jpg"}
PAINTINGS = {"composition_vii": STYLES / "composition_vii.jpg", "starry_night": STYLES / "starry_night.jpg"}
MEASURE_SIDE = 384


def side_by_side(images: list[np.ndarray], height: int = 240) -> np.ndarray:
    cells = [np.clip(resize_rgb(im, max(1, round(im.shape[1] * height / im.shape[0])), height), 0, 1) for im in images]
    gap = np.ones((height, 4, 3), np.float32)
    return np.concatenate([c if i == 0 else np.concatenate([gap, c], axis=1) for i, c in enumerate(cells)], axis=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(default_decoder_path()))
    parser.add_argument("--images", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--timing-runs", type=int, default=2)
    args = parser.parse_args(argv)
    from PIL import Image

    model = load_adain_model(args.model, "cpu")
    args.images.mkdir(parents=True, exist_ok=True)
    results = {}
    for c_name, c_path in CONTENTS.items():
        content = fit_max_side(load_rgb(c_path), MEASURE_SIDE)
        for p_name, p_path in PAINTINGS.items():
            painting = fit_max_side(load_rgb(p_path), 512)
            out = model.stylize(content, painting, alpha=1.0)
            row = {"style_unstylized": style_distance(content, painting, MEASURE_SIDE),
                   "style_adain": style_distance(out, painting, MEASURE_SIDE),
                   "content_adain": content_distance(out, content, MEASURE_SIDE)}
            row["style_cut"] = 1.0 - row["style_adain"] / row["style_unstylized"]
            results[f"{c_name}/{p_name}"] = row
            print(f"{c_name:6s} {p_name:16s} style {row['style_unstylized']:.3f} -> {row['style_adain']:.3f} "
                  f"({100 * row['style_cut']:.0f}% cut), content {row['content_adain']:.3f}", flush=True)
            sheet = side_by_side([content, painting, out])
            target = args.images / f"adain_{c_name}_{p_name}.jpg"
            Image.fromarray((sheet * 255 + 0.5).astype(np.uint8)).save(target, quality=85)
    frame = np.clip(resize_rgb(load_rgb(CONTENTS["render"]), 1024, 768), 0, 1)
    painting = fit_max_side(load_rgb(PAINTINGS["starry_night"]), 512)
    model.stylize(frame[:256, :256], painting)  # warm-up
    times = []
    for _ in range(max(1, args.timing_runs)):
        start = time.perf_counter()
        model.stylize(frame, painting)
        times.append(time.perf_counter() - start)
    results["seconds_1024x768"] = {"median": statistics.median(times), "runs": times}
    print(f"1024x768: {statistics.median(times):.2f} s (median of {len(times)}; painting read at 512 px included)")
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
