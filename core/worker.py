"""Background worker process: ``python -m core.worker [--workdir DIR] [--device auto]``.

The Blender add-on (or any host) starts this with its own or a chosen Python
and talks JSON lines over stdin/stdout, so training and inference never block
the host's main thread and GPU memory goes away when the process exits.

Requests, one JSON object per line on stdin::

    {"cmd": "submit", "id": "j1", "kind": "texture_gan.generate", "params": {...}}
    {"cmd": "cancel", "id": "j1"}
    {"cmd": "ping"}
    {"cmd": "shutdown"}          # cancel the running job, drop the queue, exit

Events, one JSON object per line on stdout::

    {"event": "ready", "pid": ..., "version": ..., "python": ...}
    {"event": "queued", "id": ..., "position": n}
    {"event": "started", "id": ..., "kind": ..., "lane": "train" | "interactive", "device": "cpu"}
    {"event": "progress", "id": ..., "step": s, "total": t, "fraction": f,
     "message": ..., "losses": {...}, "preview": "/tmp/.../preview.png" | null}
    {"event": "done", "id": ..., "result": {...}, "seconds": s, "device": "cuda:0 NVIDIA H100"}
    {"event": "cancelled", "id": ..., "result": {...}}
    {"event": "error", "id": ..., "error_type": "ImageError", "message": ..., "traceback": ...}
    {"event": "pong", "running": id | null, "running_jobs": [...], "queued": [...]}
    {"event": "bye"} / {"event": "protocol_error", "message": ...}
    {"event": "runner_restarted", "lane": ..., "message": ...}   # a bug stopped a lane; it runs again

Two lanes run at once, each a FIFO queue with one job at a time: training jobs
(kinds ending in ".train") in the "train" lane, every other job in the
"interactive" one, so a generate or stylize never waits behind a training.

Every request is checked before it is queued: job ids are 1-128 characters of
``A-Z a-z 0-9 . _ -`` (starting with a letter or digit) and unique in the
session; each kind declares its parameters (``JOB_PARAMS``: types and ranges;
unknown ones are refused). Results go into the work folder; an explicit
``output`` must lie in the work folder or a folder given with
``--allow-output``, and existing files are only replaced with
``"overwrite": true``. A new job kind is one function declaring its parameters::

    @job("texture.pbr", image=INPUT, strength=Param("float", 0.0, 1.0, default=0.5), **IMAGE_OUTPUT)
    def job_texture_pbr(ctx: JobContext) -> dict: ...

Images travel as
files: inputs are paths (PNG/JPEG/EXR/.npy), image results are written as
``.npy`` float32 HxWxC arrays in the colour space named in the result
(``{"path", "colorspace", "width", "height", "channels"}``), or as PNG/EXR
when the job was given such an output path. Errors never kill the worker: the
job reports ``error`` with the exception type and a sentence, and the next job
runs. Anything a library prints goes to stderr, so stdout stays pure protocol.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import queue
import re
import sys
import tempfile
import threading
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import __version__
from .common.jobs import CancelToken, JobCancelled, Progress, short_repr

PROTOCOL_VERSION = 1
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".exr", ".npy", ".tga")


# --------------------------------------------------------------------------- parameter schemas

JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
DEVICE = re.compile(r"auto|cpu|mps|cuda(:[0-9]{1,2})?")
MAX_SEED = 2 ** 63 - 1  # torch seeds are 64-bit; the GAN adds a small offset for its variation seed
MAX_SIDE = 16384
MAX_PATH_CHARS = 4096


class ParamError(ValueError):
    """A job parameter is missing, unknown, of the wrong type or out of range."""


@dataclass(frozen=True)
class Param:
    """One job parameter: its type, range and default. ``check`` returns the cleaned value.

    Types: ``int``, ``float``, ``bool``, ``str``, ``choice`` (one of ``choices``), ``path``
    (an input file), ``paths`` (a list of them, ``low``..``high`` entries, a lone string
    allowed), ``floats`` (a list of numbers in ``low``..``high``), ``config`` (a JSON object),
    ``output`` (an image file the job writes), ``output_dir`` and ``model_out`` (a model
    file a training writes and resumes from).
    """

    type: str
    low: float | None = None
    high: float | None = None
    default: Any = None
    required: bool = False
    choices: tuple = ()

    def check(self, name: str, value: Any) -> Any:
        if value is None:
            if self.required:
                raise ParamError(f"job parameter {name!r} is missing")
            return self.default
        checker = getattr(self, f"_check_{self.type}")
        return checker(name, value)

    def _range(self, name: str, value: float) -> None:
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise ParamError(f"job parameter {name!r} = {value!r} is out of range ({self.low} to {self.high})")

    def _check_int(self, name: str, value: Any) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamError(f"job parameter {name!r} must be a whole number, got {short_repr(value)}")
        self._range(name, value)
        return value

    def _check_float(self, name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamError(f"job parameter {name!r} must be a number, got {short_repr(value)}")
        if not math.isfinite(value):
            raise ParamError(f"job parameter {name!r} must be finite, got {value!r}")
        self._range(name, float(value))
        return float(value)

    def _check_bool(self, name: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise ParamError(f"job parameter {name!r} must be true or false, got {short_repr(value)}")
        return value

    def _check_str(self, name: str, value: Any) -> str:
        if not isinstance(value, str) or len(value) > MAX_PATH_CHARS:
            raise ParamError(f"job parameter {name!r} must be a text of at most {MAX_PATH_CHARS} characters")
        return value

    def _check_choice(self, name: str, value: Any) -> Any:
        if isinstance(value, bool) or value not in self.choices:
            raise ParamError(f"job parameter {name!r} must be one of {', '.join(map(repr, self.choices))}, "
                             f"got {short_repr(value)}")
        return value

    def _check_path(self, name: str, value: Any) -> str:
        if not isinstance(value, str) or not value or "\0" in value or len(value) > MAX_PATH_CHARS:
            raise ParamError(f"job parameter {name!r} must be a file path, got {short_repr(value)}")
        return value

    def _check_paths(self, name: str, value: Any) -> list[str]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise ParamError(f"job parameter {name!r} must be a list of file paths, got {short_repr(value)}")
        if not (self.low or 0) <= len(value) <= (self.high or len(value)):
            raise ParamError(f"job parameter {name!r} needs {self.low} to {self.high} paths, got {len(value)}")
        return [self._check_path(name, v) for v in value]

    def _check_floats(self, name: str, value: Any) -> list[float]:
        if not isinstance(value, list) or not 1 <= len(value) <= 64:
            raise ParamError(f"job parameter {name!r} must be a list of 1 to 64 numbers, got {short_repr(value)}")
        return [Param("float", self.low, self.high).check(name, v) for v in value]

    def _check_config(self, name: str, value: Any) -> dict:
        if not isinstance(value, dict):
            raise ParamError(f"job parameter {name!r} must be a JSON object, got {short_repr(value)}")
        return value

    def _check_device(self, name: str, value: Any) -> str:
        if not isinstance(value, str) or not DEVICE.fullmatch(value):
            raise ParamError(f"job parameter {name!r} must be auto, cpu, mps, cuda or cuda:N, got {short_repr(value)}")
        return value

    _check_output = _check_path
    _check_output_dir = _check_path

    def _check_model_out(self, name: str, value: Any) -> str:
        value = self._check_path(name, value)
        if not value.endswith(".safetensors"):
            raise ParamError(f"job parameter {name!r} must name a .safetensors model file, got {short_repr(value)}")
        return value


SEED = Param("int", 0, MAX_SEED, default=0)
SIDE = Param("int", 8, MAX_SIDE)
INPUT = Param("path", required=True)
# Every job may name a device and how often it sends previews.
COMMON_PARAMS = {"device": Param("device"), "preview_interval": Param("float", 0.0, 3600.0, default=1.0)}
IMAGE_OUTPUT = {"output": Param("output"), "overwrite": Param("bool", default=False)}
TRAINING = {"out_path": Param("model_out", required=True), "steps": Param("int", 1, 100_000_000, required=True),
            "seed": SEED, "config": Param("config"), "checkpoint_every": Param("int", 1, 100_000_000, default=200),
            "resume": Param("bool", default=True), "thumbnail": Param("bool", default=True)}

JOB_KINDS: dict[str, Callable[["JobContext"], dict]] = {}
JOB_PARAMS: dict[str, dict[str, Param]] = {}


def job(kind: str, **params: Param):
    """Register a job function for ``kind`` with its parameters (plus ``COMMON_PARAMS``)."""

    def register(fn: Callable[["JobContext"], dict]) -> Callable[["JobContext"], dict]:
        JOB_KINDS[kind] = fn
        JOB_PARAMS[kind] = {**COMMON_PARAMS, **params}
        return fn

    return register


def validate_params(kind: str, params: dict) -> dict:
    """The cleaned parameters of a ``kind`` job (defaults filled in); ParamError names the first problem."""
    schema = JOB_PARAMS.get(kind)
    if schema is None:
        raise ParamError(f"job kind {kind!r} declares no parameters (register it with @job)")
    unknown = sorted(str(k) for k in params if k not in schema)
    if unknown:
        raise ParamError(f"unknown job parameter(s) for {kind}: {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(schema))}")
    return {name: spec.check(name, params.get(name)) for name, spec in schema.items()}


def _inside(path: Path, roots: list[Path]) -> bool:
    resolved = path.resolve()
    return any(resolved == root or root in resolved.parents for root in roots)


def check_output(path: Path, roots: list[Path], overwrite: bool) -> Path:
    """An explicit image output: a writable image type, inside the allowed folders, new unless asked."""
    if path.suffix.lower() not in (".png", ".jpg", ".jpeg", ".exr", ".npy", ".tif", ".tiff", ".webp", ".bmp"):
        raise ParamError(f"output {path.name!r} must end in .png, .jpg, .exr, .tif, .webp, .bmp or .npy")
    if not _inside(path, roots):
        raise ParamError(f"output {path} is outside the work folder and the allowed output folders "
                         "(start the worker with --allow-output FOLDER)")
    if path.exists() and not overwrite:
        raise ParamError(f"output {path} exists; send \"overwrite\": true to replace it")
    return path


# --------------------------------------------------------------------------- output channel

class _Channel:
    """Thread-safe JSON-lines writer on a private copy of the original stdout."""

    def __init__(self, stream) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, **fields}, default=_json_default)
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "__dataclass_fields__"):
        import dataclasses
        return dataclasses.asdict(obj)
    return str(obj)


def _protect_stdout():
    """Keep fd 1 for the protocol only: everything else printed goes to stderr."""
    sys.stdout.flush()
    protocol_fd = os.dup(1)
    os.dup2(2, 1)  # C extensions writing to fd 1 now land on stderr
    sys.stdout = sys.stderr
    return os.fdopen(protocol_fd, "w", encoding="utf-8", buffering=1)


# --------------------------------------------------------------------------- job context

class JobContext:
    """What a job handler gets: its params, progress/cancel plumbing, a scratch folder."""

    def __init__(self, job_id: str, params: dict, workdir: Path, channel: _Channel,
                 cancel: CancelToken, default_device: str, models: "_ModelCache",
                 preview_interval: float = 1.0, output_roots: list[Path] | None = None) -> None:
        self.id = job_id
        self.params = params
        self.workdir = workdir
        self.output_roots = output_roots or [workdir.resolve()]
        self.cancel = cancel
        self._channel = channel
        self._models = models
        self._default_device = default_device
        self._preview_interval = float(params.get("preview_interval", preview_interval))
        self._last_preview = 0.0
        self._preview_count = 0
        self._last_preview_path: Path | None = None

    # ---- parameters
    def param(self, name: str, default: Any = None, required: bool = False) -> Any:
        if name in self.params and self.params[name] is not None:
            return self.params[name]
        if required:
            raise ValueError(f"job parameter {name!r} is missing")
        return default

    @property
    def device(self) -> str:
        return str(self.param("device", self._default_device) or "auto")

    def output_path(self, suffix: str = ".npy", name: str = "output") -> Path:
        out = self.param(name)
        if not out:
            return self.workdir / f"{self.id}_{name}{suffix}"  # the id is checked: a plain file name
        # checked when submitted and again now: the file may have appeared while the job waited
        return check_output(Path(out), self.output_roots, bool(self.param("overwrite", False)))

    # ---- progress
    def progress(self, p: Progress) -> None:
        preview_path = None
        now = time.monotonic()
        if p.preview is not None and (now - self._last_preview >= self._preview_interval or p.step >= p.total):
            preview_path = self._write_preview(p.preview)
            self._last_preview = now
        losses = {k: float(v) for k, v in (p.losses or {}).items()}
        self._channel.send("progress", id=self.id, step=int(p.step), total=int(p.total),
                           fraction=float(p.fraction), message=p.message, losses=losses,
                           preview=str(preview_path) if preview_path else None)

    def _write_preview(self, preview: np.ndarray) -> Path | None:
        try:
            from .common.images import save_image
            self._preview_count += 1
            # A new name per update: hosts cache previews by file name.
            path = self.workdir / f"{self.id}_preview_{self._preview_count:04d}.png"
            save_image(path, np.clip(np.asarray(preview, np.float32), 0, 1))
            if self._last_preview_path is not None and self._preview_count > 2:
                # keep the previous one (the host may still be reading it); delete older
                older = self.workdir / f"{self.id}_preview_{self._preview_count - 2:04d}.png"
                older.unlink(missing_ok=True)
            self._last_preview_path = path
            return path
        except Exception as exc:  # a preview must never fail the job
            print(f"worker: preview not written ({exc})", file=sys.stderr)
            return None

    # ---- models (kept loaded between jobs; 'shutdown' frees them with the process)
    def model(self, loader: Callable, path: str):
        return self._models.get(loader, str(path), self.device)


class _ModelCache:
    def __init__(self, capacity: int = 3) -> None:
        self._items: OrderedDict = OrderedDict()
        self._capacity = capacity

    def get(self, loader: Callable, path: str, device: str):
        p = Path(path)
        key = (loader.__module__, loader.__name__, str(p.resolve()), p.stat().st_mtime_ns if p.exists() else 0, device)
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        model = loader(path, device=None if device == "auto" else device)
        self._items[key] = model
        while len(self._items) > self._capacity:
            self._items.popitem(last=False)
        return model


# --------------------------------------------------------------------------- image helpers

def _load(path: str):
    from .common.images import load_image
    return load_image(path)


def _write_image_result(ctx: JobContext, image, name: str = "output") -> dict:
    """Write an ImageData (or sRGB ndarray) result and describe it for the host."""
    from .common.images import ImageData, image_from_array, save_image

    from .common.images import atomic_write_bytes

    if not isinstance(image, ImageData):
        image = image_from_array(np.asarray(image, np.float32), "srgb", name)
    out = ctx.output_path(".npy", name)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".npy":
        # Keep the colour space the data is in (save_image would linearise .npy).
        data = image.rgb if image.alpha is None else np.concatenate([image.rgb, image.alpha[..., None]], axis=-1)
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(data, np.float32), allow_pickle=False)
        atomic_write_bytes(out, buffer.getvalue())
        colorspace = image.colorspace
    else:
        save_image(out, image, bit_depth=16 if out.suffix.lower() == ".png" and image.bit_depth == 16 else 8)
        colorspace = "linear" if out.suffix.lower() == ".exr" else "srgb"
    channels = 3 if image.alpha is None else 4
    return {"path": str(out), "colorspace": colorspace, "width": image.width, "height": image.height,
            "channels": channels}


def _with_colorspace_of(result, source):
    """Return the network result in the colour space (and with the alpha) of ``source``."""
    from .common.images import ImageData, image_from_array, to_colorspace

    if isinstance(result, ImageData):
        return result
    rgb = np.asarray(result, np.float32)
    if rgb.ndim == 3 and rgb.shape[2] == 4:
        rgb = rgb[..., :3]
    out = image_from_array(to_colorspace(rgb, source.colorspace) if source is not None else rgb,
                           source.colorspace if source is not None else "srgb")
    if source is not None and source.alpha is not None and source.alpha.shape == out.rgb.shape[:2]:
        out.alpha = source.alpha
    return out


def _srgb_rgb(image) -> np.ndarray:
    from .common.images import to_srgb
    return to_srgb(image).rgb


# --------------------------------------------------------------------------- job kinds

@job("diagnostics")
def job_diagnostics(ctx: JobContext) -> dict:
    import platform
    info: dict[str, Any] = {"python": sys.version.split()[0], "executable": sys.executable,
                            "platform": platform.platform(), "core_version": __version__}
    try:
        import torch
        info["torch"] = torch.__version__
        info["cuda"] = bool(torch.cuda.is_available())
        info["devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] \
            if torch.cuda.is_available() else []
        mps = getattr(torch.backends, "mps", None)
        info["mps"] = bool(mps is not None and mps.is_available())
    except ImportError as exc:
        info["torch"] = None
        info["torch_error"] = f"PyTorch is not installed for {sys.executable} ({exc})"
    return info


@job("selftest", steps=Param("int", 0, 1_000_000, default=10), delay=Param("float", 0.0, 60.0, default=0.05),
     fail=Param("str"), preview=Param("bool", default=False))
def job_selftest(ctx: JobContext) -> dict:
    """Exercise the plumbing without any model: steps with progress, preview, cancel."""
    steps, delay = ctx.param("steps"), ctx.param("delay")
    if ctx.param("fail"):
        raise ValueError(str(ctx.param("fail")))
    for step in range(1, steps + 1):
        ctx.cancel.raise_if_cancelled()
        ctx.cancel.wait(delay)  # a sleep a cancel cuts short
        preview = np.full((8, 8, 3), step / steps, np.float32) if ctx.param("preview") else None
        ctx.progress(Progress(step, steps, f"step {step}/{steps}", {"value": step / steps}, preview))
    return {"steps": steps}


def _config_for(module, value, family: str):
    """A JSON config dict -> the family's ``*Config`` dataclass (``from_dict``); anything else as is.

    Unknown fields are refused (a typo must not train with the default), architecture values
    are held to the checkpoint limits and numbers to sane ranges before anything is built.
    """
    from .common.checkpoints import CheckpointError, check_config_values

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


def _train(ctx: JobContext, train_fn: Callable, extra: dict | None = None,
           thumbnail_from: Callable | None = None) -> dict:
    exemplars = ctx.param("exemplars", required=True)
    if isinstance(exemplars, str):
        exemplars = [exemplars]
    out_path = Path(ctx.param("out_path", required=True))
    module = sys.modules[train_fn.__module__.rsplit(".", 1)[0]]
    config = _config_for(module, ctx.param("config"), module.__name__.rsplit(".", 1)[-1])
    from .common.checkpoints import check_writable_folder
    check_writable_folder(out_path)  # before any step runs, not at the first checkpoint
    kwargs = dict(config=config, seed=int(ctx.param("seed", 0)),
                  device=None if ctx.device == "auto" else ctx.device,
                  progress=ctx.progress, cancel=ctx.cancel,
                  checkpoint_every=int(ctx.param("checkpoint_every", 200)),
                  resume=bool(ctx.param("resume", True)))
    kwargs.update(extra or {})
    try:
        path = train_fn(list(exemplars), out_path, int(ctx.param("steps", required=True)), **kwargs)
    except JobCancelled as exc:
        exc.result = {"model": str(out_path) if out_path.exists() else None}  # type: ignore[attr-defined]
        raise
    _write_thumbnail(ctx, Path(path), exemplars[0], thumbnail_from)
    return {"model": str(path)}


THUMBNAIL_SIZE = 128


def _write_thumbnail(ctx: JobContext, model_path: Path, exemplar, generate: Callable | None) -> None:
    """``NAME.png`` beside a trained model, for the model list; never fails the job.

    ``generate(model_path, size)`` makes it from the model; else the exemplar is shown.
    """
    from .common.images import resize_rgb, save_image
    try:
        if model_path.name.endswith(".safetensors") and ctx.params.get("thumbnail", True):
            if generate is not None:
                rgb = generate(model_path, THUMBNAIL_SIZE)
            else:
                source = _srgb_rgb(_load(exemplar)) if isinstance(exemplar, (str, Path)) else np.asarray(exemplar)
                rgb = resize_rgb(source, THUMBNAIL_SIZE, THUMBNAIL_SIZE)
            save_image(model_path.with_suffix(".png"), np.clip(rgb, 0, 1))
    except Exception as exc:  # noqa: BLE001
        print(f"worker: no thumbnail for {model_path.name} ({exc})", file=sys.stderr)


@job("texture_gan.train", exemplars=Param("paths", 1, 64, required=True), **TRAINING)
def job_texture_gan_train(ctx: JobContext) -> dict:
    from .texture_gan import load_texture_gan, train_texture_gan

    def sample(path: Path, size: int) -> np.ndarray:
        return load_texture_gan(path, device="cpu").generate(size, size, seed=0)

    return _train(ctx, train_texture_gan, thumbnail_from=sample)


# Tile sizes below 64 px spend nearly all the time on tile margins (generate() also checks the stride).
@job("texture_gan.generate", model=INPUT, width=Param("int", 1, MAX_SIDE, default=512),
     height=Param("int", 1, MAX_SIDE, default=512), seed=SEED, tileable=Param("bool", default=True),
     variation=Param("float", 0.0, 1.0, default=0.0), tile_size=Param("int", 64, MAX_SIDE), **IMAGE_OUTPUT)
def job_texture_gan_generate(ctx: JobContext) -> dict:
    from .texture_gan import load_texture_gan
    model = ctx.model(load_texture_gan, ctx.param("model", required=True))
    ctx.cancel.raise_if_cancelled()
    rgb = model.generate(int(ctx.param("width", 512)), int(ctx.param("height", 512)),
                         seed=int(ctx.param("seed", 0)), tileable=bool(ctx.param("tileable", True)),
                         variation=float(ctx.param("variation", 0.0)), tile_size=ctx.param("tile_size"),
                         cancel=ctx.cancel)
    ctx.progress(Progress(1, 1, "generated"))
    return {"image": _write_image_result(ctx, rgb), "model_name": getattr(model, "name", "")}


@job("texture_vae.train", exemplars=Param("paths", 1, 64, required=True), **TRAINING)
def job_texture_vae_train(ctx: JobContext) -> dict:
    from .texture_vae import train_texture_vae
    return _train(ctx, train_texture_vae)


@job("texture_vae.vary", image=INPUT, model=INPUT, strength=Param("float", 0.0, 10.0, default=0.5), seed=SEED,
     width=SIDE, height=SIDE, **IMAGE_OUTPUT)
def job_texture_vae_vary(ctx: JobContext) -> dict:
    source = _load(ctx.param("image", required=True))  # bad input fails before any model loads
    from .texture_vae import load_texture_vae
    model = ctx.model(load_texture_vae, ctx.param("model", required=True))
    ctx.cancel.raise_if_cancelled()
    rgb = model.vary(_srgb_rgb(source), float(ctx.param("strength", 0.5)), seed=int(ctx.param("seed", 0)),
                     width=ctx.param("width"), height=ctx.param("height"))
    ctx.progress(Progress(1, 1, "variation ready"))
    same_size = np.asarray(rgb).shape[:2] == source.rgb.shape[:2]
    return {"image": _write_image_result(ctx, _with_colorspace_of(rgb, source if same_size else None))}


@job("texture_vae.blend", model=INPUT, images=Param("paths", 2, 16, required=True), mask=Param("path"),
     t=Param("float", 0.0, 1.0, default=0.5), width=SIDE, height=SIDE, weights=Param("floats", 0.0, 1e6),
     **IMAGE_OUTPUT)
def job_texture_vae_blend(ctx: JobContext) -> dict:
    from .texture_vae import load_texture_vae
    model = ctx.model(load_texture_vae, ctx.param("model", required=True))
    paths = ctx.param("images", required=True)
    if len(paths) < 2:
        raise ValueError("blending needs at least two images")
    images = [_srgb_rgb(_load(p)) for p in paths]
    mask = None
    if ctx.param("mask"):
        mask_image = _load(ctx.param("mask"))
        # a mask is data, not colour: take the stored values, averaged over RGB
        mask = np.clip(mask_image.rgb.mean(axis=2), 0.0, 1.0).astype(np.float32)
    ctx.cancel.raise_if_cancelled()
    rgb = model.blend(images, t=float(ctx.param("t", 0.5)), mask=mask, width=ctx.param("width"),
                      height=ctx.param("height"), weights=ctx.param("weights"))
    ctx.progress(Progress(1, 1, "blend ready"))
    return {"image": _write_image_result(ctx, rgb)}


OPTIMISATION = {"steps": Param("int", 1, 100_000, default=40), "refine_steps": Param("int", 1, 100_000),
                "content_weight": Param("float", 0.0, 1e6), "style_weight": Param("float", 0.0, 1e12),
                "style_loss": Param("choice", choices=("gram", "sliced_wasserstein")),
                "max_side": Param("int", 32, 8192), "start_side": Param("int", 32, 8192),
                "style_scale": Param("float", 0.1, 4.0), "vgg19_weights": Param("path"), "seed": SEED}
_OPTIMISATION_KEYS = ("refine_steps", "content_weight", "style_weight", "style_loss", "max_side", "start_side",
                      "style_scale", "vgg19_weights")


@job("style.stylize_optimize", content=INPUT, style=INPUT, strength=Param("float", 0.0, 1.0, default=1.0),
     preserve_color=Param("choice", choices=(False, True, "luminance", "histogram")), **OPTIMISATION,
     **IMAGE_OUTPUT)
def job_style_stylize_optimize(ctx: JobContext) -> dict:
    from .style import stylize_optimize
    content = _load(ctx.param("content", required=True))
    style = _load(ctx.param("style", required=True))
    kwargs = {k: ctx.params[k] for k in (*_OPTIMISATION_KEYS, "preserve_color") if ctx.params.get(k) is not None}
    result = stylize_optimize(content, style, steps=int(ctx.param("steps", 40)),
                              strength=float(ctx.param("strength", 1.0)), seed=int(ctx.param("seed", 0)),
                              device=None if ctx.device == "auto" else ctx.device,
                              progress=ctx.progress, cancel=ctx.cancel, **kwargs)
    return {"image": _write_image_result(ctx, _with_colorspace_of(result, content))}


@job("style.train", style=INPUT, frames=Param("paths", 1, 100_000), vgg19_weights=Param("path"), **TRAINING)
def job_style_train(ctx: JobContext) -> dict:
    from .style import train_style_model
    style = ctx.param("style", required=True)
    frames = ctx.param("frames")  # None: the core renders its own training frames
    out_path = Path(ctx.param("out_path", required=True))
    config = _config_for(sys.modules[train_style_model.__module__.rsplit(".", 1)[0]], ctx.param("config"),
                         "style_transfer")
    from .common.checkpoints import check_writable_folder
    check_writable_folder(out_path)
    try:
        path = train_style_model(style, list(frames) if frames else None, out_path, int(ctx.param("steps", required=True)),
                                 config=config, seed=int(ctx.param("seed", 0)),
                                 device=None if ctx.device == "auto" else ctx.device,
                                 progress=ctx.progress, cancel=ctx.cancel,
                                 checkpoint_every=int(ctx.param("checkpoint_every", 200)),
                                 resume=bool(ctx.param("resume", True)),
                                 vgg19_weights=ctx.param("vgg19_weights"))
    except JobCancelled as exc:
        exc.result = {"model": str(out_path) if out_path.exists() else None}  # type: ignore[attr-defined]
        raise
    return {"model": str(path)}


def _fast_style(ctx: JobContext):
    """The job's fast style model: a single-style file, or a style/mix of a multi-style one
    (``model`` may end in ``#style``; ``style_weights``: a name or ``"starry_night=0.7,wave=0.3"``)."""
    from .style.multistyle import load_fast_style, parse_style_weights
    weights = ctx.param("style_weights")
    return load_fast_style(ctx.param("model", required=True), style=parse_style_weights(weights) if weights else None,
                           loader=ctx.model)


@job("style.stylize", image=INPUT, model=INPUT, strength=Param("float", 0.0, 1.0, default=1.0),
     tile_size=Param("int", 32, MAX_SIDE), style_weights=Param("str"), **IMAGE_OUTPUT)
def job_style_stylize(ctx: JobContext) -> dict:
    source = _load(ctx.param("image", required=True))  # bad input fails before any model loads
    model = _fast_style(ctx)
    ctx.cancel.raise_if_cancelled()
    result = model.stylize(source, strength=float(ctx.param("strength", 1.0)), tile_size=ctx.param("tile_size"),
                           cancel=ctx.cancel)
    ctx.progress(Progress(1, 1, "stylized"))
    return {"image": _write_image_result(ctx, _with_colorspace_of(result, source))}


@job("style.stylize_sequence", model=Param("path"), style=Param("path"), style_weights=Param("str"),
     method=Param("choice", choices=("model", "adain", "optimize"), default="model"),
     alpha=Param("float", 0.0, 1.0, default=1.0), **OPTIMISATION, frames=Param("paths", 1, 100_000, required=True),
     output_dir=Param("output_dir", required=True),
     format=Param("choice", choices=("png", "exr", "jpg", "jpeg", "npy", ".png", ".exr", ".jpg", ".jpeg", ".npy")),
     strength=Param("float", 0.0, 1.0, default=1.0), temporal_weight=Param("float", 0.0, 1.0, default=0.7),
     use_motion_vectors=Param("bool", default=True), overwrite=Param("bool", default=False))
def job_style_stylize_sequence(ctx: JobContext) -> dict:
    from .common.images import save_image
    from .style import stylize_sequence
    from .style.blender_passes import frames_with_flows
    method = ctx.param("method", "model")
    if method == "model":  # a fast style model (or one style or mix of the multi-style one)
        model = _fast_style(ctx)
    elif method == "adain":  # any painting in one pass; the bundled decoder unless a model is given
        from .style.adain import AdaINStylizer, bundled_decoder_path, load_adain_model
        decoder = ctx.model(load_adain_model, ctx.param("model") or bundled_decoder_path())
        model = AdaINStylizer(decoder, _load(ctx.param("style", required=True)), float(ctx.param("alpha", 1.0)))
    else:  # optimisation per frame, warm-started from the previous result warped by the motion
        from .style.optimize import OptimizationStylizer
        options = {k: ctx.params[k] for k in _OPTIMISATION_KEYS if ctx.params.get(k) is not None}
        model = OptimizationStylizer(_load(ctx.param("style", required=True)), steps=int(ctx.param("steps", 40)),
                                     seed=int(ctx.param("seed", 0)), cancel=ctx.cancel,
                                     device=None if ctx.device == "auto" else ctx.device, **options)
    frames = [str(p) for p in ctx.param("frames", required=True)]
    if not frames:
        raise ValueError("no frames to stylize")
    output_dir = Path(ctx.param("output_dir", required=True))
    targets = _sequence_targets(frames, output_dir, ctx.param("format"), bool(ctx.param("overwrite")))
    output_dir.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    warnings: list[str] = []
    # frames are read lazily: a long animation never sits in memory at once; multilayer EXR renders
    # bring their Vector pass as exact motion, other frames get the motion estimate
    frame_iter, flow_iter = frames_with_flows(frames, use_vectors=bool(ctx.param("use_motion_vectors", True)),
                                              warn=warnings.append)
    iterator = stylize_sequence(model, frame_iter, flow_iter, strength=float(ctx.param("strength", 1.0)),
                                temporal_weight=float(ctx.param("temporal_weight", 0.7)),
                                progress=None, cancel=ctx.cancel)
    for index, frame in enumerate(iterator):
        out = targets[index]
        save_image(out, _with_colorspace_of(frame, None))
        written.append(str(out))
        ctx.progress(Progress(index + 1, len(frames), f"frame {index + 1}/{len(frames)}"))
    return {"frames": written, "output_dir": str(output_dir), "warnings": warnings}


def _sequence_targets(frames: list[str], output_dir: Path, suffix: str | None, overwrite: bool) -> list[Path]:
    """One output file per frame, checked before the first frame is stylized: never an input
    frame, never two frames onto one file, never an existing file unless asked."""
    targets = []
    for frame in frames:
        ext = ("." + suffix.lstrip(".")) if suffix else Path(frame).suffix.lower()
        if ext not in (".png", ".exr", ".jpg", ".jpeg", ".npy"):
            ext = ".png"
        targets.append(output_dir / (Path(frame).stem + ext))
    inputs = {Path(f).resolve() for f in frames}
    seen: set[Path] = set()
    for target in targets:
        resolved = target.resolve()
        if resolved in inputs:
            raise ParamError(f"{target} is one of the input frames; choose another output folder")
        if resolved in seen:
            raise ParamError(f"two frames are named {target.stem}; they would overwrite each other in {output_dir}")
        seen.add(resolved)
        if target.exists() and not overwrite:
            raise ParamError(f"{target} exists; send \"overwrite\": true to replace the frames in {output_dir}")
    return targets


@job("style.stylize_adain", image=INPUT, style=INPUT, model=Param("path"), alpha=Param("float", 0.0, 1.0, default=1.0),
     preserve_color=Param("choice", choices=(False, True, "luminance", "histogram")),
     tile_size=Param("int", 32, MAX_SIDE), refine_steps=Param("int", 0, 1000, default=0), **IMAGE_OUTPUT)
def job_style_stylize_adain(ctx: JobContext) -> dict:
    """Any painting in one pass (AdaIN); ``model`` defaults to the bundled decoder."""
    source = _load(ctx.param("image", required=True))  # bad input fails before any model loads
    style = _load(ctx.param("style", required=True))
    from .style.adain import bundled_decoder_path, load_adain_model
    model = ctx.model(load_adain_model, ctx.param("model") or bundled_decoder_path())
    ctx.cancel.raise_if_cancelled()
    tile = ctx.param("tile_size")
    result = model.stylize(source, style, alpha=float(ctx.param("alpha", 1.0)),
                           preserve_color=ctx.param("preserve_color", False),
                           tile_size=None if tile is None else int(tile), progress=ctx.progress, cancel=ctx.cancel,
                           refine_steps=int(ctx.param("refine_steps", 0)))
    return {"image": _write_image_result(ctx, _with_colorspace_of(result, source))}


@job("texture_synth.synthesize", exemplars=Param("paths", 1, 64, required=True),
     width=Param("int", 1, MAX_SIDE, default=512), height=Param("int", 1, MAX_SIDE, default=512), seed=SEED,
     tileable=Param("bool", default=True), steps=Param("int", 1, 10_000), scales=Param("int", 1, 64),
     **IMAGE_OUTPUT)
def job_texture_synth_synthesize(ctx: JobContext) -> dict:
    """Instant, training-free texture from one or more exemplars (patch-distribution matching)."""
    images = [_srgb_rgb(_load(p)) for p in ctx.param("exemplars", required=True)]  # bad input names its file
    from .texture_synth import synthesize
    steps, scales = ctx.param("steps"), ctx.param("scales")
    result = synthesize(images, int(ctx.param("width", 512)), int(ctx.param("height", 512)),
                        seed=int(ctx.param("seed", 0)), tileable=bool(ctx.param("tileable", True)),
                        steps=None if steps is None else int(steps), scales=None if scales is None else int(scales),
                        device=None if ctx.device == "auto" else ctx.device, progress=ctx.progress, cancel=ctx.cancel)
    return {"image": _write_image_result(ctx, result.image)}


@job("texture.pbr", image=INPUT, height_detail=Param("float", 0.0, 1.0), height_radius=Param("float", 2.0, 1024.0),
     invert_height=Param("bool"), height_scale=Param("float", 0.0, 256.0),
     normal_strength=Param("float", 0.0, 20.0), roughness_base=Param("float", 0.0, 1.0),
     roughness_contrast=Param("float", -1.0, 1.0), roughness_brightness=Param("float", -1.0, 1.0),
     ao_strength=Param("float", 0.0, 4.0))
def job_texture_pbr(ctx: JobContext) -> dict:
    """Tileable height, normal (OpenGL), roughness and AO maps derived from an albedo."""
    source = _load(ctx.param("image", required=True))
    from .texture_pbr import PBRSettings, pbr_maps
    knobs = {name: ctx.params[name] for name in PBRSettings.__dataclass_fields__ if ctx.params.get(name) is not None}
    maps = pbr_maps(source, **knobs)
    ctx.progress(Progress(1, 1, "PBR maps ready"))
    # Non-colour data: stored as is (the host loads these as Non-Color).
    return {"maps": {name: _write_image_result(ctx, getattr(maps, name), name=name)
                     for name in ("height", "normal", "roughness", "ao")}}


# --------------------------------------------------------------------------- the worker

class _Lane:
    """One runner thread with its FIFO queue, its running job and that job's cancel token."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.queue: "queue.Queue[tuple[str, str, dict] | None]" = queue.Queue()
        self.pending: dict[str, tuple[str, dict]] = {}  # queued, not started
        self.cancelled_pending: set[str] = set()
        self.running_id: str | None = None
        self.running_token: CancelToken | None = None
        self.thread: threading.Thread | None = None


def lane_for(kind: str) -> str:
    """Trainings run in their own lane so interactive jobs never wait behind one."""
    return "train" if kind.endswith(".train") else "interactive"


class Worker:
    def __init__(self, channel: _Channel, workdir: Path, device: str = "auto",
                 allowed_outputs: list[Path] | None = None) -> None:
        self.channel = channel
        self.workdir = workdir
        self.device = device
        self.output_roots = [workdir.resolve(), *(Path(p).resolve() for p in allowed_outputs or [])]
        self.models = _ModelCache()
        self.restarts = 0  # runner restarts after an unexpected failure (a bug; the fuzz run counts them)
        self._lanes = {name: _Lane(name) for name in ("train", "interactive")}
        self._ids: set[str] = set()  # every id submitted this session: results never overwrite each other
        self._lock = threading.Lock()
        self._devices: dict[str, str] = {}

    def start(self) -> None:
        for lane in self._lanes.values():
            lane.thread = threading.Thread(target=self._supervise, args=(lane,), name=f"job-runner-{lane.name}",
                                           daemon=True)
            lane.thread.start()
        self.channel.send("ready", pid=os.getpid(), version=__version__, protocol=PROTOCOL_VERSION,
                          python=sys.executable, workdir=str(self.workdir), kinds=sorted(JOB_KINDS),
                          lanes=sorted(self._lanes))

    # ---- commands (main thread)
    def handle(self, line: str) -> bool:
        """Handle one request line; False means 'shut down now'. Never raises."""
        try:
            return self._handle(line)
        except Exception as exc:  # noqa: BLE001 - a request must never stop the worker
            self.channel.send("protocol_error", message=f"request not handled ({type(exc).__name__}: "
                                                        f"{short_repr(str(exc), 200)})")
            return True

    def _handle(self, line: str) -> bool:
        line = line.strip()
        if not line:
            return True
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("a request must be a JSON object")
            cmd = request.get("cmd")
        except (ValueError, RecursionError) as exc:
            self.channel.send("protocol_error", message=f"bad request line: {short_repr(str(exc), 200)}")
            return True
        if cmd == "submit":
            self._submit(request)
        elif cmd == "cancel":
            job_id = request.get("id")
            self._cancel(job_id if isinstance(job_id, str) else None)
        elif cmd == "ping":
            with self._lock:
                running = [lane.running_id for lane in self._lanes.values() if lane.running_id]
                queued = [job_id for lane in self._lanes.values() for job_id in lane.pending]
            self.channel.send("pong", running=running[0] if running else None, running_jobs=running, queued=queued)
        elif cmd == "shutdown":
            return False
        else:
            self.channel.send("protocol_error", message=f"unknown command {short_repr(cmd)}")
        return True

    def _submit(self, request: dict) -> None:
        job_id = request.get("id")
        kind = request.get("kind")
        params = request.get("params")
        if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):
            self.channel.send("protocol_error", id=job_id if isinstance(job_id, str) else None,
                              message=f"submit needs an 'id' of 1-128 letters, digits, '.', '_' or '-' "
                                      f"(starting with a letter or digit), got {short_repr(job_id)}")
            return
        with self._lock:
            duplicate = job_id in self._ids
            self._ids.add(job_id)
        if duplicate:
            self.channel.send("protocol_error", id=job_id,
                              message=f"job id {job_id!r} was already used in this session; ids must be unique")
            return
        if not isinstance(kind, str) or kind not in JOB_KINDS:
            self.channel.send("error", id=job_id, error_type="ValueError",
                              message=f"unknown job kind {short_repr(kind)}; known: {', '.join(sorted(JOB_KINDS))}")
            return
        if params is None:
            params = {}
        try:
            if not isinstance(params, dict):
                raise ParamError("'params' must be an object")
            params = validate_params(kind, params)
            self._check_destinations(params)
        except ParamError as exc:
            self.channel.send("error", id=job_id, error_type="ParamError", message=str(exc))
            return
        lane = self._lanes[lane_for(kind)]
        with self._lock:
            lane.pending[job_id] = (kind, params)
            position = len(lane.pending) + (1 if lane.running_id else 0)
        self.channel.send("queued", id=job_id, kind=kind, position=position, lane=lane.name)
        lane.queue.put((job_id, kind, params))

    def _check_destinations(self, params: dict) -> None:
        """An explicit image output: a writable image type, inside the allowed folders, new unless asked."""
        if params.get("output"):
            check_output(Path(params["output"]), self.output_roots, bool(params.get("overwrite")))

    def _cancel(self, job_id: str | None) -> None:
        with self._lock:
            for lane in self._lanes.values():
                if job_id is not None and job_id == lane.running_id and lane.running_token is not None:
                    lane.running_token.cancel()  # the job stops at its next step and reports 'cancelled'
                    return
                if job_id in lane.pending:
                    del lane.pending[job_id]
                    lane.cancelled_pending.add(job_id)
                    self.channel.send("cancelled", id=job_id, result={}, message="removed from the queue")
                    return
        self.channel.send("protocol_error", message=f"no queued or running job {short_repr(job_id)} to cancel")

    def shutdown(self, timeout: float = 120.0) -> None:
        with self._lock:
            for lane in self._lanes.values():
                for job_id in list(lane.pending):
                    lane.cancelled_pending.add(job_id)
                    self.channel.send("cancelled", id=job_id, result={}, message="worker shut down")
                lane.pending.clear()
                if lane.running_token is not None:
                    lane.running_token.cancel()
        for lane in self._lanes.values():
            lane.queue.put(None)
        # Give a cancelled training job time to write its checkpoint.
        deadline = time.monotonic() + timeout
        for lane in self._lanes.values():
            if lane.thread is not None:
                lane.thread.join(max(0.0, deadline - time.monotonic()))
        self.channel.send("bye")

    # ---- job runner threads
    def _supervise(self, lane: _Lane) -> None:
        """Run the lane; should the runner itself ever fail (a bug), report the job and start it again."""
        while True:
            try:
                self._run_jobs(lane)
                return
            except Exception as exc:  # noqa: BLE001 - the runner must never stay dead
                with self._lock:
                    job_id, lane.running_id, lane.running_token = lane.running_id, None, None
                    self.restarts += 1
                if job_id is not None:
                    self.channel.send("error", id=job_id, error_type=type(exc).__name__,
                                      message=f"internal worker error: {_error_message(exc)}",
                                      traceback=traceback.format_exc())
                self.channel.send("runner_restarted", lane=lane.name, restarts=self.restarts,
                                  message=f"the {lane.name} job runner failed ({type(exc).__name__}) and was "
                                          "restarted; queued jobs go on")

    def _run_jobs(self, lane: _Lane) -> None:
        while True:
            item = lane.queue.get()
            if item is None:
                return
            job_id, kind, params = item
            with self._lock:
                if job_id in lane.cancelled_pending:
                    lane.cancelled_pending.discard(job_id)
                    continue
                lane.pending.pop(job_id, None)
                token = CancelToken()
                lane.running_id, lane.running_token = job_id, token
            final = self._run_one(job_id, kind, params, token, lane.name)
            with self._lock:
                lane.running_id, lane.running_token = None, None
            # sent after clearing, so a 'ping' right after 'done' sees an idle lane
            self.channel.send(final[0], id=job_id, **final[1])

    def _run_one(self, job_id: str, kind: str, params: dict, token: CancelToken,
                 lane: str = "interactive") -> tuple[str, dict]:
        started = time.monotonic()
        device = None
        try:
            ctx = JobContext(job_id, params, self.workdir, self.channel, token, self.device, self.models,
                             output_roots=self.output_roots)
            device = self.device_label(ctx.device)
            self.channel.send("started", id=job_id, kind=kind, lane=lane, device=device)
            result = JOB_KINDS[kind](ctx)
        except JobCancelled as exc:
            return "cancelled", {"result": getattr(exc, "result", {}) or {}, "message": str(exc) or "cancelled"}
        except BaseException as exc:  # noqa: BLE001 - report everything (even SystemExit in a job), keep serving
            return "error", {"error_type": type(exc).__name__, "message": _error_message(exc),
                             "traceback": traceback.format_exc()}
        finally:
            if kind not in ("diagnostics", "selftest"):
                _free_cached_memory()
        return "done", {"result": result, "seconds": round(time.monotonic() - started, 3), "device": device}

    def device_label(self, preference: str) -> str:
        """What a job runs on, for the host to show: "cpu", "mps" or "cuda:0 NVIDIA H100"."""
        if preference not in self._devices:
            try:
                import torch
                from .common.device import pick_device
                dev = pick_device(preference)
                if dev.type == "cuda":
                    index = dev.index if dev.index is not None else torch.cuda.current_device()
                    label = f"cuda:{index} {torch.cuda.get_device_name(index)}"
                else:
                    label = dev.type
            except Exception as exc:  # noqa: BLE001 - a bad device is the job's error, raised where it is used
                label = f"{preference} (unavailable: {short_repr(str(exc), 80)})"
            self._devices[preference] = label
        return self._devices[preference]


def _error_message(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    try:
        from .common.device import is_out_of_memory
        if is_out_of_memory(exc):
            return (f"out of memory: {text.splitlines()[0]}. Try a smaller size, a tile size, "
                    "or the CPU device.")
    except ImportError:
        pass
    if isinstance(exc, ModuleNotFoundError) and exc.name in ("torch", "safetensors", "PIL"):
        return (f"{exc.name} is not installed for the worker's Python ({sys.executable}). Install the "
                "dependencies from the add-on preferences or choose a Python that has them.")
    return text


def _free_cached_memory() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


MAX_REQUEST_BYTES = 16 * 1024 * 1024


def _request_lines(stream):
    """Request lines from a binary stream, decoded leniently (bad bytes cannot stop the loop);
    None for a line over MAX_REQUEST_BYTES, which is skipped without being held in memory."""
    while True:
        line = stream.readline(MAX_REQUEST_BYTES + 1)
        if not line:
            return
        if len(line) > MAX_REQUEST_BYTES and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):
                line = stream.readline(MAX_REQUEST_BYTES)
            yield None
            continue
        yield line.decode("utf-8", errors="replace")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", help="folder for previews and results (default: a new temp folder)")
    parser.add_argument("--device", default=os.environ.get("NEURAL_TEXTURES_DEVICE", "auto"))
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    parser.add_argument("--allow-output", action="append", default=[], metavar="FOLDER",
                        help="a folder besides the work folder that jobs may write an explicit 'output' into")
    args = parser.parse_args(argv)

    stream = _protect_stdout()
    channel = _Channel(stream)
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="neural_worker_"))
    workdir.mkdir(parents=True, exist_ok=True)
    if args.threads > 0:
        try:
            import torch
            torch.set_num_threads(args.threads)
        except ImportError:
            pass
    worker = Worker(channel, workdir, args.device, [Path(p) for p in args.allow_output])
    worker.start()
    try:
        for line in _request_lines(sys.stdin.buffer):
            if line is None:
                channel.send("protocol_error", message=f"request line longer than {MAX_REQUEST_BYTES:,} bytes; ignored")
            elif not worker.handle(line):
                break
    except KeyboardInterrupt:
        pass
    # stdin closed (the host went away) or 'shutdown': stop cleanly either way.
    worker.shutdown()
    stream.flush()
    # os._exit: do not wait for daemon threads stuck inside a C call; GPU memory goes with the process.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
