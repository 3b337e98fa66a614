"""Render-farm benchmark: what chunking costs in flicker, and what Ray workers give in throughput.

``python build.py bench --only farm`` (CPU rows only; the sequence is rendered once by
tools/render_motion_sequence.py into build_cache/):

* flicker at chunk borders / flicker inside chunks (warped-frame error with the
  Vector pass, 4 chunks of 6 frames) per warm-up W, for each bundled fast style;
  baseline: the same ratio at the same frame pairs in the unchunked sequential
  run (what the shot itself gives there). Target: <= 1.10 at the default W.
* throughput: frames per second of N Ray workers (one CPU slot each, model loaded,
  started before the clock) against one process running the same chunks, in the
  same run, on the same 480x360 frames. Target on a 2-core machine: 2 workers >= 1.6x.
  The CPU is shared with whatever else runs on the machine: the row notes the load.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from core.common.images import load_image, resize_rgb, save_image, to_srgb
from core.style import StyleModel, flicker, stylize_sequence
from core.style.blender_passes import frames_with_flows, load_render_passes
from core.style.chunks import DEFAULT_WARMUP, StyleSpec, output_path, stylize_chunked

from .report import BenchContext

ROOT = Path(__file__).resolve().parents[1]
STYLES = ("wave", "starry_night")
CHUNK = 6  # border measure: 4 chunks of 6 frames
THROUGHPUT_FRAMES, THROUGHPUT_CHUNK = 48, 12  # throughput: 4 chunks of 12 (the warm-up costs W frames per chunk)


def _sequence(frames: int = 24) -> list[Path]:
    sys.path.insert(0, str(ROOT))
    from tools.render_motion_sequence import OUT, cached_sequence
    return cached_sequence(OUT if frames == 24 else OUT.with_name(f"orbit{frames}"), frames)


def _pair_errors(outs: list[np.ndarray], flows) -> dict[int, float]:
    return {i: flicker([outs[i - 1], outs[i]], [None, flows[i]]) for i in range(1, len(outs))}


def _ratio(errors: dict[int, float], chunk: int) -> tuple[float, float, float]:
    border = [e for i, e in errors.items() if i % chunk == 0]
    inside = [e for i, e in errors.items() if i % chunk != 0]
    return float(np.mean(border) / np.mean(inside)), float(np.mean(border)), float(np.mean(inside))


def bench_borders(ctx: BenchContext, files: list[Path]) -> None:
    flows = [load_render_passes(f)[1] for f in files]
    warmups = (0, DEFAULT_WARMUP) if ctx.quick else (0, 1, 2, 4, DEFAULT_WARMUP, 10)
    for style in STYLES[:1] if ctx.quick else STYLES:
        model = StyleModel.load(ROOT / "models" / "style" / f"{style}.safetensors", "cpu")
        frames, vector_flows = frames_with_flows(files)
        sequential = [to_srgb(r).rgb for r in stylize_sequence(model, frames, vector_flows)]
        base_ratio, _, _ = _ratio(_pair_errors(sequential, flows), CHUNK)
        for warmup in warmups:
            out = ctx.work_dir / f"borders_{style}_w{warmup}"
            shutil.rmtree(out, ignore_errors=True)
            stylize_chunked(model, files, out, chunk_size=CHUNK, warmup=warmup)
            outs = [to_srgb(load_image(output_path(out, f))).rgb for f in files]
            ratio, border, inside = _ratio(_pair_errors(outs, flows), CHUNK)
            ctx.add(family="farm", name=f"border/inside flicker W={warmup} ({style})", value=ratio, unit="ratio",
                    baseline_name="unchunked run, same pairs", baseline_value=base_ratio,
                    target="<= 1.10 at the default W" if warmup == DEFAULT_WARMUP else "",
                    note=f"border {border:.4f}, inside {inside:.4f}; {len(files)} frames in chunks of {CHUNK}")


def _big_sequence(files: list[Path], folder: Path, scale: int) -> tuple[list[Path], Path]:
    """The rendered frames upscaled (PNG) with their flows scaled to match (.npy): a heavier workload."""
    frames_dir, flows_dir = folder / "frames", folder / "flows"
    frames_dir.mkdir(parents=True, exist_ok=True)
    flows_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for f in files:
        image, flow = load_render_passes(f)
        srgb = to_srgb(image).rgb
        h, w = srgb.shape[:2]
        target = frames_dir / (f.stem + ".png")
        save_image(target, resize_rgb(srgb, w * scale, h * scale))
        if flow is not None:
            big = np.repeat(np.repeat(flow, scale, axis=0), scale, axis=1) * scale
            np.save(flows_dir / (f.stem + ".npy"), big.astype(np.float32))
        out.append(target)
    return out, flows_dir


def _load_average() -> str:
    try:
        one, five, _ = os.getloadavg()
        return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} CPUs"
    except OSError:
        return ""


SPIN = "import time; t = time.perf_counter(); x = sum(i * i for i in range({n})); print(time.perf_counter() - t)"


def machine_parallelism(workers: int, loops: int = 5_000_000) -> tuple[float, float]:
    """Throughput of ``workers`` concurrent CPU-bound processes / one alone (the machine's spare parallelism now).

    On an idle 2-core machine this is ~2; when other work saturates the CPUs, or the scheduler gives this
    session a fixed share (autogroup, cgroups), it drops towards 1 and no farm can beat it.
    """
    import subprocess
    command = [sys.executable, "-c", SPIN.format(n=loops)]
    t0 = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    one = time.perf_counter() - t0
    t0 = time.perf_counter()
    procs = [subprocess.Popen(command, stdout=subprocess.DEVNULL) for _ in range(workers)]
    for proc in procs:
        proc.wait()
    together = time.perf_counter() - t0
    return workers * one / together, one


def bench_throughput(ctx: BenchContext, files: list[Path]) -> None:
    try:
        import ray
    except ImportError:
        print("  farm: ray is not installed (pip install -r requirements-farm.txt); throughput rows skipped")
        return
    from core.farm.ray_pool import RayPool, connect
    from core.farm.ray_style import build_style, chunk_tasks, run_chunk
    import functools

    scale = 2
    frames, flows_dir = _big_sequence(files, ctx.work_dir / "big", scale)
    spec = StyleSpec(str(ROOT / "models" / "style" / "previous" / "wave.safetensors"))
    options = dict(flows_dir=str(flows_dir))
    chunk = CHUNK if ctx.quick else THROUGHPUT_CHUNK
    workers = os.cpu_count() or 2
    rounds = 1 if ctx.quick else 2
    started = connect("local", num_cpus=workers)
    threads = torch.get_num_threads()
    farm_times, local_times = [], []
    try:
        with RayPool(functools.partial(build_style, spec, "cpu"), run_chunk, workers=workers) as pool:
            # start the workers and load the model before the clock: a farm keeps them up
            pool.run(chunk_tasks(frames[:2], ctx.work_dir / "warm", None, 1, 0, 0, options) * workers)
            torch.set_num_threads(1)  # the one process gets one CPU slot, as each worker
            model = spec.build("cpu")
            for _ in range(rounds):  # alternate, so a change in the machine's load hits both sides alike
                out = ctx.work_dir / "one_process"
                shutil.rmtree(out, ignore_errors=True)
                t0 = time.perf_counter()
                stylize_chunked(model, frames, out, chunk_size=chunk, warmup=DEFAULT_WARMUP, **options)
                local_times.append(time.perf_counter() - t0)
                out = ctx.work_dir / "ray"
                shutil.rmtree(out, ignore_errors=True)
                tasks = chunk_tasks(frames, out, None, chunk, DEFAULT_WARMUP, 0, options)
                t0 = time.perf_counter()
                pool.run(tasks)
                farm_times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
        if started:
            ray.shutdown()
    capacity, _ = machine_parallelism(workers)
    ctx.add(family="farm", name=f"machine: {workers} concurrent processes / one", value=capacity, unit="x",
            baseline_name="ideal on an idle machine", baseline_value=float(workers),
            note=f"pure-Python CPU loop, measured right after the Ray rounds; {_load_average()}")
    size = load_image(frames[0]).rgb.shape
    note = (f"{len(frames)} frames {size[1]}x{size[0]}, chunks of {chunk}, W={DEFAULT_WARMUP}, best of {rounds} "
            f"alternated rounds; {_load_average()}")
    ctx.add(family="farm", name=f"Ray {workers} workers: frames/s", value=len(frames) / min(farm_times),
            unit="frames/s", baseline_name="one process", baseline_value=len(frames) / min(local_times),
            target=">= 1.6x one process on 2 CPUs", note=note)


def run(ctx: BenchContext) -> None:
    if ctx.device.type != "cpu":
        return  # the figures are about chunking and CPU slots; the GPU path is the same code per worker
    bench_borders(ctx, _sequence(24))
    bench_throughput(ctx, _sequence(24 if ctx.quick else THROUGHPUT_FRAMES))
