"""A pool of long-lived Ray actors that keep a model loaded and work through a queue of tasks.

One actor per GPU of the cluster (or per CPU slot when it has none). Each
actor builds its state once (``setup()``: load the model) at its first task
and keeps it for every task after, so a 2,000-frame shot loads the model once
per worker, not once per chunk. The driver hands one task at a time to each
idle actor, so no task ever runs on two workers at once. When an actor dies
(its process crashed, its node went away, it was killed), the task it held
goes back to the front of the queue and a fresh actor takes the dead one's
place: the task is redone elsewhere, never lost; tasks write their files
atomically, so the retry replaces anything the dead worker wrote with the same
bytes. An error raised *by* a task (a bad file, a bad setting) is not retried:
it would fail again; it stops the run with that error. Cancel kills every
actor at once (mid-frame) and raises ``JobCancelled``.
"""

from __future__ import annotations

import os
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Sequence

from ..common.jobs import CancelToken, JobCancelled, ProgressCallback, report
from . import require_ray

CORE_DIR = Path(__file__).resolve().parents[1]
MAX_ATTEMPTS = 3  # a task whose worker died this many times stops the run (something kills every worker)
POLL_SECONDS = 0.2  # how often the driver looks at cancel while tasks run
LOCAL_OBJECT_STORE_BYTES = 100 * 1024 ** 2  # tasks pass file names, not pixels: a small store is plenty


class FarmWorker:
    """The actor body (made a Ray actor class by ``_actor_class``): state built once, tasks run on it."""

    def __init__(self, setup: Callable[[], Any], task: Callable[[Any, Any], Any], threads: int):
        import torch
        torch.set_num_threads(max(1, int(threads)))  # its own CPU slot, no more: workers share the machine
        self.setup, self.task, self.state = setup, task, None

    def run(self, item):
        if self.state is None:
            self.state = self.setup()  # the model loads here, once per worker, and stays
        return self.task(self.state, item)

    def pid(self) -> int:
        return os.getpid()


def _actor_class():
    ray = require_ray()
    return ray.remote(max_restarts=0, max_task_retries=0)(FarmWorker)


def connect(address: str | None = "auto", num_cpus: int | None = None) -> bool:
    """Join a Ray cluster; returns True when this call started a local one (the caller shuts it down).

    ``None`` or ``"auto"``: the cluster this process is already connected to,
    else a running one found by Ray (``RAY_ADDRESS``, ``ray start`` on this
    machine), else a new local cluster. Any other value is a cluster address
    (``ray://host:10001`` or ``host:6379``); the ``core`` package travels to
    its workers with the job, which need torch and ray (``requirements*.txt``).
    """
    ray = require_ray()
    if ray.is_initialized():
        return False
    if address in (None, "auto", "local"):
        if address != "local":
            try:
                ray.init(address="auto", runtime_env={"py_modules": [str(CORE_DIR)]}, log_to_driver=False)
                return False
            except ConnectionError:
                pass  # no running cluster: start one here
        ray.init(num_cpus=num_cpus, include_dashboard=False, object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                 log_to_driver=False, runtime_env=_local_runtime_env())
        return True
    ray.init(address=address, runtime_env={"py_modules": [str(CORE_DIR)]}, log_to_driver=False)
    return False


def _local_runtime_env() -> dict:
    """Workers on this machine import this very ``core`` (whatever the working directory)."""
    paths = [str(CORE_DIR.parent)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(paths)}}


