"""The `python -m core` entry point as a user runs it: a real subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from core.common.images import save_image
from core.common.procedural import make_exemplar
from core.texture_gan import load_texture_gan

ROOT = Path(__file__).resolve().parents[2]
TINY = '{"g_channels": [16, 8], "d_channels": [8, 16], "crop_size": 32, "local_dim": 8, "global_dim": 4, "periodic_dim": 4}'


def test_ctrl_c_stops_training_cleanly_and_keeps_a_loadable_checkpoint(tmp_path):
    exemplar = save_image(tmp_path / "ex.png", make_exemplar("wood", 64, seed=0))
    model = tmp_path / "m.safetensors"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "core", "--device", "cpu", "texture", "train", "--exemplar",
                             str(exemplar), "--out", str(model), "--steps", "100000", "--checkpoint-every", "100000",
                             "--config", TINY], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    try:
        seen = ""
        deadline = time.monotonic() + 120
        while "3/100000" not in seen and time.monotonic() < deadline:  # a few real steps have run
            seen += proc.stderr.read(64)
        assert "3/100000" in seen, seen[-500:]
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, rest[-800:]
    assert "checkpoint was kept" in rest
    trained = load_texture_gan(model).config["steps"]
    assert 3 <= trained < 100000
    assert model.with_suffix(".train.safetensors").exists()  # resumable


def test_cli_reports_bad_input_with_exit_code_2(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    proc = subprocess.run([sys.executable, "-m", "core", "vae", "train", "--exemplar", str(bad), "--out",
                           str(tmp_path / "m.safetensors"), "--steps", "1"], cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "error:" in proc.stderr and "bad.png" in proc.stderr
    assert "Traceback" not in proc.stderr
