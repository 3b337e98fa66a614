"""Progress reporting and cooperative cancellation shared by every long job.

Long-running functions take ``progress: ProgressCallback | None`` and
``cancel: CancelToken | None``. They call ``progress(Progress(...))`` now and
then and ``cancel.raise_if_cancelled()`` between steps; a cancelled job raises
``JobCancelled`` after saving whatever it must not lose (e.g. a checkpoint).
"""

from __future__ import annotations

import threading
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


def check_cancel(cancel: CancelToken | None) -> None:
    if cancel is not None:
        cancel.raise_if_cancelled()


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr`` cut to ``limit`` characters: error messages quote hostile input without flooding."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
