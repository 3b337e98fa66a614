"""Batch texture work (many materials, many sizes) here or over the same Ray pool as the animations.

A batch is a list of ``TextureItem`` (a trained texture model to generate
from, or exemplars to synthesize from, at one size and seed, into one file);
``texture_batch`` crosses materials x sizes x seeds into such a list. Each
worker keeps every model it has loaded, so a material's model loads once per
worker however many sizes it makes. Files are written atomically under names
that say what they are (``bricks_1024x1024_s0.png``), so a retried item writes
the same bytes again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ..common.jobs import CancelToken, ProgressCallback, check_cancel, report


@dataclass(frozen=True)
class TextureItem:
    kind: str  # "generate" (a texture GAN model) or "synthesize" (instant synthesis from exemplars)
    sources: tuple[str, ...]  # the model file, or the exemplar images
    width: int
    height: int
    seed: int
    out: str
    tileable: bool = True
    device: str | None = None


def texture_batch(out_dir: str | os.PathLike, models: Sequence[str] = (), exemplars: Sequence[str] = (),
                  sizes: Sequence[int] = (512,), seeds: Sequence[int] = (0,), tileable: bool = True,
                  suffix: str = ".png", device: str | None = None) -> list[TextureItem]:
    """Every material (each model, each exemplar) at every size and seed, named ``<material>_<W>x<H>_s<seed>``."""
    # absolute paths: a farm worker runs in another working directory, maybe on another machine
    materials = [("generate", (str(Path(m).resolve()),)) for m in models] + \
        [("synthesize", (str(Path(e).resolve()),)) for e in exemplars]
    out_dir = Path(out_dir).resolve()
    if not materials:
        raise ValueError("a texture batch needs at least one model or exemplar")
    stems = [Path(src[0]).stem for _, src in materials]
    if len(set(stems)) != len(stems):
        raise ValueError("two materials share a file name; their outputs would overwrite each other")
    items = []
    for (kind, sources), stem in zip(materials, stems):
        for size in sizes:
            for seed in seeds:
                name = f"{stem}_{size}x{size}_s{seed}{suffix}"
                items.append(TextureItem(kind, sources, int(size), int(size), int(seed), str(Path(out_dir) / name),
                                         tileable, device))
    return items


def new_cache() -> dict:
    """A worker's state: loaded texture models by file."""
    return {}


def make_texture(cache: dict, item: TextureItem) -> str:
    """One item: generate or synthesize, write atomically, return the file."""
    from ..common.images import save_image

    if item.kind == "generate":
        from ..texture_gan import TextureGenerator
        key = (item.sources[0], item.device)
        if key not in cache:
            cache[key] = TextureGenerator.load(item.sources[0], item.device)
        image = cache[key].generate(item.width, item.height, seed=item.seed, tileable=item.tileable)
    elif item.kind == "synthesize":
        from ..texture_synth import synthesize
        image = synthesize(list(item.sources), item.width, item.height, seed=item.seed, tileable=item.tileable,
                           device=item.device).image
    else:
        raise ValueError(f"unknown texture job {item.kind!r}: generate or synthesize")
    Path(item.out).parent.mkdir(parents=True, exist_ok=True)
    return str(save_image(Path(item.out), image))


def run_texture_batch(items: Sequence[TextureItem], *, ray_address: str | None = None, workers: int | None = None,
                      progress: ProgressCallback | None = None, cancel: CancelToken | None = None,
                      log: Callable[[str], None] | None = None, pool_ready: Callable[[Any], None] | None = None
                      ) -> list[str]:
    """Make every item: here, one after another, or over a Ray cluster (``ray_address``: "auto" or an address)."""
    if ray_address is None:
        cache, written = new_cache(), []
        for index, item in enumerate(items):
            check_cancel(cancel)
            written.append(make_texture(cache, item))
            report(progress, index + 1, len(items), Path(item.out).name)
        return written
    from .ray_pool import RayPool, connect
    started_here = connect(ray_address)
    try:
        # biggest first: the long items start early and the small ones fill the gaps at the end
        order = sorted(range(len(items)), key=lambda i: -items[i].width * items[i].height)
        with RayPool(new_cache, make_texture, workers=workers, log=log) as pool:
            if pool_ready is not None:
                pool_ready(pool)
            done = pool.run([items[i] for i in order], progress=progress, cancel=cancel)
    finally:
        if started_here:
            import ray
            ray.shutdown()
    written: list[str] = [""] * len(items)
    for position, index in enumerate(order):
        written[index] = done[position]
    return written
