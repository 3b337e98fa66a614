"""Talk to the worker process (``python -m core.worker``): spawn, submit, cancel, poll.

Pure Python (no bpy) so it can be reasoned about and tested apart from
Blender. A reader thread turns the worker's stdout lines into events on a
queue; ``JobManager.poll()`` (called on Blender's main thread by a timer)
applies them to ``Job`` records and runs each finished job's ``on_done``
callback there, where touching bpy data is safe. ``poll()`` never blocks.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

ACTIVE_STATES = ("starting", "queued", "running")
FINAL_STATES = ("done", "error", "cancelled")


@dataclass
class Job:
    id: str
    kind: str
    params: dict
    label: str = ""
    state: str = "starting"
    step: int = 0
    total: int = 0
    message: str = ""
    losses: dict = field(default_factory=dict)
    preview: Optional[str] = None
    result: dict = field(default_factory=dict)
    error_type: str = ""
    error: str = ""
    created: float = field(default_factory=time.time)
    started: float = 0.0
    finished: float = 0.0
    on_done: Optional[Callable[["Job"], None]] = None
    # filled by on_done: what the job produced on the host side (image names, ...)
    outputs: dict = field(default_factory=dict)
    # where it ran ("CPU", "CUDA: <card>"), from the worker's started/done events
    device: str = ""
    # fallbacks and other notes from the worker (out of memory -> CPU, ...), in arrival order
    warnings: list = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def fraction(self) -> float:
        return 0.0 if self.total <= 0 else min(1.0, self.step / self.total)

    @property
    def elapsed(self) -> float:
        if not self.started:
            return 0.0
        return (self.finished or time.time()) - self.started


class WorkerError(RuntimeError):
    """The worker could not be started or stopped unexpectedly."""


class WorkerClient:
    """One worker process and the pipe to it."""

    def __init__(self, python: str, pythonpath: list[str], workdir: Path, device: str = "auto",
                 env: dict | None = None, threads: int = 0, allow_output: list[Path] | None = None) -> None:
        self.python = python or sys.executable
        self.pythonpath = [str(p) for p in pythonpath if p]
        self.workdir = Path(workdir)
        self.device = device
        self.extra_env = env or {}
        self.threads = threads
        self.allow_output = [Path(p) for p in allow_output or []]  # folders jobs may write results into
        self.events: "queue.Queue[dict]" = queue.Queue()
        self.proc: subprocess.Popen | None = None
        self.ready: dict = {}
        self._log = None
        self._stopping = False

    @property
    def log_path(self) -> Path:
        return self.workdir / "worker.log"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(self.extra_env)
        existing = env.get("PYTHONPATH", "")
        env["PYTHONPATH"] = os.pathsep.join(self.pythonpath + ([existing] if existing else []))
        env["PYTHONUNBUFFERED"] = "1"
        if os.path.realpath(self.python) != os.path.realpath(sys.executable):
            env.pop("PYTHONHOME", None)  # Blender's PYTHONHOME would confuse another Python
        cmd = [self.python, "-m", "core.worker", "--workdir", str(self.workdir), "--device", self.device]
        if self.threads:
            cmd += ["--threads", str(self.threads)]
        for folder in self.allow_output:
            cmd += ["--allow-output", str(folder)]
        self._log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                         env=env, cwd=str(self.workdir), bufsize=0,
                                         creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))
        except OSError as exc:
            self._log.close()
            raise WorkerError(f"could not start the worker with {self.python!r}: {exc}. "
                              "Check 'Worker Python' in the add-on preferences.") from exc
        threading.Thread(target=self._read, args=(self.proc,), name="neural-worker-reader", daemon=True).start()

    def _read(self, proc: subprocess.Popen) -> None:
        for raw in proc.stdout:
            try:
                event = json.loads(raw.decode("utf-8"))
            except ValueError:
                continue  # not protocol; the worker keeps stdout clean, but never crash on noise
            if isinstance(event, dict):
                self.events.put(event)
        self.events.put({"event": "_exited"})

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send(self, **request: Any) -> None:
        if not self.alive:
            raise WorkerError("the worker is not running")
        try:
            self.proc.stdin.write((json.dumps(request) + "\n").encode("utf-8"))
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise WorkerError(f"the worker stopped ({exc})") from exc

    def log_tail(self, lines: int = 8) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def stop(self, grace: float = 0.5) -> None:
        """Ask the worker to exit, then terminate and kill it: returns within about ``grace`` + 0.5 s (more only
        while a loaded machine reaps the killed process).

        A job running at that moment is cancelled; a training job keeps its last
        periodic checkpoint (and the one written on cancel when it fits in ``grace``).
        """
        self._stopping = True
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                self.send(cmd="shutdown")
                proc.stdin.close()
            except (WorkerError, OSError):
                pass
            # SIGKILL cannot be ignored: wait for the kernel to reap the process, so that it is gone (and its
            # memory free) when stop returns; under heavy load that can take a moment past 0.25 s.
            for end, wait in ((None, grace), (proc.terminate, 0.25), (proc.kill, 10.0)):
                if end is not None:
                    try:
                        end()
                    except OSError:
                        pass
                try:
                    proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        for stream in (proc.stdin, proc.stdout):
            try:
                stream.close()
            except (OSError, ValueError):
                pass
        if self._log is not None:
            self._log.close()
            self._log = None


class JobManager:
    """The one job queue of the add-on: starts the worker on demand, tracks jobs, runs callbacks."""

    def __init__(self, make_client: Callable[[], WorkerClient], keep_finished: int = 20) -> None:
        self._make_client = make_client
        self.client: WorkerClient | None = None
        self.jobs: "OrderedDict[str, Job]" = OrderedDict()
        self.keep_finished = keep_finished
        self._ids = itertools.count(1)
        self._prefix = f"{os.getpid()}-{int(time.time())}"
        self.changed = False  # set by poll() when something the UI shows changed

    # ---- worker
    @property
    def worker_running(self) -> bool:
        return self.client is not None and self.client.alive

    def ensure_worker(self) -> WorkerClient:
        if self.client is None or not self.client.alive:
            self.client = self._make_client()
            self.client.start()
        return self.client

    def stop_worker(self, grace: float = 0.5) -> None:
        """Stop the worker (frees its GPU memory) within about a second. Jobs still active end as cancelled."""
        client, self.client = self.client, None
        if client is not None:
            client.stop(grace)
            self._drain(client)
        for job in self.jobs.values():
            if job.active:
                self._finish(job, "cancelled", message="the worker was stopped")

    # ---- jobs
    def submit(self, kind: str, params: dict, label: str = "",
               on_done: Callable[[Job], None] | None = None) -> Job:
        job = Job(id=f"{self._prefix}-{next(self._ids)}", kind=kind, params=params, label=label or kind,
                  on_done=on_done)
        self.jobs[job.id] = job
        self._trim()
        try:
            client = self.ensure_worker()
            client.send(cmd="submit", id=job.id, kind=kind, params=params)
        except WorkerError as exc:
            self._finish(job, "error", error_type="WorkerError", error=str(exc))
            self._run_callback(job)
        self.changed = True
        return job

    def cancel(self, job_id: str) -> bool:
        job = self.jobs.get(job_id)
        if job is None or not job.active:
            return False
        job.message = "cancelling..."
        if self.client is not None and self.client.alive:
            try:
                self.client.send(cmd="cancel", id=job_id)
                return True
            except WorkerError:
                pass
        self._finish(job, "cancelled", message="cancelled")
        return True

    @property
    def active_jobs(self) -> list[Job]:
        return [j for j in self.jobs.values() if j.active]

    def clear_finished(self) -> None:
        for job_id in [j.id for j in self.jobs.values() if not j.active]:
            del self.jobs[job_id]
        self.changed = True

    def _trim(self) -> None:
        finished = [j.id for j in self.jobs.values() if not j.active]
        for job_id in finished[: max(0, len(finished) - self.keep_finished)]:
            del self.jobs[job_id]

    # ---- events (main thread)
    def poll(self, max_events: int = 200) -> list[Job]:
        """Apply waiting worker events; run callbacks of jobs that finished. Never blocks."""
        finished: list[Job] = []
        client = self.client
        if client is None:
            return finished
        finished.extend(self._apply_waiting(client, max_events))
        if client is self.client and not client.alive and client.events.empty():
            # the worker died: tell every job still waiting why
            tail = client.log_tail()
            for job in self.active_jobs:
                self._finish(job, "error", error_type="WorkerError",
                             error=f"the worker process stopped unexpectedly (exit code {client.proc.returncode})"
                                   + (f": {tail.splitlines()[-1]}" if tail else ""))
                finished.append(job)
            self.client = None
        for job in finished:
            self._run_callback(job)
        if finished:
            self._trim()
        return finished

    def _drain(self, client: WorkerClient) -> None:
        for job in self._apply_waiting(client):
            self._run_callback(job)

    def _apply_waiting(self, client: WorkerClient, max_events: int | None = None) -> list[Job]:
        """Apply up to ``max_events`` waiting events (all when None); the jobs they finished."""
        finished: list[Job] = []
        while max_events is None or max_events > 0:
            if max_events is not None:
                max_events -= 1
            try:
                event = client.events.get_nowait()
            except queue.Empty:
                break
            job = self._apply(event, client)
            if job is not None and not job.active:
                finished.append(job)
        return finished

    def _apply(self, event: dict, client: WorkerClient) -> Job | None:
        kind = event.get("event")
        if kind == "ready":
            client.ready = event
            return None
        job = self.jobs.get(str(event.get("id", "")))
        if job is None or not job.active:
            return None
        self.changed = True
        self._note_device_and_warnings(job, event)
        if kind == "queued":
            job.state = "queued"
            job.message = f"waiting ({event.get('position', 1) - 1} ahead)" if event.get("position", 1) > 1 else ""
        elif kind == "started":
            job.state, job.started, job.message = "running", time.time(), "started"
        elif kind == "progress":
            job.state = "running"
            job.step, job.total = int(event.get("step", 0)), int(event.get("total", 0))
            job.message = event.get("message") or job.message
            job.losses = event.get("losses") or {}
            if event.get("preview"):
                job.preview = event["preview"]
        elif kind == "done":
            self._finish(job, "done", result=event.get("result") or {})
        elif kind == "cancelled":
            self._finish(job, "cancelled", result=event.get("result") or {}, message=event.get("message", ""))
        elif kind == "error":
            self._finish(job, "error", error_type=event.get("error_type", "Error"), error=event.get("message", ""))
        return job

    @staticmethod
    def _note_device_and_warnings(job: Job, event: dict) -> None:
        """Any event may name the device and carry warnings (also inside a result); keep each once."""
        device = event.get("device")
        if isinstance(device, dict):  # {"type": "cuda", "name": "..."}
            device = ": ".join(str(v) for v in (device.get("type", "").upper(), device.get("name")) if v)
        if device:
            kind, _, card = str(device).partition(" ")  # "cuda:0 NVIDIA H100" -> "CUDA:0 NVIDIA H100"
            job.device = " ".join(filter(None, (kind.upper(), card)))
        found = []
        for source in (event, event.get("result") if isinstance(event.get("result"), dict) else {}):
            value = source.get("warnings") or source.get("warning") or []
            found += [value] if isinstance(value, str) else list(value)
            if source.get("fallback"):
                found.append(str(source["fallback"]))
        for text in found:
            if text and str(text) not in job.warnings:
                job.warnings.append(str(text))

    def _finish(self, job: Job, state: str, result: dict | None = None, error_type: str = "", error: str = "",
                message: str = "") -> None:
        job.state = state
        job.finished = time.time()
        job.result = result or job.result
        job.error_type, job.error = error_type or job.error_type, error or job.error
        job.message = message or {"done": "finished", "error": "failed", "cancelled": "cancelled"}[state]
        self.changed = True

    def _run_callback(self, job: Job) -> None:
        callback, job.on_done = job.on_done, None
        if callback is None:
            return
        try:
            callback(job)
        except Exception as exc:  # a failing callback becomes the job's error, never a crash
            job.state, job.error_type = "error", type(exc).__name__
            job.error = f"the result could not be brought into Blender: {exc}"
            import traceback
            traceback.print_exc()

    def wait(self, job: Job, timeout: float | None = None, interval: float = 0.02) -> Job:
        """Block until ``job`` finishes (for background mode and scripts)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self.poll()
            if not job.active:
                self._run_callback(job)  # no-op when poll() already ran it
                return job
            if self.client is None:
                self._finish(job, "error", error_type="WorkerError", error="the worker is not running")
                continue
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job.label} did not finish within {timeout} s")
            time.sleep(interval)
