"""The wire: JSON-lines events out on a private copy of stdout, request lines in from stdin.

Framing only; what a request means is ``loop.Worker``'s business.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np

PROTOCOL_VERSION = 1
JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MAX_REQUEST_BYTES = 16 * 1024 * 1024


class Channel:
    """Thread-safe JSON-lines writer on a private copy of the original stdout."""

    def __init__(self, stream) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, **fields}, default=_json_default)
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "__dataclass_fields__"):
        import dataclasses
        return dataclasses.asdict(obj)
    return str(obj)


def protect_stdout():
    """Keep fd 1 for the protocol only: everything else printed goes to stderr."""
    sys.stdout.flush()
    protocol_fd = os.dup(1)
    os.dup2(2, 1)  # C extensions writing to fd 1 now land on stderr
    sys.stdout = sys.stderr
    return os.fdopen(protocol_fd, "w", encoding="utf-8", buffering=1)


def request_lines(stream):
    """Request lines from a binary stream, decoded leniently (bad bytes cannot stop the loop);
    None for a line over MAX_REQUEST_BYTES, which is skipped without being held in memory."""
    while True:
        line = stream.readline(MAX_REQUEST_BYTES + 1)
        if not line:
            return
        if len(line) > MAX_REQUEST_BYTES and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):
                line = stream.readline(MAX_REQUEST_BYTES)
            yield None
            continue
        yield line.decode("utf-8", errors="replace")
