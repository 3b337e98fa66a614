"""The `python -m core` entry point as a user runs it: a real subprocess."""

from __future__ import annotations

import os
import re
import resource
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.common.checkpoints import read_checkpoint_config
from core.common.images import save_image
from core.common.procedural import make_exemplar
from core.texture_gan import load_texture_gan

ROOT = Path(__file__).resolve().parents[2]
TINY = '{"g_channels": [16, 8], "d_channels": [8, 16], "crop_size": 32, "local_dim": 8, "global_dim": 4, "periodic_dim": 4}'


def _read_until_step(proc: subprocess.Popen, step: int, total: str, timeout: float) -> str:
    """Read the child's stderr until a progress line reports ``step`` or later; bounded, with a clear failure."""
    seen, deadline = "", time.monotonic() + timeout
    fd = proc.stderr.fileno()  # raw reads: the text wrapper's buffer stays empty for communicate() later
    while True:
        reached = [int(n) for n in re.findall(rf"(\d+){re.escape(total)}", seen)]
        if reached and max(reached) >= step:
            return seen
        left = deadline - time.monotonic()
        assert left > 0, f"no progress line at step >= {step} within {timeout:.0f} s: {seen[-500:]!r}"
        if select.select([fd], [], [], min(left, 1.0))[0]:
            chunk = os.read(fd, 4096)
            assert chunk, f"the training exited ({proc.wait()}) before step {step}: {seen[-500:]!r}"
            seen += chunk.decode(errors="replace")


def test_ctrl_c_stops_training_cleanly_and_keeps_a_loadable_checkpoint(tmp_path):
    exemplar = save_image(tmp_path / "ex.png", make_exemplar("wood", 64, seed=0))
    model = tmp_path / "m.safetensors"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "core", "--device", "cpu", "texture", "train", "--exemplar",
                             str(exemplar), "--out", str(model), "--steps", "100000", "--checkpoint-every", "100000",
                             "--config", TINY], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    try:
        # A few real steps have run: any progress line at step 3 or later (the bar draws at most every 0.1 s,
        # so a fast CPU skips step numbers; never wait for one exact line).
        _read_until_step(proc, 3, "/100000", timeout=120)
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


# --------------------------------------------------------------------------- hostile and careless use

def _cli(*args, preexec_fn=None, **kwargs) -> subprocess.CompletedProcess:
    # no .pyc writes: under a file size limit they would be cut short
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, "-m", "core", "--device", "cpu", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=240, preexec_fn=preexec_fn, **kwargs)


def _one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr[-800:]
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-800:]
    for needle in needles:
        assert needle in errors[0], errors[0]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from core.texture_gan import TextureGANConfig, train_texture_gan
    import json
    path = tmp_path_factory.mktemp("cli") / "tiny.safetensors"
    return train_texture_gan([make_exemplar("bricks", 64)], path, 1, config=TextureGANConfig.from_dict(json.loads(TINY)),
                             device="cpu")


def test_full_disk_is_one_line_naming_the_file_and_leaves_no_temporary(tiny_model, tmp_path):
    # RLIMIT_FSIZE makes every write past 2 kB fail as a full disk would (EFBIG instead of ENOSPC).
    def small_disk():
        resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))

    out = tmp_path / "big.png"
    proc = _cli("texture", "generate", "--model", tiny_model, "--width", 256, "--height", 256, "--out", out,
                preexec_fn=small_disk)
    _one_line_error(proc, "big.png")
    assert list(tmp_path.iterdir()) == []  # neither the image nor a temporary file


def test_bad_config_is_one_line(tmp_path):
    exemplar = save_image(tmp_path / "ex.png", make_exemplar("wood", 64, seed=0))
    for config, needle in (("{not json", "not valid JSON"), ('{"g_channels": 5}', "g_channels"),
                           ('{"g_channels": [1000000000]}', "out of range"), ("[1]", "JSON object")):
        proc = _cli("texture", "train", "--exemplar", exemplar, "--out", tmp_path / "m.safetensors", "--steps", 1,
                    "--config", config)
        _one_line_error(proc, needle)


