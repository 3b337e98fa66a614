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
    {"event": "started", "id": ...}
    {"event": "progress", "id": ..., "step": s, "total": t, "fraction": f,
     "message": ..., "losses": {...}, "preview": "/tmp/.../preview.png" | null}
    {"event": "done", "id": ..., "result": {...}}
    {"event": "cancelled", "id": ..., "result": {...}}
    {"event": "error", "id": ..., "error_type": "ImageError", "message": ..., "traceback": ...}
    {"event": "pong"} / {"event": "bye"} / {"event": "protocol_error", "message": ...}

One job runs at a time; the others wait in a FIFO queue. Images travel as
files: inputs are paths (PNG/JPEG/EXR/.npy), image results are written as
``.npy`` float32 HxWxC arrays in the colour space named in the result
(``{"path", "colorspace", "width", "height", "channels"}``), or as PNG/EXR
when the job was given such an output path. Errors never kill the worker: the
job reports ``error`` with the exception type and a sentence, and the next job
runs. Anything a library prints goes to stderr, so stdout stays pure protocol.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import tempfile
import threading
import time
import traceback
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import __version__
from .common.jobs import CancelToken, JobCancelled, Progress

PROTOCOL_VERSION = 1
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".exr", ".npy", ".tga")


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
                 preview_interval: float = 1.0) -> None:
        self.id = job_id
        self.params = params
        self.workdir = workdir
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
        if out:
            return Path(out)
        return self.workdir / f"{self.id}_{name}{suffix}"

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

    if not isinstance(image, ImageData):
        image = image_from_array(np.asarray(image, np.float32), "srgb", name)
    out = ctx.output_path(".npy", name)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".npy":
        # Keep the colour space the data is in (save_image would linearise .npy).
        data = image.rgb if image.alpha is None else np.concatenate([image.rgb, image.alpha[..., None]], axis=-1)
        tmp = out.with_name(f".{out.name}.tmp.npy")
        np.save(tmp, np.ascontiguousarray(data, np.float32), allow_pickle=False)
        os.replace(tmp, out)
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


def job_selftest(ctx: JobContext) -> dict:
    """Exercise the plumbing without any model: steps with progress, preview, cancel."""
    steps = int(ctx.param("steps", 10))
    delay = float(ctx.param("delay", 0.05))
    if ctx.param("fail"):
        raise ValueError(str(ctx.param("fail")))
    for step in range(1, steps + 1):
        ctx.cancel.raise_if_cancelled()
        time.sleep(delay)
        preview = np.full((8, 8, 3), step / steps, np.float32) if ctx.param("preview") else None
        ctx.progress(Progress(step, steps, f"step {step}/{steps}", {"value": step / steps}, preview))
    return {"steps": steps}


def _config_for(module, value):
    """A JSON config dict -> the family's ``*Config`` dataclass (``from_dict``); anything else as is."""
    if not isinstance(value, dict):
        return value
    names = getattr(module, "__all__", None) or dir(module)
    for name in names:
        cls = getattr(module, name, None)
        if isinstance(cls, type) and name.endswith("Config") and hasattr(cls, "from_dict"):
            return cls.from_dict(value)
    return value


