"""Shared pytest setup: CPU, few threads, seeded, fixtures for data paths."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("NEURAL_TEXTURES_DEVICE", "cpu")
if os.environ["NEURAL_TEXTURES_DEVICE"].startswith("cuda"):
    # Resumed trainings must equal straight ones on CUDA too (core/common/device.py make_cuda_deterministic);
    # set before torch starts cuBLAS, and inherited by the subprocesses the tests start.
    os.environ.setdefault("NEURAL_TEXTURES_DETERMINISTIC", "1")
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import torch  # noqa: E402

torch.set_num_threads(2)
if os.environ.get("NEURAL_TEXTURES_DETERMINISTIC", "") not in ("", "0"):
    from core.common.device import make_cuda_deterministic  # noqa: E402

    make_cuda_deterministic()  # also for tests that pass a torch.device past pick_device

# Public-domain paintings inside the repository (provenance in SOURCES.md there): a clone needs nothing beside it.
STYLES_DIR = ROOT / "data" / "paintings"


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU (skipped without one)")
    config.addinivalue_line("markers", "slow: long-running; still part of the default run unless deselected")
    config.addinivalue_line("markers", "blender: needs the bpy module")


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="no CUDA GPU on this machine")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def styles_dir() -> Path:
    # Fails, never skips: the paintings ship with the repository, so a missing folder is a broken checkout.
    assert (STYLES_DIR / "SOURCES.md").is_file(), f"the repository's paintings are missing at {STYLES_DIR}"
    return STYLES_DIR
