"""Style transfer benchmark: feed-forward speed, tiling, optimisation, flicker.

Every row has a baseline measured in the same run:

* feed-forward stylization per size (512, 1080p, 4K; fp16 on CUDA) vs a
  bicubic 2x down/up resize of the same frame (a trivial full-frame pass);
* tiled (shared norm statistics) vs untiled difference, vs naive tiling with
  per-tile instance norm;
* optimisation time per frame vs one feed-forward pass at the same size, and
  its style-statistics distance vs the unstylized frame's;
* flicker (warping error with the known motion) of a temporally consistent
  sequence vs plain per-frame stylization, with known and estimated motion.

A small model is trained briefly inside the bench (timings do not depend on
how well it is trained; flicker needs it to actually stylize).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from core.common.images import from_tensor, load_rgb, resize_rgb, to_tensor
from core.common.procedural import make_exemplar
from core.common.quality import texture_stats_distance
from core.style import StyleModel, StyleTransferConfig, flicker, stylize_optimize, stylize_sequence, train_style_model
from core.style.data import render_like_scene
from core.style.tiling import stylize_tiled

from .report import BenchContext, time_call

FAMILY = "style"
STYLES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "styles"


def _style_image() -> np.ndarray:
    path = STYLES / "starry_night.jpg"
    if path.exists():
        return load_rgb(path)
    return make_exemplar("rust", 256, 0)  # no shared data: still measures everything


def _frame(width: int, height: int) -> np.ndarray:
    base = render_like_scene(256, 3)
    return np.clip(resize_rgb(base, width, height), 0, 1)


def run(ctx: BenchContext) -> None:
    cuda = ctx.device.type == "cuda"
    work = Path(ctx.work_dir) / "style"
    work.mkdir(parents=True, exist_ok=True)
    style = _style_image()

    # ------------------------------------------------------------ a briefly trained model
    steps = 15 if ctx.quick else (400 if cuda else 150)
    cfg = StyleTransferConfig(image_size=64 if ctx.quick else 128, batch_size=2 if ctx.quick else 4,
                              style_size=128 if ctx.quick else 256, generated_frames=8 if ctx.quick else 24)
    model_path = train_style_model(style, None, work / "bench_style.safetensors", steps, config=cfg,
                                   device=ctx.device, resume=False, checkpoint_every=10 ** 9)
    model = StyleModel.load(model_path, ctx.device)

    # ------------------------------------------------------------ feed-forward speed
    sizes = [("256", 256, 256)] if ctx.quick else \
        [("512", 512, 512), ("1080p", 1920, 1080), ("4K", 3840, 2160)]
    for label, w, h in sizes:
        x = to_tensor(_frame(w, h)).to(ctx.device)
        repeats = 5 if cuda else (2 if w * h > 1e6 else 3)
        seconds = time_call(lambda: model.stylize_tensor(x), ctx.device, repeats=repeats)
        base = time_call(lambda: F.interpolate(F.interpolate(x, scale_factor=0.5, mode="bicubic"),
                                               size=(h, w), mode="bicubic"), ctx.device, repeats=repeats)
        ctx.add(family=FAMILY, name=f"feed-forward stylize {label}" + (" fp16" if cuda else ""), value=seconds * 1e3,
                unit="ms", baseline_name="bicubic 2x down/up", baseline_value=base * 1e3,
                target="1080p < 20 ms on H100" if label == "1080p" else "",
                note=f"{sum(p.numel() for p in model.net.parameters()) / 1e6:.2f} M params")

    # ------------------------------------------------------------ tiles
    tw, th = (256, 192) if ctx.quick else (1920, 1080)
    tile = 128 if ctx.quick else 512
    x = to_tensor(_frame(tw, th)).to(ctx.device)
    full = from_tensor(model.stylize_tensor(x))
    tiled = from_tensor(model.stylize_tensor(x, tile_size=tile))
    naive = torch.zeros_like(x, dtype=torch.float32)
    with torch.no_grad():
        for y0 in range(0, th, tile):
            for x0 in range(0, tw, tile):
                naive[..., y0:y0 + tile, x0:x0 + tile] = model.net(x[..., y0:y0 + tile, x0:x0 + tile]).float()
    ctx.add(family=FAMILY, name=f"tiled vs untiled {tw}x{th}, {tile}px tiles", value=float(np.abs(tiled - full).mean()),
            unit="mean abs", baseline_name="naive per-tile instance norm",
            baseline_value=float(np.abs(from_tensor(naive) - full).mean()),
            note="stats from the frame downscaled to 1024 px")

    # ------------------------------------------------------------ optimisation
    side = 96 if ctx.quick else 256
    opt_steps = 10 if ctx.quick else 200
    content = _frame(side, side)
    holder = {}

    def optimise():
        holder["out"] = stylize_optimize(content, style, steps=opt_steps, max_side=side, device=ctx.device)

    seconds = time_call(optimise, ctx.device, repeats=1, warmup=0)
    xs = to_tensor(content).to(ctx.device)
    base = time_call(lambda: model.stylize_tensor(xs), ctx.device)
    ctx.add(family=FAMILY, name=f"optimisation {side}px, {opt_steps} steps", value=seconds, unit="s",
            baseline_name="one feed-forward pass", baseline_value=base)
    small_style = np.clip(resize_rgb(style, side, round(side * style.shape[0] / style.shape[1])), 0, 1)
    ctx.add(family=FAMILY, name="optimisation style distance", value=texture_stats_distance(holder["out"], small_style),
            unit="swd", baseline_name="unstylized frame", baseline_value=texture_stats_distance(content, small_style))

    # ------------------------------------------------------------ flicker
    n, size, shift = (4, 64, 3) if ctx.quick else (16, 256, 3)
    big = make_exemplar("stones", size + n * shift + 8, 2)
    frames = [np.ascontiguousarray(big[:size, i * shift: i * shift + size]) for i in range(n)]
    flow = np.zeros((size, size, 2), np.float32)
    flow[..., 0] = shift
    flows = [None] + [flow] * (n - 1)
    per_frame = [model.stylize(f) for f in frames]
    baseline = flicker(per_frame, flows)
    known = list(stylize_sequence(model, frames, flows))
    estimated = list(stylize_sequence(model, frames, None))
    ctx.add(family=FAMILY, name="flicker, temporal (known flow)", value=flicker(known, flows), unit="warp err",
            baseline_name="per-frame stylization", baseline_value=baseline, note=f"{n} frames, {shift}px/frame pan")
    ctx.add(family=FAMILY, name="flicker, temporal (estimated flow)", value=flicker(estimated, flows),
            unit="warp err", baseline_name="per-frame stylization", baseline_value=baseline)
