"""Fewer host launches on CUDA: graph replay for repeated same-shaped inference, and opt-in ``torch.compile``.

The H200 runs found the small networks host-bound: a 1080p fast-style frame spent 20.8 ms launching 8.4 ms of
GPU work, and the trainings' steps waited on Python as much. Two levers, both off the CPU path entirely:

* ``GraphReplay``: a CUDA graph of one call, captured for one set of input shapes and replayed with new input
  values (one launch instead of hundreds). It captures only when a shape comes back (the second frame of an
  animation), so a single still never pays the capture; a call that cannot be captured runs eagerly from then on.
* ``compile_in_place``: ``nn.Module.compile`` (TorchInductor fuses the norms, paddings and activations around
  the convolutions) where Triton is installed and ``$NEURAL_TEXTURES_COMPILE`` asks for it. A graph that fails
  to compile runs eagerly instead of failing the job. Off by default: its first call takes tens of seconds,
  and the GPU bench measures both before any default changes.
"""

from __future__ import annotations

import importlib.util
import os
from collections import OrderedDict
from typing import Callable, Sequence

import torch

COMPILE_ENV = "NEURAL_TEXTURES_COMPILE"  # "1": networks compile on CUDA (the GPU bench's variants); "0": never
# A CUDA training with at least this many steps left compiles its networks unless told not to: compiling the
# texture GAN's took about 45 s on the H200 and doubled its steps (16.5 -> 33.3 steps/s, the third slot), so it
# repays itself after about 1,500 steps; twice that leaves a margin (and the VAE's 1.4x needs about 1,800).
COMPILE_MIN_STEPS = 3000


def compile_requested() -> bool:
    return os.environ.get(COMPILE_ENV, "") == "1"


def worth_compiling(steps_left: int) -> bool:
    """Whether a training with ``steps_left`` steps to go should compile (``compile_in_place(force=...)``)."""
    return int(steps_left) >= COMPILE_MIN_STEPS


def compile_available(device: torch.device | str) -> bool:
    """``torch.compile`` can generate GPU kernels here: a CUDA device and Triton installed."""
    return torch.device(device).type == "cuda" and importlib.util.find_spec("triton") is not None


def compile_in_place(module: torch.nn.Module, device: torch.device | str, mode: str | None = None,
                     force: bool = False) -> bool:
    """Compile ``module``'s forward in place (its state dict keeps its keys) when asked (``force`` or
    ``$NEURAL_TEXTURES_COMPILE=1``), not refused (``$NEURAL_TEXTURES_COMPILE=0``) and possible
    (``compile_available``). Returns whether it did."""
    if os.environ.get(COMPILE_ENV, "") == "0" or not ((force or compile_requested()) and compile_available(device)):
        return False
    import torch._dynamo

    torch._dynamo.config.suppress_errors = True  # a graph that cannot compile runs eagerly, the job goes on
    module.compile(mode=mode, dynamic=False)
    return True