def test_train_takes_the_panels_recipe_by_default_each_exemplar_a_material(tmp_path):
    """``texture train`` trains what *Train From Image* trains (the distilled materials recipe: each exemplar a
    material, listed by ``texture materials`` and picked by ``generate --material``); ``--recipe spatial`` the
    original one-texture GAN; turns belong to that recipe alone, ``--no-flips`` to every recipe."""
    wood = save_image(tmp_path / "oak.png", make_exemplar("wood", 64, seed=0))
    bricks = save_image(tmp_path / "wall.png", make_exemplar("bricks", 64, seed=0))
    config = '{"g_channels": [16, 8], "crop_size": 32, "stats_loss_weight": 0, "exemplar_stats_weight": 0}'
    model = tmp_path / "m.safetensors"
    proc = _cli("texture", "train", "--exemplar", wood, bricks, "--out", model, "--steps", 2, "--config", config)
    assert proc.returncode == 0, proc.stderr[-800:]
    listed = _cli("texture", "materials", "--model", model)
    assert listed.returncode == 0 and "oak" in listed.stdout and "wall" in listed.stdout, listed.stdout
    out = tmp_path / "wall.png.out.png"
    assert _cli("texture", "generate", "--model", model, "--material", "wall", "--width", 64, "--height", 32,
                "--out", out).returncode == 0 and out.exists()
    tuned = tmp_path / "t.safetensors"  # Train From Image's default: fine-tuned from a materials GAN
    proc = _cli("texture", "train", "--exemplar", wood, "--out", tuned, "--steps", 1, "--recipe", "finetune",
                "--start-from", model, "--config", '{"crop_size": 32, "exemplar_stats_weight": 0}', "--no-flips")
    assert proc.returncode == 0, proc.stderr[-800:]
    assert read_checkpoint_config(tuned)["training_config"]["augment_flips"] is False  # crops as lit
    listed = _cli("texture", "materials", "--model", tuned).stdout
    assert "oak" in listed and "wall" not in listed, listed  # one material, the exemplar's
    _one_line_error(_cli("texture", "train", "--exemplar", wood, "--out", tmp_path / "y.safetensors", "--steps", 1,
                         "--start-from", model), "--recipe finetune")
    spatial = tmp_path / "s.safetensors"
    proc = _cli("texture", "train", "--exemplar", wood, "--out", spatial, "--steps", 2, "--config", TINY,
                "--recipe", "spatial", "--rotate")
    assert proc.returncode == 0, proc.stderr[-800:]
    assert not hasattr(load_texture_gan(spatial), "materials")
    _one_line_error(_cli("texture", "train", "--exemplar", wood, "--out", tmp_path / "x.safetensors", "--steps", 2,
                         "--rotate"), "--recipe spatial")


def test_training_into_an_unwritable_folder_fails_before_any_step(tmp_path):
    from test_worker import _unwritable_folder

    exemplar = save_image(tmp_path / "ex.png", make_exemplar("wood", 64, seed=0))
    folder = _unwritable_folder(tmp_path)
    proc = _cli("texture", "train", "--exemplar", exemplar, "--out", folder / "m.safetensors", "--steps", 50,
                "--config", TINY)
    _one_line_error(proc, str(folder))
    assert not re.search(r"\d+/50", proc.stderr), proc.stderr[-800:]  # no step ran (no progress line at all)


def test_closed_output_pipe_does_not_lose_the_training(tmp_path):
    # `python -m core texture train ... 2>&1 | head -1`: the reader is gone after the first line
    exemplar = save_image(tmp_path / "ex.png", make_exemplar("wood", 64, seed=0))
    model = tmp_path / "m.safetensors"
    read_end, write_end = os.pipe()
    os.close(read_end)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "core", "--device", "cpu", "texture", "train", "--exemplar",
                           str(exemplar), "--out", str(model), "--steps", "3", "--config", TINY], cwd=ROOT, env=env,
                          stdout=write_end, stderr=write_end, timeout=240)
    os.close(write_end)
    assert proc.returncode == 0
    assert load_texture_gan(model).config["steps"] == 3


def test_nan_style_model_is_refused_not_written_black(tmp_path):
    from test_common import nan_style_model

    model = nan_style_model(tmp_path)
    image = save_image(tmp_path / "in.png", make_exemplar("wood", 64, seed=0))
    proc = _cli("style", "apply", "--style", model, "--input", image, "--out", tmp_path / "out.png")
    _one_line_error(proc, "non-finite (NaN/inf) weights", model.name)
    assert not (tmp_path / "out.png").exists()


def test_progress_without_a_total_shows_no_fraction():
    import io

    from core.cli.progress_bar import ProgressBar
    from core.common.jobs import Progress
    stream = io.StringIO()
    bar = ProgressBar("style", stream=stream, min_interval=0)
    bar(Progress(1, 0, "frame 1"))
    bar(Progress(2, 0, "frame 2"))
    assert "1/0" not in stream.getvalue() and "2 done" in stream.getvalue()


def test_unexpected_errors_are_one_line_pointing_at_the_log(capsys):
    import argparse

    from core import cli

    def buggy(args):
        return {}["missing"]

    assert cli._run(argparse.Namespace(func=buggy)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unexpected KeyError" in err and str(cli.CRASH_LOG) in err
    assert "return {}[\"missing\"]" in cli.CRASH_LOG.read_text().split("--- ")[-1]


def test_unwritable_output_folder_is_one_line_naming_the_output(tiny_model, tmp_path):
    from test_worker import _unwritable_folder

    out = _unwritable_folder(tmp_path) / "x.png"
    proc = _cli("texture", "generate", "--model", tiny_model, "--width", 32, "--height", 32, "--out", out)
    _one_line_error(proc, str(out))
