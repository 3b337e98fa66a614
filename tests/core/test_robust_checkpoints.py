"""A training's model file and training state always agree, even after kill -9 mid-write.

Every trainer writes its training state first, then its model (both atomically), so a
kill between the two leaves the model behind its state, never ahead; resuming rewrites
such a model from the state and says so on stderr.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from core.common.checkpoints import load_checkpoint, load_training_state, read_checkpoint_config
from core.common.images import save_image
from core.common.procedural import make_exemplar
from core.style import StyleTransferConfig, train_style_model
from core.style.adain import AdaINTrainConfig, DecoderConfig, train_adain_decoder
from core.texture_gan import TextureGANConfig, train_texture_gan, training_state_path
from core.texture_vae import TextureVAEConfig, train_texture_vae

ROOT = Path(__file__).resolve().parents[2]
REPAIRED = "rewritten from its training state"

# Tiny but real GAN: 3 stages (stride 4), crops of 32 px, batch 2.
GAN_TINY = dict(local_dim=8, global_dim=4, periodic_dim=4, g_channels=(32, 16, 8), d_channels=(16, 32),
                crop_size=32, batch_size=2, stats_scales=3, preview_every=0, lr_g=2e-3, lr_d=1e-3, ema_decay=0.9)
GAN_SEED = 2

# The child trains exactly as the in-process baseline does: one thread, same config and seed.
TRAIN_CHILD = """
import json, sys
import torch
torch.set_num_threads(1)
from core.common.procedural import make_exemplar
from core.texture_gan import TextureGANConfig, train_texture_gan
train_texture_gan([make_exemplar("bricks", 64, seed=3)], sys.argv[1], int(sys.argv[2]),
                  config=TextureGANConfig(**json.loads(sys.argv[3])), seed=int(sys.argv[4]), checkpoint_every=1)
"""


@pytest.fixture(autouse=True)
def one_thread():
    """Bit-identical to the one-thread children, and no OpenMP spinning on a shared machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _child(out: Path, steps: int, stderr) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NEURAL_TEXTURES_DEVICE": "cpu", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", TRAIN_CHILD, str(out), str(steps), json.dumps(GAN_TINY),
                             str(GAN_SEED)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr)


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino  # every atomic write replaces the file: a new inode
    except FileNotFoundError:
        return None


def _temporaries(path: Path) -> list[Path]:
    return list(path.parent.glob(f".{path.name}.*.tmp"))


