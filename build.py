#!/usr/bin/env python3
"""The one entry point: ``python build.py {test,demo,package,bench,models}``.

Every command first makes sure a virtual environment with the pinned
requirements exists (``.venv``, created with Python 3.11 because ``bpy==5.0.1``
needs it), then re-runs itself inside it. ``--system`` skips the venv and uses
the running interpreter as is (for machines without network that already have
torch, e.g. a lent GPU machine, where bpy is absent and Blender tests skip).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
REQUIREMENTS = ROOT / "requirements.txt"
STAMP = VENV / ".requirements.sha256"


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _find_python311() -> str:
    if sys.version_info[:2] == (3, 11):
        return sys.executable
    for name in ("python3.11", "python3", "python"):
        exe = shutil.which(name)
        if exe:
            out = subprocess.run([exe, "-c", "import sys; print(sys.version_info[:2] == (3, 11))"],
                                 capture_output=True, text=True)
            if out.stdout.strip() == "True":
                return exe
    sys.exit("build.py: Python 3.11 is needed (bpy==5.0.1 is built for it); install python3.11 and retry")


def ensure_venv() -> Path:
    """Create or reuse .venv and install the pinned requirements when they changed."""
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    py = venv_python()
    if py.exists() and STAMP.exists() and STAMP.read_text().strip() == wanted:
        return py
    if not py.exists():
        print("build.py: creating .venv", flush=True)
        subprocess.run([_find_python311(), "-m", "venv", str(VENV)], check=True)
    print("build.py: installing pinned requirements (first run takes a few minutes)", flush=True)
    subprocess.run([str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q", "--upgrade", "pip"],
                   check=True)
    subprocess.run([str(py), "-m", "pip", "install", "--disable-pip-version-check", "-r", str(REQUIREMENTS)],
                   check=True)
    STAMP.write_text(wanted)
    return py


def in_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


# --------------------------------------------------------------------------- commands

def cmd_test(args: argparse.Namespace) -> int:
    env = dict(os.environ, PYTHONPATH=str(ROOT), NEURAL_TEXTURES_DEVICE=os.environ.get("NEURAL_TEXTURES_DEVICE", "cpu"))
    cmd = [sys.executable, "-m", "pytest", "tests", "-ra", "--durations=15", *args.pytest_args]
    print("build.py:", " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT, env=env).returncode


COMMANDS = {
    "test": (cmd_test, "run every test (pytest; GPU tests skip without a GPU)"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python build.py", description=__doc__.splitlines()[0])
    parser.add_argument("--system", action="store_true", help="use the running Python as is; no venv, no installs")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        if name == "test":
            p.add_argument("pytest_args", nargs=argparse.REMAINDER, help="extra pytest arguments")
    args, _ = parser.parse_known_args(argv)
    if not args.system and not in_venv():
        py = ensure_venv()
        return subprocess.run([str(py), str(Path(__file__).resolve()), "--system", *(argv or sys.argv[1:])]).returncode
    args = parser.parse_args(argv)
    return COMMANDS[args.command][0](args)


if __name__ == "__main__":
    sys.exit(main())