class RayPool:
    """Long-lived actors on the connected cluster; ``run`` works through a list of tasks on them.

    ``setup()`` builds a worker's state (runs in the worker, once); ``task(state,
    item)`` does one item and returns something small (file names, figures).
    Both must be picklable (module-level functions or ``functools.partial``).
    ``workers``: how many actors (default: one per GPU, else one per CPU).
    """

    def __init__(self, setup: Callable[[], Any], task: Callable[[Any, Any], Any], workers: int | None = None,
                 threads_per_worker: int = 1, use_gpus: bool | None = None, max_attempts: int = MAX_ATTEMPTS,
                 log: Callable[[str], None] | None = None):
        self.ray = require_ray()
        if not self.ray.is_initialized():
            raise RuntimeError("connect to a Ray cluster first (core.farm.ray_pool.connect)")
        resources = self.ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        self.use_gpus = gpus > 0 if use_gpus is None else bool(use_gpus)
        slots = gpus if self.use_gpus else max(1, int(resources.get("CPU", 1)) // max(1, threads_per_worker))
        self.size = max(1, int(workers or slots))
        self.setup, self.task, self.threads = setup, task, threads_per_worker
        self.max_attempts, self.log = max_attempts, log or (lambda message: None)
        self.retries: list[tuple[int, int]] = []  # (task index, attempt) of every task redone after a worker died
        self.actors = [self._new_actor() for _ in range(self.size)]

    def _new_actor(self):
        options: dict[str, Any] = {"num_cpus": self.threads, "num_gpus": 1 if self.use_gpus else 0}
        if _is_local(self.ray):  # a remote cluster gets the core with the job (connect's py_modules)
            options["runtime_env"] = _local_runtime_env()
        return _actor_class().options(**options).remote(self.setup, self.task, self.threads)

    def run(self, items: Sequence[Any], weights: Sequence[int] | None = None,
            progress: ProgressCallback | None = None, cancel: CancelToken | None = None,
            on_result: Callable[[int, Any], None] | None = None) -> list[Any]:
        """Results in the order of ``items``. ``weights``: each item's share of the progress (frames)."""
        ray = self.ray
        from ray.exceptions import RayActorError, RayTaskError
        weights = list(weights) if weights is not None else [1] * len(items)
        total, done = sum(weights), 0
        results: list[Any] = [None] * len(items)
        pending = deque(range(len(items)))
        idle = list(self.actors)
        running: dict[Any, tuple[Any, int]] = {}
        attempts = [0] * len(items)
        while pending or running:
            if cancel is not None and cancel.cancelled:
                self.kill()
                raise JobCancelled("cancelled by the user: every farm worker was stopped")
            while pending and idle:
                actor, index = idle.pop(0), pending.popleft()
                attempts[index] += 1
                running[actor.run.remote(items[index])] = (actor, index)
            ready, _ = ray.wait(list(running), num_returns=1, timeout=POLL_SECONDS)
            for ref in ready:
                actor, index = running.pop(ref)
                try:
                    results[index] = ray.get(ref)
                except RayTaskError as exc:  # the task itself failed: the same error on any worker
                    self.kill()
                    raise exc.as_instanceof_cause() from None
                except RayActorError:  # the worker died: replace it, redo its task first
                    if attempts[index] >= self.max_attempts:
                        self.kill()
                        raise RuntimeError(f"a farm worker died {attempts[index]} times on task {index}; stopped")
                    self.log(f"a worker died on task {index}; redoing it on another worker")
                    self.retries.append((index, attempts[index]))
                    self.actors = [a for a in self.actors if a is not actor]
                    self._forget(actor)
                    replacement = self._new_actor()
                    self.actors.append(replacement)
                    idle.append(replacement)
                    pending.appendleft(index)
                    continue
                idle.append(actor)
                done += weights[index]
                if on_result is not None:
                    on_result(index, results[index])
                report(progress, done, total, f"{sum(r is not None for r in results)}/{len(items)} chunks done")
        return results

    def _forget(self, actor) -> None:
        try:
            self.ray.kill(actor, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass

    def kill(self) -> None:
        """Stop every worker now (mid-task); the pool cannot run after this."""
        for actor in self.actors:
            self._forget(actor)

    def worker_pids(self, timeout: float = 60.0) -> list[int]:
        """Process ids of the live workers (for tests and logs)."""
        return self.ray.get([a.pid.remote() for a in self.actors], timeout=timeout)

    def __enter__(self) -> "RayPool":
        return self

    def __exit__(self, *exc) -> None:
        self.kill()


def _is_local(ray) -> bool:
    """True when every node of the cluster is this machine (workers can import this checkout)."""
    try:
        here = ray.util.get_node_ip_address()
        return all(node.get("NodeManagerAddress") == here for node in ray.nodes() if node.get("Alive"))
    except Exception:  # noqa: BLE001
        return False


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until true; TimeoutError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {timeout:.0f} s")
        time.sleep(0.1)
