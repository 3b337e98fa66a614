"""Graph replay and opt-in compilation (core/common/accelerate.py): same answers as the eager calls.

The CUDA cases run in the GPU run's suite (``gpu-run``); on the CPU both levers must stay out of the way."""

from __future__ import annotations

import pytest
import torch

from core.common.accelerate import (COMPILE_ENV, COMPILE_MIN_STEPS, GraphReplay, compile_available, compile_in_place,
                                     worth_compiling)
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