class GraphReplay:
    """``fn(*tensors)`` replayed from CUDA graphs, one per set of input shapes, dtypes and strides.

    The first call of a shape runs eagerly; the second captures (after a warm-up on a side stream, as PyTorch
    requires, with cuDNN's benchmark on so each convolution of the shape gets its fastest kernel) and every later
    one copies its inputs into the graph's own and replays. ``alternatives`` (name -> function with the same
    answer, e.g. the inference rewrites) are captured too and timed over a few replays; the fastest is kept
    (``chosen``), since which form wins depends on the card. Each function must take and return CUDA tensors
    and must not wait for the device (no ``.item()``, no ``.cpu()``). Answers are copies, so a caller may keep
    them. At most ``capacity`` graphs are held (each holds its intermediates), the least recently used one is
    dropped first. A shape whose capture fails runs eagerly for good (``failed``).
    """

    def __init__(self, fn: Callable[..., torch.Tensor], capacity: int = 2, warmup: int = 2,
                 alternatives: dict[str, Callable[..., torch.Tensor]] | None = None, trials: int = 5):
        self.fn, self.capacity, self.warmup = fn, max(1, int(capacity)), max(1, int(warmup))
        self.candidates = {"plain": fn, **(alternatives or {})}
        self.trials = max(1, int(trials))
        self.graphs: OrderedDict[tuple, tuple[torch.cuda.CUDAGraph, list[torch.Tensor], torch.Tensor]] = OrderedDict()
        self.seen: set[tuple] = set()
        self.failed: dict[tuple, str] = {}
        self.chosen: dict[tuple, str] = {}
        self.timings: dict[tuple, dict[str, float]] = {}  # milliseconds per replay of each captured candidate
        self.rejected: dict[tuple, list[str]] = {}  # candidates that did not capture, with why
        self.replays = 0

    @staticmethod
    def key(tensors: Sequence[torch.Tensor]) -> tuple:
        return tuple((tuple(t.shape), t.dtype, t.stride(), t.device) for t in tensors)

    def __call__(self, *tensors: torch.Tensor) -> torch.Tensor:
        if not all(t.is_cuda for t in tensors):
            return self.fn(*tensors)
        key = self.key(tensors)
        entry = self.graphs.get(key)
        if entry is None:
            if key in self.failed or key not in self.seen:
                self.seen.add(key)
                return self.fn(*tensors)
            try:
                entry = self._capture_fastest(key, tensors)
            except Exception as exc:  # noqa: BLE001 - any capture failure means: this shape runs eagerly
                self.failed[key] = f"{type(exc).__name__}: {exc}"
                torch.cuda.synchronize()
                return self.fn(*tensors)
            self.graphs[key] = entry
            while len(self.graphs) > self.capacity:
                self.graphs.popitem(last=False)
        self.graphs.move_to_end(key)
        graph, inputs, output = entry
        for static, t in zip(inputs, tensors):
            static.copy_(t)
        graph.replay()
        self.replays += 1
        return output.clone()

    def _capture_fastest(self, key: tuple, tensors: Sequence[torch.Tensor]):
        best, best_ms, errors, timings = None, float("inf"), [], {}
        for name, fn in self.candidates.items():
            try:
                entry = self._capture(fn, tensors)
            except Exception as exc:  # noqa: BLE001 - another candidate may still capture
                errors.append(f"{name}: {type(exc).__name__}: {exc}")
                torch.cuda.synchronize()
                continue
            ms = timings[name] = self._replay_ms(entry[0]) if len(self.candidates) > 1 else 0.0
            if ms < best_ms:
                best, best_ms = (name, entry), ms
        if errors:
            self.rejected[key] = errors
        if best is None:
            raise RuntimeError("; ".join(errors))
        self.chosen[key], self.timings[key] = best[0], timings
        return best[1]

    def _capture(self, fn: Callable[..., torch.Tensor], tensors: Sequence[torch.Tensor]):
        inputs = [t.clone(memory_format=torch.preserve_format) for t in tensors]
        benchmark = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = True  # the shape comes back: worth timing its convolutions' kernels once
        try:
            side = torch.cuda.Stream(device=inputs[0].device)
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # warm-up: kernels chosen, workspaces allocated, outside the capture
                for _ in range(self.warmup):
                    fn(*inputs)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                output = fn(*inputs)
        finally:
            torch.backends.cudnn.benchmark = benchmark
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"a replayed call must return one tensor, not {type(output).__name__}")
        return graph, inputs, output

    def _replay_ms(self, graph: torch.cuda.CUDAGraph) -> float:
        graph.replay()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(self.trials):
            graph.replay()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / self.trials

    def clear(self) -> None:
        self.graphs.clear()
        self.seen.clear()
        self.failed.clear()
        self.chosen.clear()
        self.timings.clear()
        self.rejected.clear()
