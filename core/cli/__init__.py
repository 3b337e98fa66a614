"""Command line: ``python -m core {texture,vae,style} ...``.

Each model family registers its own sub-commands from its module here
(``texture.py``, ``vae.py``, ``style.py``) through ``register(subparsers)``;
each sub-parser sets ``func(args) -> int``.
"""

from __future__ import annotations

import argparse
import sys

from ..common.checkpoints import CheckpointError
from ..common.images import ImageError
from ..common.jobs import JobCancelled


def build_parser() -> argparse.ArgumentParser:
    from . import style, texture, vae

    parser = argparse.ArgumentParser(prog="python -m core", description="Neural textures and style, headless.")
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cuda, mps or cpu")
    families = parser.add_subparsers(dest="family", required=True)
    for module in (texture, vae, style):
        module.register(families)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
