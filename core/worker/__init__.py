"""Background worker process: ``python -m core.worker [--workdir DIR] [--device auto]``.

The Blender add-on (or any host) starts this with its own or a chosen Python
and talks JSON lines over stdin/stdout, so training and inference never block
the host's main thread and GPU memory goes away when the process exits.

Requests, one JSON object per line on stdin::

    {"cmd": "submit", "id": "j1", "kind": "<family>.generate", "params": {...}}
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
``"overwrite": true``. A new job kind is one function declaring its parameters, in its
family's ``core/<family>/jobs.py`` (found and imported by ``registry.load_family_jobs``)::

    @job("family.filter", image=INPUT, strength=Param("float", 0.0, 1.0, default=0.5), **IMAGE_OUTPUT)
    def job_family_filter(ctx: JobContext) -> dict: ...

Images travel as
files: inputs are paths (PNG/JPEG/EXR/.npy), image results are written as
``.npy`` float32 HxWxC arrays in the colour space named in the result
(``{"path", "colorspace", "width", "height", "channels"}``), or as PNG/EXR
when the job was given such an output path. Errors never kill the worker: the
job reports ``error`` with the exception type and a sentence, and the next job
runs. Anything a library prints goes to stderr, so stdout stays pure protocol.

The package: ``protocol`` (message framing), ``params`` (the parameter schema), ``registry``
(``@job`` and the discovery of the families' job modules), ``context`` (what a running job
sees), ``results`` and ``training`` (helpers job adapters share), ``lanes`` (the runner
threads and their supervisor), ``loop`` (the request handling), ``__main__`` (the command).
The names below are what job modules and hosts import from ``core.worker``.
"""

from __future__ import annotations

from .context import JobContext, ModelCache
from .lanes import lane_for
from .loop import Worker
from .params import (COMMON_PARAMS, IMAGE_OUTPUT, INPUT, MAX_SEED, MAX_SIDE, SEED, SIDE, TRAINING, Param, ParamError,
                     check_output)
from .protocol import PROTOCOL_VERSION, Channel
from .registry import JOB_KINDS, JOB_PARAMS, job, load_family_jobs, validate_params
from .results import load_input, srgb_rgb, with_colorspace_of, write_image_result
from .training import config_for, train_job, write_thumbnail
from . import builtin_jobs  # noqa: F401 - registers diagnostics and selftest

# The older single-module names some tests and hosts import.
_Channel, _ModelCache = Channel, ModelCache

__all__ = ["COMMON_PARAMS", "IMAGE_OUTPUT", "INPUT", "JOB_KINDS", "JOB_PARAMS", "MAX_SEED", "MAX_SIDE",
           "PROTOCOL_VERSION", "SEED", "SIDE", "TRAINING", "Channel", "JobContext", "ModelCache", "Param", "ParamError",
           "Worker", "check_output", "config_for", "job", "lane_for", "load_family_jobs", "load_input", "srgb_rgb",
           "train_job", "validate_params", "with_colorspace_of", "write_image_result", "write_thumbnail"]

load_family_jobs()  # last: the job modules import the names above from this package
