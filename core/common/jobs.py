"""Progress reporting and cooperative cancellation shared by every long job.

Long-running functions take ``progress: ProgressCallback | None`` and
``cancel: CancelToken | None``. They call ``progress(Progress(...))`` now and
then and ``cancel.raise_if_cancelled()`` between steps; a cancelled job raises
``JobCancelled`` after saving whatever it must not lose (e.g. a checkpoint).
"""

from __future__ import annotations

import math
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np


class JobCancelled(Exception):
    """Raised by a job that stopped because its CancelToken was set."""


@dataclass
class Progress:
    step: int
    total: int
    message: str = ""
    losses: dict[str, float] = field(default_factory=dict)
    # Optional preview, float32 HxWx3 in [0, 1] (sRGB-encoded), for the panel.
    preview: Optional[np.ndarray] = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        return 0.0 if self.total <= 0 else min(1.0, self.step / self.total)


ProgressCallback = Callable[[Progress], None]


class CancelToken:
    """Thread-safe flag a UI or worker sets to stop a job between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking at once on a cancel; True when cancelled."""
        return self._event.wait(seconds)

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise JobCancelled("cancelled by the user")


def report(progress: ProgressCallback | None, *args, **kwargs) -> None:
    """Call ``progress`` if given; keeps call sites one line long."""
    if progress is not None:
        progress(Progress(*args, **kwargs))


def part_progress(progress: ProgressCallback | None, offset: int, total: int, what: str,
                  length: int | None = None) -> ProgressCallback | None:
    """The progress of a part of a run (a phase, a trial) as steps ``offset``.. of the run's ``total``, its messages
    prefixed with ``what``. ``length``: the part's share of ``total``, its own fraction done scaled to it (for a
    part that counts more steps of its own); None: its steps count one for one."""
    if progress is None:
        return None

    def relay(p: Progress) -> None:
        if length is None:
            done = min(total, offset + p.step)
        else:
            done = offset + (round(length * min(1.0, p.step / p.total)) if p.total > 0 else 0)
        progress(Progress(done, total, f"{what}: {p.message}" if p.message else what, p.losses, p.preview, p.extra))
    return relay


def check_cancel(cancel: CancelToken | None) -> None:
    if cancel is not None:
        cancel.raise_if_cancelled()


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr`` cut to ``limit`` characters: error messages quote hostile input without flooding."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class TrainingDiverged(FloatingPointError):
    """A training's loss exploded or turned NaN/inf: the weights are no longer worth saving."""


class DivergenceMonitor:
    """Stops a training whose loss explodes, not only one whose loss turns NaN.

    A too-high learning rate often leaves the loss finite but 10^10-10^35 times its first
    value (the model then draws noise). The median of the last ``window`` losses (a single
    spike does not count) compared with the lowest loss level seen so far, including the
    very first loss (explosions start at step 2 or 3), detects that; ``factor`` is far above
    any fluctuation of a healthy GAN, VAE or style training.
    """

    def __init__(self, factor: float = 1000.0, window: int = 5) -> None:
        self.factor = factor
        self.recent: list[float] = []
        self.window = window
        self.reference = math.inf

    def check(self, step: int, loss: float) -> None:
        loss = float(loss)
        if not math.isfinite(loss):
            raise TrainingDiverged(f"training diverged at step {step} (the loss is {loss}); the last checkpoint "
                                   "is kept. Lower the learning rate and resume.")
        self.recent = (self.recent + [abs(loss)])[-self.window:]
        if len(self.recent) == 1:
            self.reference = min(self.reference, self.recent[0])
        if len(self.recent) < 3:
            return
        level = sorted(self.recent)[len(self.recent) // 2]
        if level > self.factor * max(self.reference, 1e-12):
            raise TrainingDiverged(f"training diverged at step {step}: the loss grew from {self.reference:.3g} to "
                                   f"{level:.3g}; the last checkpoint is kept. Lower the learning rate and resume.")
        self.reference = min(self.reference, level)


class StopSignals:
    """While entered (in the main thread), SIGTERM and SIGINT only set ``requested`` (and ``signal``, the last
    one received): a time-budgeted training then stops at the end of its step and writes its checkpoint, so
    ``kill`` loses nothing."""

    def __init__(self) -> None:
        self.requested = False
        self.signal: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._request)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _request(self, signum, frame) -> None:
        self.requested, self.signal = True, signum


