"""``python -m core.worker``: start the worker on stdin/stdout (see the package's docstring)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from . import __doc__ as WORKER_DOC
from .loop import Worker
from .protocol import MAX_REQUEST_BYTES, Channel, protect_stdout, request_lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.worker", description=WORKER_DOC.splitlines()[0])
    parser.add_argument("--workdir", help="folder for previews and results (default: a new temp folder)")
    parser.add_argument("--device", default=os.environ.get("NEURAL_TEXTURES_DEVICE", "auto"))
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    parser.add_argument("--allow-output", action="append", default=[], metavar="FOLDER",
                        help="a folder besides the work folder that jobs may write an explicit 'output' into")
    args = parser.parse_args(argv)

    stream = protect_stdout()
    channel = Channel(stream)
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="neural_worker_"))
    workdir.mkdir(parents=True, exist_ok=True)
    if args.threads > 0:
        try:
            import torch
            torch.set_num_threads(args.threads)
        except ImportError:
            pass
    worker = Worker(channel, workdir, args.device, [Path(p) for p in args.allow_output])
    worker.start()
    try:
        for line in request_lines(sys.stdin.buffer):
            if line is None:
                channel.send("protocol_error", message=f"request line longer than {MAX_REQUEST_BYTES:,} bytes; ignored")
            elif not worker.handle(line):
                break
    except KeyboardInterrupt:
        pass
    # stdin closed (the host went away) or 'shutdown': stop cleanly either way.
    worker.shutdown()
    stream.flush()
    # os._exit: do not wait for daemon threads stuck inside a C call; GPU memory goes with the process.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
