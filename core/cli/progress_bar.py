"""A dependency-free terminal progress bar usable as a ProgressCallback."""

from __future__ import annotations

import sys
import time

from ..common.jobs import Progress


class ProgressBar:
    def __init__(self, label: str, stream=None, width: int = 30, min_interval: float = 0.1):
        self.label = label
        self.stream = stream or sys.stderr
        self.width = width
        self.min_interval = min_interval
        self._start = time.monotonic()
        self._last = 0.0

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        done = p.total > 0 and p.step >= p.total
        if not done and now - self._last < self.min_interval:
            return
        self._last = now
        if self.stream is None:
            return
        elapsed = now - self._start
        losses = " ".join(f"{k}={v:.4g}" for k, v in p.losses.items())
        if p.total > 0:
            filled = int(self.width * p.fraction)
            eta = (elapsed / p.step * (p.total - p.step)) if p.step > 0 else 0.0
            line = (f"\r{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {p.step}/{p.total} "
                    f"{elapsed:5.1f}s eta {eta:5.1f}s {losses} {p.message}")
        else:  # the total is unknown (frames read lazily): count, no bar and no estimate
            line = f"\r{self.label} {p.step} done {elapsed:5.1f}s {losses} {p.message}"
        try:
            self.stream.write(line[:160].ljust(80))
            if done:
                self.stream.write("\n")
            self.stream.flush()
        except (OSError, ValueError):
            # A closed terminal or pipe (`... | head`) must not stop a training: stop drawing instead.
            self.stream = None