LOSS_READ_EVERY = 25  # steps between host reads of a GPU training's losses


def _loss_read_every(losses: dict) -> int:
    """1 for losses on the CPU (reading them costs nothing) or plain numbers, else ``LOSS_READ_EVERY``."""
    devices = {v.device.type for v in losses.values() if hasattr(v, "device")}  # tensors (no torch import here)
    return LOSS_READ_EVERY if devices - {"cpu"} else 1


def timed_training(step_fn: Callable[[], dict], save: Callable[[int, float, dict], None], step: int,
                   steps: int | None, minutes: float | None, began: float, losses: dict, trained_seconds: float, *,
                   checkpoint_minutes: float, name: str, progress: ProgressCallback | None = None,
                   cancel: CancelToken | None = None, message: str = "",
                   diverged: type[Exception] = RuntimeError) -> dict:
    """The loop of a resumable training that stops at ``steps`` total steps or ``minutes`` after ``began``
    (``time.perf_counter()``), whichever comes first: one ``step_fn()`` a step (it returns its losses),
    ``save(step, total seconds, losses)`` every ``checkpoint_minutes``, on cancel and at the end.
    Returns {"steps", "seconds", "losses"} (seconds: ``trained_seconds`` before plus this session's).

    The losses (device tensors) are read back every step on the CPU but only every ``LOSS_READ_EVERY`` steps
    elsewhere, and always before a save: each read makes the host wait for the GPU's queue (reading every
    step was one wait per loss per step). Progress in between shows the last losses read."""
    total = steps if steps is not None else 10 ** 9
    report(progress, step, total, "starting" if step == 0 else f"resumed at step {step}", losses)
    loop_start = last_save = time.perf_counter()
    deadline = began + minutes * 60 if minutes is not None else math.inf
    pending: dict | None = None  # the last step's losses, not read yet

    def read() -> dict:
        """The pending losses as numbers, in one host read; a diverged training raises (nothing is saved)."""
        nonlocal pending
        if pending is None:
            return losses
        values = pending.values()
        if values and all(hasattr(v, "device") for v in values):
            import torch

            numbers = torch.stack([v.detach().float().reshape(()) for v in values]).tolist()
        else:
            numbers = [float(v) for v in values]
        read_losses, pending = dict(zip(pending, numbers)), None
        if not all(math.isfinite(v) for v in numbers):
            raise diverged(f"training diverged by step {step} ({read_losses}); the last checkpoint is kept")
        return read_losses

    with StopSignals() as stop:  # SIGTERM: stop after this step, with a checkpoint (below)
        while step < total and time.perf_counter() < deadline and not stop.requested:
            if cancel is not None and cancel.cancelled:
                losses = read()
                save(step, trained_seconds + time.perf_counter() - loop_start, losses)
                raise JobCancelled(f"training cancelled at step {step}; checkpoint saved to {name}")
            pending = step_fn()
            step += 1
            save_now = time.perf_counter() - last_save > checkpoint_minutes * 60
            if save_now or step % _loss_read_every(pending) == 0 or step == total:
                losses = read()
            if save_now:
                save(step, trained_seconds + time.perf_counter() - loop_start, losses)
                last_save = time.perf_counter()
            report(progress, step, total, message, losses)
    losses = read()
    seconds = trained_seconds + time.perf_counter() - loop_start
    save(step, seconds, losses)
    if stop.signal == signal.SIGINT and cancel is not None:
        # Ctrl-C with a caller that can be cancelled (the CLI, a worker job): it is told, as for its own token.
        cancel.cancel()
        raise JobCancelled(f"training cancelled at step {step}; checkpoint saved to {name}")
    return {"steps": step, "seconds": seconds, "losses": losses}
