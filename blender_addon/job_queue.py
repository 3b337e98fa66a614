"""The add-on's job queue on Blender's side: one worker, polled by a bpy.app.timers timer.

``submit()`` hands a job to the worker and returns at once; ``poll_timer``
(the timer function) applies worker events and runs result callbacks on the
main thread, then redraws the panels. It only reads a queue, so the interface
never waits for a model.

When Blender has no interface (``bpy.app.background``: ``blender -b`` or the
bpy module) there is no event loop to run timers, so ``submit(..., wait=True)``
(what every operator does there) blocks until the job is finished, polling
the same way. Jobs always run in the worker process, with or without UI, so
the behaviour (and PyTorch's memory) stays out of Blender's process.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Callable

import bpy

from . import core_access, preferences
from .worker_client import Job, JobManager, WorkerClient

POLL_INTERVAL_ACTIVE = 0.1
_manager: JobManager | None = None
_workdir: Path | None = None
_diagnostics: dict = {}


def workdir() -> Path:
    """Scratch folder for images passed to and from the worker (per Blender session)."""
    global _workdir
    if _workdir is None or not _workdir.is_dir():
        _workdir = Path(tempfile.mkdtemp(prefix="neural_textures_"))
    return _workdir


def _make_client() -> WorkerClient:
    context = bpy.context
    prefs = preferences.get_prefs(context)
    pythonpath = [str(core_access.core_parent()), str(preferences.deps_dir())]
    return WorkerClient(python=preferences.worker_python(context), pythonpath=pythonpath,
                        workdir=workdir() / "worker", device=preferences.worker_device(context),
                        threads=int(getattr(prefs, "worker_threads", 0)),
                        allow_output=[preferences.results_dir()] if _worker_confines_outputs() else [])


def _worker_confines_outputs() -> bool:
    """Whether this core's worker limits where jobs write (then it takes --allow-output for the results folder)."""
    try:
        return hasattr(core_access.core_module("worker"), "JOB_PARAMS")
    except Exception:  # noqa: BLE001 - an import problem shows when the worker starts
        return False


def manager() -> JobManager:
    global _manager
    if _manager is None:
        _manager = JobManager(_make_client)
    return _manager


def submit(kind: str, params: dict, label: str = "", on_done: Callable[[Job], None] | None = None,
           wait: bool | None = None) -> Job:
    """Queue a job in the worker. ``on_done(job)`` runs on the main thread when it ends.

    ``wait=None`` blocks only without a UI (``bpy.app.background``), where no
    timer would ever fire; ``False`` never blocks (the caller drives
    ``poll_timer``), ``True`` always blocks.
    """
    params = dict(params)
    params.setdefault("device", preferences.worker_device())
    job = manager().submit(kind, params, label, _with_cleanup(on_done))
    if should_wait(wait):
        wait_for(job)
    else:
        ensure_timer()
    return job


def core_has_job(kind: str) -> bool:
    """Whether the core the worker runs knows a job kind (features that arrive with a newer core)."""
    try:
        return kind in core_access.core_module("worker").JOB_KINDS
    except Exception:  # noqa: BLE001 - an import problem shows when a job runs
        return False


def core_accepts(kind: str, param: str) -> bool:
    """Whether a job kind takes a parameter (the worker refuses unknown ones); True for cores without schemas."""
    try:
        schemas = getattr(core_access.core_module("worker"), "JOB_PARAMS", None)
    except Exception:  # noqa: BLE001
        return False
    return True if schemas is None else param in schemas.get(kind, {})


def should_wait(wait: bool | None) -> bool:
    return bool(bpy.app.background) if wait is None else bool(wait)


def wait_for(job: Job) -> Job:
    """Block until ``job`` ends, polling like the timer (background mode and scripts)."""
    manager().wait(job)
    _after_job()
    return job


def _with_cleanup(on_done):
    """Run ``on_done``, then delete the job's temporary files (inputs no other job needs, result arrays)."""
    def callback(job: Job) -> None:
        try:
            if on_done is not None:
                on_done(job)
            if job.state == "done" and bpy.app.background is False:
                _undo_push(job.label)
        finally:
            _remove_temporary_files(job)
    return callback


def _temporary_paths(value) -> list[Path]:
    values = value if isinstance(value, (list, tuple)) else [value]
    root = str(workdir())
    return [Path(v) for v in values if isinstance(v, str) and v.startswith(root)]


