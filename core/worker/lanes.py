"""Lanes and their supervisor: two FIFO queues, each run by one thread, a job at a time.

Trainings (kinds ending in ".train") run in the "train" lane, every other job in the
"interactive" one, so a generate never waits behind a training. A runner that fails (a bug)
reports its job and is started again; a job's own failure is only that job's ``error``.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
import traceback
from pathlib import Path

from ..common.jobs import CancelToken, JobCancelled, short_repr
from .context import JobContext, ModelCache
from .protocol import Channel
from .registry import JOB_KINDS

LANES = ("train", "interactive")


class Lane:
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


class LaneSupervisor:
    """Runs queued jobs in their lanes and reports each one's end; ``loop.Worker`` feeds it."""

    def __init__(self, channel: Channel, workdir: Path, device: str, output_roots: list[Path]) -> None:
        self.channel = channel
        self.workdir = workdir
        self.device = device
        self.output_roots = output_roots
        self.models = ModelCache()
        self.restarts = 0  # runner restarts after an unexpected failure (a bug; the fuzz run counts them)
        self._lanes = {name: Lane(name) for name in LANES}
        self._lock = threading.Lock()
        self._devices: dict[str, str] = {}

    def start_lanes(self) -> None:
        for lane in self._lanes.values():
            lane.thread = threading.Thread(target=self._supervise, args=(lane,), name=f"job-runner-{lane.name}",
                                           daemon=True)
            lane.thread.start()

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
    def _supervise(self, lane: Lane) -> None:
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
                                      message=f"internal worker error: {error_message(exc)}",
                                      traceback=traceback.format_exc())
                self.channel.send("runner_restarted", lane=lane.name, restarts=self.restarts,
                                  message=f"the {lane.name} job runner failed ({type(exc).__name__}) and was "
                                          "restarted; queued jobs go on")

    def _run_jobs(self, lane: Lane) -> None:
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
            return "error", {"error_type": type(exc).__name__, "message": error_message(exc),
                             "traceback": traceback.format_exc()}
        finally:
            if kind not in ("diagnostics", "selftest"):
                free_cached_memory()
        return "done", {"result": result, "seconds": round(time.monotonic() - started, 3), "device": device}

    def device_label(self, preference: str) -> str:
        """What a job runs on, for the host to show: "cpu", "mps" or "cuda:0 NVIDIA H100"."""
        if preference not in self._devices:
            try:
                import torch
                from ..common.device import pick_device
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


def error_message(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    try:
        from ..common.device import is_out_of_memory
        if is_out_of_memory(exc):
            return (f"out of memory: {text.splitlines()[0]}. Try a smaller size, a tile size, "
                    "or the CPU device.")
    except ImportError:
        pass
    if isinstance(exc, ModuleNotFoundError) and exc.name in ("torch", "safetensors", "PIL"):
        return (f"{exc.name} is not installed for the worker's Python ({sys.executable}). Install the "
                "dependencies from the add-on preferences or choose a Python that has them.")
    return text


def free_cached_memory() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
