"""Graph replay and opt-in compilation (core/common/accelerate.py): same answers as the eager calls.

The CUDA cases run in the GPU run's suite (``gpu-run``); on the CPU both levers must stay out of the way."""

from __future__ import annotations

import pytest
import torch

from core.common import accelerate
from core.common.accelerate import (COMPILE_ENV, COMPILE_MIN_STEPS, COMPILE_MODE_ENV, GraphReplay, compile_available,
                                     compile_in_place, compile_mode, mark_training_step, worth_compiling)
from core.common.procedural import make_exemplar
from core.style.multistyle import default_multistyle_path, load_fast_style


def test_on_the_cpu_replay_calls_through_and_nothing_compiles(monkeypatch):
    calls = []

    def double(x):
        calls.append(x.shape)
        return x * 2

    replay = GraphReplay(double)
    x = torch.arange(6.0).view(2, 3)
    for _ in range(3):
        assert torch.equal(replay(x), x * 2)
    assert len(calls) == 3 and replay.replays == 0 and not replay.graphs
    monkeypatch.setenv(COMPILE_ENV, "1")
    net = torch.nn.Conv2d(3, 3, 3)
    assert compile_in_place(net, "cpu") is False and compile_in_place(net, "cpu", force=True) is False


def test_long_trainings_compile_where_possible_and_zero_refuses(monkeypatch):
    assert worth_compiling(COMPILE_MIN_STEPS) and not worth_compiling(COMPILE_MIN_STEPS - 1)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    monkeypatch.delenv(COMPILE_ENV, raising=False)
    net = torch.nn.Conv2d(3, 3, 3)
    assert compile_in_place(net, device) is False  # not asked
    assert compile_in_place(net, device, force=True) is compile_available(device)  # lazy: nothing compiles yet
    monkeypatch.setenv(COMPILE_ENV, "0")
    assert compile_in_place(torch.nn.Conv2d(3, 3, 3), device, force=True) is False


def test_the_compile_mode_comes_from_the_call_or_the_environment_and_steps_mark_only_graph_trees(monkeypatch):
    monkeypatch.delenv(COMPILE_MODE_ENV, raising=False)
    assert compile_mode() is None and compile_mode("max-autotune") == "max-autotune"
    monkeypatch.setenv(COMPILE_MODE_ENV, "reduce-overhead")
    assert compile_mode() == "reduce-overhead" and compile_mode("default") == "default"
    marks = []
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: marks.append(1))
    monkeypatch.setattr(accelerate, "_graph_trees", __import__("threading").local())
    mark_training_step()
    assert marks == []  # nothing here replays graphs: a step costs nothing more
    accelerate._note_mode("default")
    mark_training_step()
    assert marks == []
    accelerate._note_mode("reduce-overhead")
    mark_training_step()
    assert marks == [1]


@pytest.mark.gpu
def test_a_vae_training_replayed_as_cuda_graphs_matches_its_eager_steps(monkeypatch):
    """The GPU bench's "CUDA graphs" rows (``$NEURAL_TEXTURES_COMPILE_MODE=reduce-overhead``): the compiled,
    graph-replayed step computes what the eager step does, and the previews a step keeps stay readable."""
    from core.texture_vae.model import TextureVAEConfig
    from core.texture_vae.train import VAETrainer

    images = [make_exemplar("bricks", 64, seed=0), make_exemplar("stones", 64, seed=0)]
    cfg = TextureVAEConfig(base_channels=8, channel_mult=(1, 2), latent_channels=4, crop_size=32, batch_size=4,
                           amp=False)
    eager = VAETrainer(cfg, images, 0, torch.device("cuda"))
    monkeypatch.setenv(COMPILE_ENV, "1")
    monkeypatch.setenv(COMPILE_MODE_ENV, "reduce-overhead")
    graphed = VAETrainer(cfg, images, 0, torch.device("cuda"))
    assert graphed.compile_networks(10) is compile_available("cuda")
    for step in range(4):  # warm-up, recording, then replays
        a, b = eager.step(step, 10), graphed.step(step, 10)
        preview = graphed.recon[0].clamp(0, 1).cpu()  # read after the step, as the training loop does
        assert torch.isfinite(preview).all()
        for key in a:
            assert torch.allclose(a[key].float(), b[key].float(), rtol=2e-2, atol=1e-4), (step, key, a[key], b[key])


def _frame(seed: int) -> torch.Tensor:
    return torch.from_numpy(make_exemplar("bricks", 96, seed)[:72].transpose(2, 0, 1).copy())[None]