def _train(ctx: JobContext, train_fn: Callable, extra: dict | None = None,
           thumbnail_from: Callable | None = None) -> dict:
    exemplars = ctx.param("exemplars", required=True)
    if isinstance(exemplars, str):
        exemplars = [exemplars]
    out_path = Path(ctx.param("out_path", required=True))
    module = sys.modules[train_fn.__module__.rsplit(".", 1)[0]]
    kwargs = dict(config=_config_for(module, ctx.param("config")), seed=int(ctx.param("seed", 0)),
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


def job_texture_gan_train(ctx: JobContext) -> dict:
    from .texture_gan import load_texture_gan, train_texture_gan

    def sample(path: Path, size: int) -> np.ndarray:
        return load_texture_gan(path, device="cpu").generate(size, size, seed=0)

    return _train(ctx, train_texture_gan, thumbnail_from=sample)


def job_texture_gan_generate(ctx: JobContext) -> dict:
    from .texture_gan import load_texture_gan
    model = ctx.model(load_texture_gan, ctx.param("model", required=True))
    ctx.cancel.raise_if_cancelled()
    rgb = model.generate(int(ctx.param("width", 512)), int(ctx.param("height", 512)),
                         seed=int(ctx.param("seed", 0)), tileable=bool(ctx.param("tileable", True)),
                         variation=float(ctx.param("variation", 0.0)), tile_size=ctx.param("tile_size"))
    ctx.progress(Progress(1, 1, "generated"))
    return {"image": _write_image_result(ctx, rgb), "model_name": getattr(model, "name", "")}


def job_texture_vae_train(ctx: JobContext) -> dict:
    from .texture_vae import train_texture_vae
    return _train(ctx, train_texture_vae)


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


def job_style_stylize_optimize(ctx: JobContext) -> dict:
    from .style import stylize_optimize
    content = _load(ctx.param("content", required=True))
    style = _load(ctx.param("style", required=True))
    kwargs = {k: ctx.params[k] for k in ("content_weight", "style_weight", "preserve_color", "style_loss",
                                          "max_side", "vgg19_weights") if ctx.params.get(k) is not None}
    result = stylize_optimize(content, style, steps=int(ctx.param("steps", 200)),
                              strength=float(ctx.param("strength", 1.0)), seed=int(ctx.param("seed", 0)),
                              device=None if ctx.device == "auto" else ctx.device,
                              progress=ctx.progress, cancel=ctx.cancel, **kwargs)
    return {"image": _write_image_result(ctx, _with_colorspace_of(result, content))}


def job_style_train(ctx: JobContext) -> dict:
    from .style import train_style_model
    style = ctx.param("style", required=True)
    frames = ctx.param("frames")  # None: the core renders its own training frames
    out_path = Path(ctx.param("out_path", required=True))
    try:
        path = train_style_model(style, list(frames) if frames else None, out_path, int(ctx.param("steps", required=True)),
                                 config=_config_for(sys.modules[train_style_model.__module__.rsplit(".", 1)[0]],
                                                    ctx.param("config")), seed=int(ctx.param("seed", 0)),
                                 device=None if ctx.device == "auto" else ctx.device,
                                 progress=ctx.progress, cancel=ctx.cancel,
                                 checkpoint_every=int(ctx.param("checkpoint_every", 200)),
                                 resume=bool(ctx.param("resume", True)),
                                 vgg19_weights=ctx.param("vgg19_weights"))
    except JobCancelled as exc:
        exc.result = {"model": str(out_path) if out_path.exists() else None}  # type: ignore[attr-defined]
        raise
    return {"model": str(path)}


def job_style_stylize(ctx: JobContext) -> dict:
    source = _load(ctx.param("image", required=True))  # bad input fails before any model loads
    from .style import load_style_model
    model = ctx.model(load_style_model, ctx.param("model", required=True))
    ctx.cancel.raise_if_cancelled()
    result = model.stylize(source, strength=float(ctx.param("strength", 1.0)), tile_size=ctx.param("tile_size"))
    ctx.progress(Progress(1, 1, "stylized"))
    return {"image": _write_image_result(ctx, _with_colorspace_of(result, source))}


def job_style_stylize_sequence(ctx: JobContext) -> dict:
    from .common.images import save_image
    from .style import load_style_model, stylize_sequence
    from .style.blender_passes import frames_with_flows
    model = ctx.model(load_style_model, ctx.param("model", required=True))
    frames = [str(p) for p in ctx.param("frames", required=True)]
    if not frames:
        raise ValueError("no frames to stylize")
    output_dir = Path(ctx.param("output_dir", required=True))
    output_dir.mkdir(parents=True, exist_ok=True)
    suffix = ctx.param("format")
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
        ext = ("." + suffix.lstrip(".")) if suffix else Path(frames[index]).suffix.lower()
        if ext not in (".png", ".exr", ".jpg", ".jpeg", ".npy"):
            ext = ".png"
        out = output_dir / (Path(frames[index]).stem + ext)
        save_image(out, _with_colorspace_of(frame, None))
        written.append(str(out))
        ctx.progress(Progress(index + 1, len(frames), f"frame {index + 1}/{len(frames)}"))
    return {"frames": written, "output_dir": str(output_dir), "warnings": warnings}


def job_texture_synth_synthesize(ctx: JobContext) -> dict:
    exemplars = ctx.param("exemplars", required=True)
    if isinstance(exemplars, str):
        exemplars = [exemplars]
    images = [_srgb_rgb(_load(p)) for p in exemplars]  # bad input fails with the file's name
    from .texture_synth import synthesize
    steps = ctx.param("steps")
    scales = ctx.param("scales")
    result = synthesize(images, int(ctx.param("width", 512)), int(ctx.param("height", 512)),
                        seed=int(ctx.param("seed", 0)), tileable=bool(ctx.param("tileable", True)),
                        steps=[int(s) for s in steps] if isinstance(steps, list) else steps,
                        scales=None if scales is None else int(scales),
                        device=None if ctx.device == "auto" else ctx.device, progress=ctx.progress, cancel=ctx.cancel)
    return {"image": _write_image_result(ctx, result.image)}


def job_texture_pbr(ctx: JobContext) -> dict:
    source = _load(ctx.param("image", required=True))
    from .texture_pbr import PBRSettings, pbr_maps
    knobs = {name: ctx.params[name] for name in PBRSettings.__dataclass_fields__ if ctx.params.get(name) is not None}
    maps = pbr_maps(source, **knobs)
    ctx.progress(Progress(1, 1, "PBR maps ready"))
    # Non-colour data: stored as is (the host loads these as Non-Color).
    return {"maps": {name: _write_image_result(ctx, getattr(maps, name), name=name)
                     for name in ("height", "normal", "roughness", "ao")}}


JOB_KINDS: dict[str, Callable[[JobContext], dict]] = {
    "diagnostics": job_diagnostics,
    "selftest": job_selftest,
    "texture_gan.train": job_texture_gan_train,
    "texture_gan.generate": job_texture_gan_generate,
    "texture_vae.train": job_texture_vae_train,
    "texture_vae.vary": job_texture_vae_vary,
    "texture_vae.blend": job_texture_vae_blend,
    "style.stylize_optimize": job_style_stylize_optimize,
    "style.train": job_style_train,
    "style.stylize": job_style_stylize,
    "style.stylize_sequence": job_style_stylize_sequence,
    "texture_synth.synthesize": job_texture_synth_synthesize,
    "texture.pbr": job_texture_pbr,
}


# --------------------------------------------------------------------------- the worker

class Worker:
    def __init__(self, channel: _Channel, workdir: Path, device: str = "auto") -> None:
        self.channel = channel
        self.workdir = workdir
        self.device = device
        self.models = _ModelCache()
        self._queue: "queue.Queue[tuple[str, str, dict] | None]" = queue.Queue()
        self._pending: dict[str, tuple[str, dict]] = {}  # queued, not started
        self._cancelled_pending: set[str] = set()
        self._lock = threading.Lock()
        self._running_id: str | None = None
        self._running_token: CancelToken | None = None
        self._runner = threading.Thread(target=self._run_jobs, name="job-runner", daemon=True)

    def start(self) -> None:
        self._runner.start()
        self.channel.send("ready", pid=os.getpid(), version=__version__, protocol=PROTOCOL_VERSION,
                          python=sys.executable, workdir=str(self.workdir), kinds=sorted(JOB_KINDS))

    # ---- commands (main thread)
    def handle(self, line: str) -> bool:
        """Handle one request line; False means 'shut down now'."""
        line = line.strip()
        if not line:
            return True
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("a request must be a JSON object")
            cmd = request.get("cmd")
        except ValueError as exc:
            self.channel.send("protocol_error", message=f"bad request line: {exc}")
            return True
        if cmd == "submit":
            self._submit(request)
        elif cmd == "cancel":
            self._cancel(str(request.get("id", "")))
        elif cmd == "ping":
            self.channel.send("pong", running=self._running_id, queued=list(self._pending))
        elif cmd == "shutdown":
            return False
        else:
            self.channel.send("protocol_error", message=f"unknown command {cmd!r}")
        return True

    def _submit(self, request: dict) -> None:
        job_id = str(request.get("id") or "")
        kind = request.get("kind")
        params = request.get("params") or {}
        if not job_id:
            self.channel.send("protocol_error", message="submit needs an 'id'")
            return
        if kind not in JOB_KINDS:
            self.channel.send("error", id=job_id, error_type="ValueError",
                              message=f"unknown job kind {kind!r}; known: {', '.join(sorted(JOB_KINDS))}")
            return
        if not isinstance(params, dict):
            self.channel.send("error", id=job_id, error_type="ValueError", message="'params' must be an object")
            return
        with self._lock:
            self._pending[job_id] = (kind, params)
            position = len(self._pending) + (1 if self._running_id else 0)
        self.channel.send("queued", id=job_id, kind=kind, position=position)
        self._queue.put((job_id, kind, params))

    def _cancel(self, job_id: str) -> None:
        with self._lock:
            if job_id == self._running_id and self._running_token is not None:
                self._running_token.cancel()  # the job stops at its next step and reports 'cancelled'
                return
            if job_id in self._pending:
                del self._pending[job_id]
                self._cancelled_pending.add(job_id)
                self.channel.send("cancelled", id=job_id, result={}, message="removed from the queue")
                return
        self.channel.send("protocol_error", message=f"no queued or running job {job_id!r} to cancel")

    def shutdown(self, timeout: float = 120.0) -> None:
        with self._lock:
            for job_id in list(self._pending):
                self._cancelled_pending.add(job_id)
                self.channel.send("cancelled", id=job_id, result={}, message="worker shut down")
            self._pending.clear()
            if self._running_token is not None:
                self._running_token.cancel()
        self._queue.put(None)
        # Give a cancelled training job time to write its checkpoint.
        self._runner.join(timeout)
        self.channel.send("bye")

    # ---- job runner thread
    def _run_jobs(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            job_id, kind, params = item
            with self._lock:
                if job_id in self._cancelled_pending:
                    self._cancelled_pending.discard(job_id)
                    continue
                self._pending.pop(job_id, None)
                token = CancelToken()
                self._running_id, self._running_token = job_id, token
            final = self._run_one(job_id, kind, params, token)
            with self._lock:
                self._running_id, self._running_token = None, None
            # sent after clearing, so a 'ping' right after 'done' sees an idle worker
            self.channel.send(final[0], id=job_id, **final[1])

    def _run_one(self, job_id: str, kind: str, params: dict, token: CancelToken) -> tuple[str, dict]:
        ctx = JobContext(job_id, params, self.workdir, self.channel, token, self.device, self.models)
        self.channel.send("started", id=job_id, kind=kind)
        started = time.monotonic()
        try:
            result = JOB_KINDS[kind](ctx)
        except JobCancelled as exc:
            return "cancelled", {"result": getattr(exc, "result", {}) or {}, "message": str(exc) or "cancelled"}
        except Exception as exc:  # noqa: BLE001 - report everything, keep serving
            return "error", {"error_type": type(exc).__name__, "message": _error_message(exc),
                             "traceback": traceback.format_exc()}
        finally:
            if kind not in ("diagnostics", "selftest"):
                _free_cached_memory()
        return "done", {"result": result, "seconds": round(time.monotonic() - started, 3)}


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", help="folder for previews and results (default: a new temp folder)")
    parser.add_argument("--device", default=os.environ.get("NEURAL_TEXTURES_DEVICE", "auto"))
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
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
    worker = Worker(channel, workdir, args.device)
    worker.start()
    try:
        for line in sys.stdin:
            if not worker.handle(line):
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
