"""Command line: ``python -m core {texture,vae,style} ...``.

Each model family registers its own sub-commands from its module here
(``texture.py``, ``vae.py``, ``style.py``) through ``register(subparsers)``;
each sub-parser sets ``func(args) -> int``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

from ..common.checkpoints import CheckpointError
from ..common.images import ImageError
from ..common.jobs import CancelToken, JobCancelled


def build_parser() -> argparse.ArgumentParser:
    from . import style, texture, vae

    parser = argparse.ArgumentParser(prog="python -m core", description="Neural textures and style, headless.")
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cuda, mps or cpu")
    families = parser.add_subparsers(dest="family", required=True)
    for module in (texture, vae, style):
        module.register(families)
    return parser


def _install_interrupt_handler(token: CancelToken):
    """First Ctrl-C asks the running job to stop cleanly (checkpoint saved); a second one aborts.

    Returns the previous handler (None off the main thread, where signals cannot be set).
    """
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        if token.cancelled:
            raise KeyboardInterrupt
        print("\nstopping after this step (Ctrl-C again to abort)...", file=sys.stderr)
        token.cancel()

    return signal.signal(signal.SIGINT, handler)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.cancel = CancelToken()
    previous_handler = _install_interrupt_handler(args.cancel)
    try:
        return _run(args)
    finally:
        if previous_handler is not None:
            signal.signal(signal.SIGINT, previous_handler)


def _run(args: argparse.Namespace) -> int:
    """The one error path: expected failures are one line naming the file (exit 2), anything
    else one line saying where the traceback was logged (exit 1); never a traceback."""
    try:
        return int(args.func(args) or 0)
    except JobCancelled:
        _say("cancelled; the last checkpoint was kept")
        return 130
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    except BrokenPipeError:
        # stdout or stderr was closed (`... | head`): the work itself is saved; exit quietly.
        _detach_output()
        return 0
    except (ImageError, CheckpointError, ValueError, OSError, MemoryError, FloatingPointError) as exc:
        _say(f"error: {describe_error(exc)}")
        return 2
    except Exception as exc:  # noqa: BLE001
        if _is_out_of_memory(exc):
            _say(f"error: {describe_error(exc)}")
            return 2
        log = _log_traceback()
        _say(f"error: unexpected {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
             f"(details in {log})")
        return 1


def describe_error(exc: BaseException) -> str:
    """One line an artist can act on, naming the file for I/O errors."""
    if _is_out_of_memory(exc) or isinstance(exc, MemoryError):
        return "out of memory; try a smaller size, --tile-size, or --device cpu"
    if isinstance(exc, OSError) and not isinstance(exc, (ImageError, CheckpointError)):
        reason = exc.strerror or str(exc)
        return f"{exc.filename}: {reason}" if exc.filename else reason
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _is_out_of_memory(exc: BaseException) -> bool:
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    from ..common.device import is_out_of_memory
    return is_out_of_memory(exc)


def _say(line: str) -> None:
    try:
        print(line, file=sys.stderr)
    except (OSError, ValueError):
        pass  # stderr is gone too


def _detach_output() -> None:
    """Point closed stdout/stderr at the null device so the interpreter's exit flush stays quiet."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        try:
            os.dup2(devnull, stream.fileno())
        except (OSError, ValueError):
            pass
    os.close(devnull)


CRASH_LOG = Path(tempfile.gettempdir()) / "neural_textures_cli.log"


def _log_traceback() -> Path:
    try:
        with open(CRASH_LOG, "a", encoding="utf-8") as fh:
            fh.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} python -m core {' '.join(sys.argv[1:])}\n")
            fh.write(traceback.format_exc())
        return CRASH_LOG
    except OSError:
        return Path("(the log could not be written)")
