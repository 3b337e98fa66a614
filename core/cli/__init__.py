"""Command line: ``python -m core {texture,vae,style} ...``.

Each model family registers its own sub-commands from its module here
(``texture.py``, ``vae.py``, ``style.py``) through ``register(subparsers)``;
each sub-parser sets ``func(args) -> int``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

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
    try:
        return int(args.func(args) or 0)
    except (ImageError, CheckpointError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except JobCancelled:
        print("cancelled; the last checkpoint was kept", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