def _remove_temporary_files(job: Job) -> None:
    still_needed = {p for other in manager().active_jobs for v in other.params.values() for p in _temporary_paths(v)}
    for value in job.params.values():
        for path in _temporary_paths(value):
            if path not in still_needed:
                path.unlink(missing_ok=True)
    image = job.result.get("image") if isinstance(job.result, dict) else None
    if isinstance(image, dict):
        for path in _temporary_paths(image.get("path")):
            path.unlink(missing_ok=True)  # already copied into a packed Blender image


def _undo_push(label: str) -> None:
    """Results arrive outside any operator: make them an undo step so Ctrl+Z does not drop them silently."""
    try:
        bpy.ops.ed.undo_push(message=f"Neural Textures: {label}")
    except RuntimeError:
        pass  # no window context (e.g. during file load); the data is still there


def cancel(job_id: str) -> bool:
    return manager().cancel(job_id)


def stop_worker() -> None:
    """Stop the worker process: frees its (GPU) memory; running jobs are cancelled and keep checkpoints."""
    if _manager is not None:
        _manager.stop_worker()
    _tag_redraw()


def poll_timer():
    """The bpy.app.timers function: apply worker events; keep ticking while jobs are active."""
    if _manager is None:
        return None
    finished = _manager.poll()
    for job in finished:
        if job.state == "error":
            _notify_error(job)
    if finished:
        _after_job()
    if _manager.changed:
        _manager.changed = False
        _tag_redraw()
    return POLL_INTERVAL_ACTIVE if _manager.active_jobs else None


def ensure_timer() -> None:
    if not bpy.app.timers.is_registered(poll_timer):
        bpy.app.timers.register(poll_timer, first_interval=POLL_INTERVAL_ACTIVE, persistent=True)


def _after_job() -> None:
    prefs = preferences.get_prefs()
    if _manager is not None and not getattr(prefs, "keep_worker", True) and not _manager.active_jobs:
        _manager.stop_worker()


def _notify_error(job: Job) -> None:
    """Print the error, and show it in a popup only where one can open.

    Timers run without a window in the context; ``popup_menu`` there crashes
    Blender (a segmentation fault in ``blender -b``), so the popup gets an
    explicit window and is skipped without an interface. The Jobs panel and the
    status bar show the error either way.
    """
    print(f"Neural Textures: {job.label} failed: {job.error}", file=sys.stderr)
    wm = bpy.context.window_manager
    if bpy.app.background or wm is None or not wm.windows:
        return
    window = bpy.context.window or wm.windows[0]

    def draw(menu, _context):
        for line in _wrap(job.error, 80):
            menu.layout.label(text=line)

    with bpy.context.temp_override(window=window, screen=window.screen):
        wm.popup_menu(draw, title=f"{job.label} failed", icon="ERROR")


def _wrap(text: str, width: int) -> list[str]:
    import textwrap
    return textwrap.wrap(text, width) or [""]


def _tag_redraw() -> None:
    wm = bpy.context.window_manager
    if wm is None:
        return
    for window in wm.windows:
        for area in window.screen.areas:
            if area.type in ("VIEW_3D", "IMAGE_EDITOR", "NODE_EDITOR", "PREFERENCES"):
                area.tag_redraw()


def diagnostics_text() -> str:
    if not _diagnostics:
        return ""
    d = _diagnostics
    if d.get("error"):
        return f"Worker check failed: {d['error']}"
    if not d.get("torch"):
        return d.get("torch_error", "PyTorch is not installed for the worker's Python")
    gpu = ", ".join(d.get("devices") or []) or ("Apple MPS" if d.get("mps") else "none (CPU only)")
    return f"Python {d.get('python')}  PyTorch {d.get('torch')}\nGPU: {gpu}"


def set_diagnostics(info: dict) -> None:
    _diagnostics.clear()
    _diagnostics.update(info)


def shutdown() -> None:
    """Called from unregister: no timer, no worker, no temp files left behind."""
    global _manager, _workdir
    if bpy.app.timers.is_registered(poll_timer):
        bpy.app.timers.unregister(poll_timer)
    if _manager is not None:
        _manager.stop_worker()  # never blocks more than about a second
        _manager = None
    if _workdir is not None:
        import shutil
        shutil.rmtree(_workdir, ignore_errors=True)
        _workdir = None
    _diagnostics.clear()