@pytest.mark.gpu
def test_fast_style_frames_replay_the_eager_answer_on_cuda():
    model = load_fast_style(default_multistyle_path(), "cuda", "starry_night")
    multi, frames = model.multi, [_frame(s).cuda() for s in range(4)]
    replay = multi.replay
    outs = [model.stylize_tensor(f) for f in frames]  # first eager, second captured, then replays (palette too)
    assert replay.replays == 3 and len(replay.graphs) == 1 and not replay.failed
    # Both forms were captured and timed; the faster one answers (the rewrites sum in another order: fp16).
    (key, chosen), = replay.chosen.items()
    assert chosen in ("plain", "rewritten") and set(replay.timings[key]) == {"plain", "rewritten"}, replay.rejected
    tolerance = 2e-3 if chosen == "plain" else 1e-2
    multi.replay = None
    eager = [model.stylize_tensor(f) for f in frames]
    for a, b in zip(outs, eager):
        assert (a - b).abs().max().item() < tolerance
        assert (a - b).abs().mean().item() < 1e-3
    # Another style's mix goes through the same graph (the mix is an input) and gives that style's frame.
    multi.replay = replay
    other = multi.mix_vector("udnie") if "udnie" in multi.style_names else multi.mix_vector(multi.style_names[-1])
    replayed = multi.stylize_tensor(frames[0], other)
    multi.replay = None
    assert (replayed - multi.stylize_tensor(frames[0], other)).abs().max().item() < tolerance
    assert replay.replays == 4 and len(replay.graphs) == 1
    # A fixed palette strength is an input of the same graph; strength 0 (no match) is a graph of its own.
    for strength in (0.3, 0.0, 0.0, 0.0):
        multi.replay = replay
        replayed = multi.stylize_tensor(frames[1], other, palette_strength=strength)
        multi.replay = None
        eager = multi.stylize_tensor(frames[1], other, palette_strength=strength)
        assert (replayed - eager).abs().max().item() < tolerance, strength
    assert replay.replays == 7 and len(replay.graphs) == 2 and not replay.failed  # 0.0: eager, captured, replayed


@pytest.mark.gpu
def test_sizes_taking_turns_stop_being_captured_on_cuda():
    calls = []

    def double(x):
        calls.append(1)
        return x * 2

    replay = GraphReplay(double, capacity=1, warmup=1)
    a, b = torch.ones(3, device="cuda"), torch.ones(5, device="cuda")
    for _ in range(12):
        for x in (a, a, b, b):
            assert torch.equal(replay(x), x * 2)
    assert max(replay.captures.values()) == GraphReplay.MAX_CAPTURES and not replay.failed
    assert replay.replays < 48 - 2 * GraphReplay.MAX_CAPTURES


_WAITING_CALL = """
import numpy as np, torch
from core.common.accelerate import GraphReplay

def waits(x):
    return x * float(x.sum().item())  # a host read cannot be captured

replay = GraphReplay(waits)
x = torch.ones(4, device="cuda")
answers = [replay(x).cpu() for _ in range(3)]
assert all(np.allclose(a.numpy(), 4.0) for a in answers), answers
assert replay.failed and replay.replays == 0 and not replay.graphs, (replay.failed, replay.replays)
y = (torch.arange(8.0, device="cuda") * 2).sum().item()  # the device still works after the failed capture
assert y == 56.0
print("ok")
"""


@pytest.mark.gpu
def test_a_call_that_waits_for_the_device_runs_eagerly_on_cuda():
    # In its own process: a failed capture must not take the rest of a suite's worker with it if it misbehaves.
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", _WAITING_CALL], cwd=root, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]


def test_rewrites_on_any_device_stay_in_their_thread():
    import threading

    from core.common.inference import cpu_inference, rewrites_on_any_device

    x = torch.empty(1, 3, 4, 4, device="meta")  # any non-CPU device
    seen = {}
    inside, leave = threading.Event(), threading.Event()

    def other_thread():
        inside.wait(5)
        with torch.no_grad():
            seen["other"] = cpu_inference(x)
        leave.set()

    worker = threading.Thread(target=other_thread)
    worker.start()
    with torch.no_grad(), rewrites_on_any_device():
        seen["here"] = cpu_inference(x)
        inside.set()
        leave.wait(5)
    worker.join(5)
    with torch.no_grad():
        seen["after"] = cpu_inference(x)
    assert seen == {"here": True, "other": False, "after": False}
