"""The worker's own jobs, no model involved: ``diagnostics`` (what the worker's Python has) and
``selftest`` (progress, previews, cancel and failure, for the protocol's tests and hosts)."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from .. import __version__
from ..common.jobs import Progress
from .context import JobContext
from .params import Param
from .registry import job


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
