"""An animation stylized in chunks over a Ray cluster (the chunk contract of ``core.style.chunks``).

Every worker keeps the style loaded and takes chunk after chunk; each chunk
starts cold ``warmup`` frames before its first frame, so the frames land in the
output folder exactly as ``stylize_chunked`` (the same chunks run one after
another here) writes them: bit-identical on the CPU. The output folder must be
shared by every machine of the cluster (as the input frames are).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path
from typing import Any, Callable, Sequence

from ..common.jobs import CancelToken, ProgressCallback
from ..style.chunks import (DEFAULT_CHUNK_SIZE, DEFAULT_WARMUP, StyleSpec, numbered_frames, plan_chunks,
                            stylize_chunk)
from .ray_pool import RayPool, connect


def _absolute(path: str) -> str:
    return str(Path(path).resolve())


def build_style(spec: StyleSpec, device: str | None = None):
    """A worker's state: the style model (or frame stylizer), loaded once."""
    return spec.build(device)


def run_chunk(model, task: dict) -> list[str]:
    """One chunk on a worker; returns the files it wrote."""
    task = dict(task)
    files, out_dir = task.pop("files"), task.pop("out_dir")
    start, end = task.pop("start"), task.pop("end")
    return stylize_chunk(model, files, out_dir, start, end, **task).written


def chunk_tasks(files: Sequence[str | os.PathLike], out_dir: str | os.PathLike, frames: tuple[int, int] | None,
                chunk_size: int, warmup: int, overlap: int, options: dict) -> list[dict]:
    """One task per chunk of the range (every frame in exactly one chunk)."""
    numbered = numbered_frames(files)
    numbers = list(numbered)
    start, end = frames or (numbers[0], numbers[-1])
    if overlap > chunk_size:
        raise ValueError(f"the overlap ({overlap}) cannot be longer than a chunk ({chunk_size} frames)")
    names = [str(numbered[n]) for n in numbers]
    tasks = []
    for first, last in plan_chunks(start, end, chunk_size):
        inside = [n for n in numbers if first <= n <= last]
        if inside:
            tasks.append(dict(files=names, out_dir=str(out_dir), start=inside[0], end=inside[-1], warmup=warmup,
                              overlap=overlap, **options))
    if not tasks:
        raise ValueError(f"no frames of the sequence are in {start}-{end}")
    return tasks


def stylize_on_ray(style: StyleSpec | Callable[[], Any], files: Sequence[str | os.PathLike],
                   out_dir: str | os.PathLike, frames: tuple[int, int] | None = None,
                   chunk_size: int = DEFAULT_CHUNK_SIZE, warmup: int = DEFAULT_WARMUP, overlap: int = 0, *,
                   address: str | None = "auto", workers: int | None = None, device: str | None = None,
                   progress: ProgressCallback | None = None, cancel: CancelToken | None = None,
                   log: Callable[[str], None] | None = None, pool_ready: Callable[[RayPool], None] | None = None,
                   **options) -> list[str]:
    """Stylize frames (all, or ``frames=(START, END)``) of ``files`` into ``out_dir`` on a Ray cluster.

    ``style``: a ``StyleSpec`` (or any picklable ``setup()`` returning a model
    or frame stylizer). ``options``: ``stylize_chunk``'s (strength,
    temporal_weight, use_vectors, flows_dir, tile_size). ``progress`` counts
    frames of finished chunks; ``cancel`` stops every worker. Returns the
    written files in frame order. ``pool_ready`` sees the pool once its
    workers exist (tests use it to watch them).
    """
    # workers run elsewhere (another machine, another working directory): every path absolute
    files = [Path(f).resolve() for f in files]
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    if options.get("flows_dir") is not None:
        options["flows_dir"] = str(Path(options["flows_dir"]).resolve())
    tasks = chunk_tasks(files, out_dir, frames, chunk_size, warmup, overlap, options)
    if isinstance(style, StyleSpec):
        style = dataclasses.replace(style, style=_absolute(style.style), model=style.model and _absolute(style.model))
        setup = functools.partial(build_style, style, device)
    else:
        setup = style
    started_here = connect(address)
    try:
        with RayPool(setup, run_chunk, workers=workers, log=log) as pool:
            if pool_ready is not None:
                pool_ready(pool)
            results = pool.run(tasks, weights=[t["end"] - t["start"] + 1 for t in tasks], progress=progress,
                               cancel=cancel)
    finally:
        if started_here:
            import ray
            ray.shutdown()
    return [name for written in results for name in written]