def _wait_for(condition, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 120
    while not condition():
        assert proc.poll() is None, f"the training ended (exit {proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.0005)


def _steps(model: Path, state: Path) -> tuple[int, int]:
    return read_checkpoint_config(model)["steps"], int(load_training_state(state)["step"])


def test_kill_9_during_checkpoint_writes_always_resumes_to_the_uninterrupted_result(tmp_path):
    kills = 4
    # Each killed run adds at most 3 checkpoints, so none finishes before its kill.
    total = 3 * kills + 2
    # On the CPU, as the killed children train (also when the suite runs on CUDA: the first H200 run compared a
    # CUDA baseline with CPU children)
    baseline = train_texture_gan([make_exemplar("bricks", 64, seed=3)], tmp_path / "straight.safetensors", total,
                                 config=TextureGANConfig(**GAN_TINY), seed=GAN_SEED, checkpoint_every=1,
                                 device="cpu")
    out = tmp_path / "run" / "m.safetensors"
    state = training_state_path(out)
    # Moments inside a checkpoint: during the state write, between the state and the model,
    # during the model write, just after the model; each a little later by a random delay.
    moments = {"writing the state": lambda seen: bool(_temporaries(state)),
               "between state and model": lambda seen: _inode(state) != seen[0],
               "writing the model": lambda seen: bool(_temporaries(out)),
               "after the model": lambda seen: _inode(out) != seen[1]}
    rng = random.Random(13)
    expect_repair = False
    for round_, moment in enumerate(rng.sample(sorted(moments), kills)):
        with open(tmp_path / f"run{round_}.err", "w+") as err:
            proc = _child(out, total, err)
            try:
                for _ in range(rng.randint(2, 3)):  # let it write a few checkpoints first
                    before = _inode(state)
                    _wait_for(lambda: _inode(state) not in (None, before), proc, "a checkpoint")
                seen = (_inode(state), _inode(out))
                _wait_for(lambda: moments[moment](seen), proc, moment)
                time.sleep(rng.uniform(0, 0.004))
                proc.send_signal(signal.SIGKILL)
            finally:
                proc.kill()
                proc.wait()
            err.seek(0)
            log = err.read()
        assert proc.returncode == -signal.SIGKILL, log
        assert log.count(REPAIRED) == int(expect_repair), log  # the previous kill's gap, repaired once
        model_step, state_step = _steps(out, state)
        assert model_step <= state_step, f"killed {moment}: the model (step {model_step}) is ahead of its " \
                                         f"training state (step {state_step})"
        assert state_step - model_step <= 1, (moment, model_step, state_step)
        expect_repair = model_step != state_step

    finished = subprocess.run([sys.executable, "-c", TRAIN_CHILD, str(out), str(total), json.dumps(GAN_TINY),
                               str(GAN_SEED)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
                                   "NEURAL_TEXTURES_DEVICE": "cpu"})
    assert finished.returncode == 0, finished.stderr
    assert finished.stderr.count(REPAIRED) == int(expect_repair), finished.stderr
    assert _steps(out, state) == (total, total)
    assert not list(out.parent.glob("*.tmp")), "temporary files left behind after the next write"
    assert json.loads(out.with_suffix(".json").read_text())["steps"] == total
    expected, _ = load_checkpoint(baseline)
    got, _ = load_checkpoint(out)
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(got[key], expected[key]), key
    s_expected, s_got = load_training_state(training_state_path(baseline)), load_training_state(state)
    for part in ("g", "d", "g_ema"):
        for key in s_expected[part]:
            assert torch.equal(s_got[part][key], s_expected[part][key]), (part, key)


# --------------------------------------------------------------------------- crafted mismatches

def _gan(out: Path, steps: int, progress=None) -> None:
    train_texture_gan([make_exemplar("bricks", 64, seed=3)], out, steps, config=TextureGANConfig(**GAN_TINY),
                      seed=GAN_SEED, checkpoint_every=1, progress=progress)


def _vae(out: Path, steps: int, progress=None) -> None:
    cfg = TextureVAEConfig(base_channels=4, channel_mult=(1, 2), latent_channels=2, crop_size=16, batch_size=2)
    train_texture_vae([make_exemplar("bricks", 48, seed=3)], out, steps, config=cfg, seed=9, checkpoint_every=1,
                      progress=progress)


def _style(out: Path, steps: int, progress=None) -> None:
    cfg = StyleTransferConfig(base_channels=4, residual_blocks=1, image_size=32, batch_size=1, style_size=48,
                              generated_frames=2)
    train_style_model(make_exemplar("rust", 48, seed=1), None, out, steps, config=cfg, checkpoint_every=1,
                      progress=progress)


def _adain(out: Path, steps: int, progress=None) -> None:
    painting = out.parent / "painting.png"
    if not painting.exists():
        save_image(painting, make_exemplar("rust", 48, seed=1))
    cfg = AdaINTrainConfig(decoder=DecoderConfig((16, 16, 8), (0, 0, 0)).as_dict(), image_size=32, batch_size=1)
    train_adain_decoder([make_exemplar("stones", 40, seed=i) for i in range(2)], [painting], out, steps,
                        config=cfg, checkpoint_every=1, progress=progress)


# (trainer, the model config's step field, the training-state entry the model's weights come from)
TRAINERS = {"texture_gan": (_gan, "steps", "g_ema"), "texture_vae": (_vae, "steps", "model"),
            "style": (_style, "steps_done", "model"), "adain": (_adain, "steps_done", "model")}


def _weights(path: Path) -> dict[str, torch.Tensor]:
    """Copies: loaded tensors may map the file, which the test then overwrites in place."""
    return {key: value.clone() for key, value in load_checkpoint(path)[0].items()}


def _train_keeping_step_2(train, out: Path) -> tuple[bytes, bytes]:
    """Train to step 3, checkpointing every step; the (model, state) bytes written at step 2."""
    kept = {}

    def keep(p):
        if p.step == 2:
            kept["pair"] = (out.read_bytes(), training_state_path(out).read_bytes())

    train(out, 3, keep)
    return kept["pair"]


@pytest.mark.parametrize("family", sorted(TRAINERS))
def test_a_model_one_step_ahead_of_its_state_is_rewritten_on_resume(family, tmp_path, capsys):
    train, step_key, weights = TRAINERS[family]
    out = tmp_path / "m.safetensors"
    state = training_state_path(out)
    _, state_at_2 = _train_keeping_step_2(train, out)
    at_3 = _weights(out)
    state.write_bytes(state_at_2)  # the model (step 3) is now one step ahead of the state (step 2)
    capsys.readouterr()

    train(out, 2)  # a finished job: resuming only hands back its model
    assert capsys.readouterr().err.count(REPAIRED) == 1
    tensors, config = load_checkpoint(out)
    assert config[step_key] == 2
    saved = load_training_state(state)
    assert saved["step"] == 2
    for key, value in saved[weights].items():
        assert torch.equal(tensors[key], value), key

    train(out, 3)  # agreeing files resume silently, to the very model the first run made
    assert REPAIRED not in capsys.readouterr().err
    tensors, config = load_checkpoint(out)
    assert config[step_key] == 3
    for key in at_3:
        assert torch.equal(tensors[key], at_3[key]), key


def test_a_model_behind_its_state_is_rewritten_on_resume(tmp_path, capsys):
    """The gap a kill between the two writes leaves: the state at step 3, the model at 2."""
    out = tmp_path / "m.safetensors"
    model_at_2, _ = _train_keeping_step_2(_gan, out)
    at_3 = _weights(out)
    out.write_bytes(model_at_2)
    capsys.readouterr()
    _gan(out, 3)
    assert capsys.readouterr().err.count(REPAIRED) == 1
    tensors, config = load_checkpoint(out)
    assert config["steps"] == 3
    for key in at_3:
        assert torch.equal(tensors[key], at_3[key]), key


def test_resumed_adam_moments_keep_their_channels_last_parameters_layout(tmp_path):
    """The CUDA trainings keep convolutions channels-last; a saved moment comes back contiguous, and the fused
    CUDA Adam refused the mismatch on resume (second H200 run). Loading lays each moment out like its parameter,
    values untouched, so the next step equals the uninterrupted one."""
    from core.common.checkpoints import save_training_state
    from core.common.device import load_optimizer_state

    def run(steps, net, opt):
        g = torch.Generator().manual_seed(1)
        for _ in range(steps):
            opt.zero_grad()
            x = torch.randn(2, 3, 9, 9, generator=g).contiguous(memory_format=torch.channels_last)
            net(x).square().mean().backward()
            opt.step()

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Conv2d(8, 4, 3))
    net.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    run(2, net, opt)
    save_training_state(tmp_path / "s.safetensors", {"net": net.state_dict(), "opt": opt.state_dict()})
    run(1, net, opt)

    state = load_training_state(tmp_path / "s.safetensors")
    resumed = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Conv2d(8, 4, 3))
    resumed.load_state_dict(state["net"])
    resumed.to(memory_format=torch.channels_last)
    resumed_opt = torch.optim.Adam(resumed.parameters(), lr=1e-2)
    load_optimizer_state(resumed_opt, state["opt"])
    weight = resumed[0].weight
    assert weight.stride() != weight.contiguous().stride()  # the case that failed: a 4-D channels-last weight
    for param in resumed.parameters():
        for name in ("exp_avg", "exp_avg_sq"):
            assert resumed_opt.state[param][name].stride() == param.stride(), name
    run(1, resumed, resumed_opt)
    for a, b in zip(net.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
