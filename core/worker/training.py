"""The training adapter every family's ``*.train`` job shares: config checks, resume, thumbnail."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import numpy as np

from ..common.jobs import JobCancelled
from .context import JobContext
from .params import ParamError
from .results import load_input, srgb_rgb


def config_for(module, value, family: str):
    """A JSON config dict -> the family's ``*Config`` dataclass (``from_dict``); anything else as is.

    Unknown fields are refused (a typo must not train with the default), architecture values
    are held to the checkpoint limits and numbers to sane ranges before anything is built.
    """
    from ..common.checkpoints import CheckpointError, check_config_values

    if not isinstance(value, dict):
        return value
    names = getattr(module, "__all__", None) or dir(module)
    for name in names:
        cls = getattr(module, name, None)
        if isinstance(cls, type) and name.endswith("Config") and hasattr(cls, "from_dict"):
            known = set(getattr(cls, "__dataclass_fields__", {}))
            unknown = sorted(str(k) for k in value if k not in known)
            if unknown:
                raise ParamError(f"unknown config field(s) for {name}: {', '.join(unknown)}")
            try:
                check_config_values("config", family, value)
            except CheckpointError as exc:
                raise ParamError(str(exc)) from exc
            try:
                return cls.from_dict(value)
            except (TypeError, ValueError) as exc:
                raise ParamError(f"invalid config: {exc}") from exc
    return value


def train_job(ctx: JobContext, train_fn: Callable, inputs: list, *, family: str | None = None,
              extra: dict | None = None, thumbnail: Callable | str | None = None) -> dict:
    """Run ``train_fn(*inputs, out_path, steps, config=..., seed=..., ...)`` as a job: the config checked
    against the family's ``*Config`` (``family`` names its limits; default: the package name), the
    destination checked before step one, the partial model named when cancelled.

    ``thumbnail``: ``generate(model_path, size)`` or an exemplar path for the model list's picture.
    """
    out_path = Path(ctx.param("out_path", required=True))
    module = sys.modules[train_fn.__module__.rsplit(".", 1)[0]]
    config = config_for(module, ctx.param("config"), family or module.__name__.rsplit(".", 1)[-1])
    from ..common.checkpoints import check_writable_folder
    check_writable_folder(out_path)  # before any step runs, not at the first checkpoint
    kwargs = dict(config=config, seed=int(ctx.param("seed", 0)),
                  device=None if ctx.device == "auto" else ctx.device,
                  progress=ctx.progress, cancel=ctx.cancel,
                  checkpoint_every=int(ctx.param("checkpoint_every", 200)),
                  resume=bool(ctx.param("resume", True)))
    kwargs.update(extra or {})
    try:
        path = train_fn(*inputs, out_path, int(ctx.param("steps", required=True)), **kwargs)
    except JobCancelled as exc:
        exc.result = {"model": str(out_path) if out_path.exists() else None}  # type: ignore[attr-defined]
        raise
    if thumbnail is not None:
        write_thumbnail(ctx, Path(path), thumbnail)
    return {"model": str(path)}


THUMBNAIL_SIZE = 128


def write_thumbnail(ctx: JobContext, model_path: Path, source: Callable | str | Path) -> None:
    """``NAME.png`` beside a trained model, for the model list; never fails the job.

    ``source``: ``generate(model_path, size)`` makes it from the model; an exemplar is shown as is.
    """
    from ..common.images import resize_rgb, save_image
    try:
        if model_path.name.endswith(".safetensors") and ctx.params.get("thumbnail", True):
            if callable(source):
                rgb = source(model_path, THUMBNAIL_SIZE)
            else:
                rgb = resize_rgb(srgb_rgb(load_input(str(source))), THUMBNAIL_SIZE, THUMBNAIL_SIZE)
            save_image(model_path.with_suffix(".png"), np.clip(rgb, 0, 1))
    except Exception as exc:  # noqa: BLE001
        print(f"worker: no thumbnail for {model_path.name} ({exc})", file=sys.stderr)
