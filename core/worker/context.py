"""What a running job sees: ``JobContext`` (its parameters, progress, cancel, outputs) and the model cache."""

from __future__ import annotations

import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..common.jobs import CancelToken, Progress
from .params import check_output
from .protocol import Channel


class JobContext:
    """What a job handler gets: its params, progress/cancel plumbing, a scratch folder."""

    def __init__(self, job_id: str, params: dict, workdir: Path, channel: Channel,
                 cancel: CancelToken, default_device: str, models: "ModelCache",
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
            from ..common.images import save_image
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


class ModelCache:
    """The last few models loaded, keyed by loader, file (and its mtime) and device."""

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
