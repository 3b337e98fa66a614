"""Fewer host launches on CUDA: graph replay for repeated same-shaped inference, and opt-in ``torch.compile``.

The H200 runs found the small networks host-bound: a 1080p fast-style frame spent 20.8 ms launching 8.4 ms of
GPU work, and the trainings' steps waited on Python as much. Two levers, both off the CPU path entirely:

* ``GraphReplay``: a CUDA graph of one call, captured for one set of input shapes and replayed with new input
  values (one launch instead of hundreds). It captures only when a shape comes back (the second frame of an
  animation), so a single still never pays the capture; a call that cannot be captured runs eagerly from then on.
* ``compile_in_place``: ``nn.Module.compile`` (TorchInductor fuses the norms, paddings and activations around
  the convolutions) where Triton is installed and ``$NEURAL_TEXTURES_COMPILE`` asks for it. A graph that fails
  to compile runs eagerly instead of failing the job. Off by default: its first call takes tens of seconds,
  and the GPU bench measures both before any default changes. ``$NEURAL_TEXTURES_COMPILE_MODE=reduce-overhead``
  also replays the compiled networks as CUDA graphs (Inductor's CUDA graph trees); a training step then starts
  with ``mark_training_step``. Still host-bound after compiling (the VAE: 14.8 steps/s against 100), the
  trainings' next lever; the GPU bench measures it as its own variant rows before anything uses it by default.

The worker runs a training and an interactive job in two threads of one process on one card, so nothing here
may change what the other thread computes: captures are thread-local and one at a time, shared networks (the
perception VGG19) are compiled through private wrappers, never in place.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections import Counter, OrderedDict
from typing import Callable, Sequence

import torch

COMPILE_ENV = "NEURAL_TEXTURES_COMPILE"  # "1": networks compile on CUDA (the GPU bench's variants); "0": never
# A CUDA training with at least this many steps left compiles its networks unless told not to: compiling the
# texture GAN's took about 45 s on the H200 and doubled its steps (16.5 -> 33.3 steps/s, the third slot), so it
# repays itself after about 1,500 steps; twice that leaves a margin (and the VAE's 1.4x needs about 1,800).
COMPILE_MIN_STEPS = 3000


COMPILE_MODE_ENV = "NEURAL_TEXTURES_COMPILE_MODE"  # torch.compile's mode for compiled networks (default: its own)
_GRAPH_MODES = ("reduce-overhead", "max-autotune")  # the modes that replay CUDA graphs
_graph_trees = threading.local()  # whether this thread compiled a network that replays CUDA graphs


def compile_mode(mode: str | None = None) -> str | None:
    """``mode``, else ``$NEURAL_TEXTURES_COMPILE_MODE``, else None (torch.compile's default)."""
    return mode or os.environ.get(COMPILE_MODE_ENV) or None


def mark_training_step() -> None:
    """Tell Inductor's CUDA graph trees that a training step begins, where this thread compiled networks that
    replay graphs: the previous step's outputs may be overwritten from here (nothing keeps them past a step) and
    the forward and backward graphs of the step to come are recorded as one generation. Free otherwise."""
    if getattr(_graph_trees, "on", False):
        torch.compiler.cudagraph_mark_step_begin()


def _note_mode(mode: str | None) -> None:
    if mode in _GRAPH_MODES:
        _graph_trees.on = True


def compile_requested() -> bool:
    return os.environ.get(COMPILE_ENV, "") == "1"


def worth_compiling(steps_left: int) -> bool:
    """Whether a training with ``steps_left`` steps to go should compile (``compile_in_place(force=...)``).
    Never under deterministic algorithms (the CUDA suite, ``$NEURAL_TEXTURES_DETERMINISTIC``): a resumed run
    would compile in one leg and not the other, and Inductor's kernels do not sum as eager ones do bit for bit."""
    return int(steps_left) >= COMPILE_MIN_STEPS and not torch.are_deterministic_algorithms_enabled()


def compile_available(device: torch.device | str) -> bool:
    """``torch.compile`` can generate GPU kernels here: a CUDA device and Triton installed."""
    return torch.device(device).type == "cuda" and importlib.util.find_spec("triton") is not None


def _compile_wanted(device: torch.device | str, force: bool) -> bool:
    if os.environ.get(COMPILE_ENV, "") == "0" or not ((force or compile_requested()) and compile_available(device)):
        return False
    import torch._dynamo

    # A graph that cannot compile runs eagerly and the job goes on (process-wide; eager code is unaffected).
    torch._dynamo.config.suppress_errors = True
    return True


def compile_in_place(module: torch.nn.Module, device: torch.device | str, mode: str | None = None,
                     force: bool = False) -> bool:
    """Compile ``module``'s forward in place (its state dict keeps its keys) when asked (``force`` or
    ``$NEURAL_TEXTURES_COMPILE=1``), not refused (``$NEURAL_TEXTURES_COMPILE=0``) and possible
    (``compile_available``). Returns whether it did. Only for modules the caller owns: a shared one would be
    compiled for every other user in the process too (``compiled``)."""
    if not _compile_wanted(device, force):
        return False
    mode = compile_mode(mode)
    module.compile(mode=mode, dynamic=False)
    _note_mode(mode)
    return True


def compiled(module: torch.nn.Module, device: torch.device | str, force: bool = False) -> torch.nn.Module:
    """``module`` behind a compiled wrapper of its own (attributes read through to it), or ``module`` itself
    where ``compile_in_place`` would not compile: for networks shared across the process (the cached VGG19)."""
    if not _compile_wanted(device, force):
        return module
    mode = compile_mode()
    _note_mode(mode)
    return torch.compile(module, mode=mode, dynamic=False)


def compiled_features(features, device: torch.device | str, force: bool = False):
    """A loss's feature extractor, compiled without touching the caller's object or the network it may share
    with the process: a network itself (the cached random-feature net) behind ``compiled``'s wrapper; an object
    whose ``net`` is the network (``TextureFeatures`` with the shared VGG19) as a shallow copy whose ``net`` is
    that wrapper; ``features`` itself where nothing compiles."""
    if isinstance(features, torch.nn.Module):  # never a shallow copy of a module: it would share its children
        return compiled(features, device, force)
    net = getattr(features, "net", None)
    if not isinstance(net, torch.nn.Module) or not _compile_wanted(device, force):
        return features
    import copy

    private = copy.copy(features)
    private.net = compiled(net, device, force)
    return private


# Captures in this process, one at a time: a capture's warm-up turns cuDNN's benchmark on for a moment, and two
# captures at once would share that and the caching allocator's capture pools.
_CAPTURE_LOCK = threading.Lock()


class GraphReplay:
    """``fn(*tensors)`` replayed from CUDA graphs, one per set of input shapes, dtypes and strides.

    The first call of a shape runs eagerly; the second captures (after a warm-up on a side stream, as PyTorch
    requires, with cuDNN's benchmark on so each convolution of the shape gets its fastest kernel) and every later
    one copies its inputs into the graph's own and replays. ``alternatives`` (name -> function with the same
    answer, e.g. the inference rewrites) are captured too and timed over a few replays; the fastest is kept
    (``chosen``), since which form wins depends on the card. Each function must take and return CUDA tensors
    and must not wait for the device (no ``.item()``, no ``.cpu()``). Answers are copies, so a caller may keep
    them. At most ``capacity`` graphs are held (each holds its intermediates), the least recently used one is
    dropped first, and a key captured ``MAX_CAPTURES`` times (sizes that keep taking turns) runs eagerly from
    then on. A capture that fails is tried once more; a second failure runs that key eagerly for good
    (``failed``). Captures are thread-local (another thread's work on the card goes on meanwhile) and on the
    inputs' own device.

    The graphs read the weights where they were at capture: whoever changes a network's weights in place
    calls ``clear()``.
    """

    MAX_CAPTURES = 3

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
        self.captures: Counter = Counter()
        self.failures: Counter = Counter()
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
            if key in self.failed or key not in self.seen or self.captures[key] >= self.MAX_CAPTURES:
                self.seen.add(key)
                return self.fn(*tensors)
            try:
                with torch.cuda.device(tensors[0].device):
                    entry = self._capture_fastest(key, tensors)
            except Exception as exc:  # noqa: BLE001 - any capture failure means: this call runs eagerly
                self.failures[key] += 1
                if self.failures[key] >= 2:
                    self.failed[key] = f"{type(exc).__name__}: {exc}"
                torch.cuda.synchronize(tensors[0].device)
                return self.fn(*tensors)
            self.captures[key] += 1
            self.graphs[key] = entry
            while len(self.graphs) > self.capacity:
                evicted, _ = self.graphs.popitem(last=False)
                self.seen.discard(evicted)  # it must come back twice again before it is captured again
        self.graphs.move_to_end(key)
        graph, inputs, output = entry
        for static, t in zip(inputs, tensors):
            static.copy_(t)
        with torch.cuda.device(tensors[0].device):
            graph.replay()
        self.replays += 1
        return output.clone()

    def _capture_fastest(self, key: tuple, tensors: Sequence[torch.Tensor]):
        best, best_ms, errors, timings = None, float("inf"), [], {}
        # A key captured before (evicted since) takes the form that won then, untimed.
        names = [self.chosen[key]] if key in self.chosen else list(self.candidates)
        for name in names:
            try:
                entry = self._capture(self.candidates[name], tensors)
            except Exception as exc:  # noqa: BLE001 - another candidate may still capture
                errors.append(f"{name}: {type(exc).__name__}: {exc}")
                torch.cuda.synchronize()
                continue
            ms = timings[name] = self._replay_ms(entry[0]) if len(names) > 1 else 0.0
            if ms < best_ms:
                best, best_ms = (name, entry), ms
        if errors:
            self.rejected[key] = errors
        if best is None:
            raise RuntimeError("; ".join(errors))
        self.chosen[key] = best[0]
        if len(names) > 1:
            self.timings[key] = timings
        return best[1]

    def _capture(self, fn: Callable[..., torch.Tensor], tensors: Sequence[torch.Tensor]):
        inputs = [t.clone(memory_format=torch.preserve_format) for t in tensors]
        with _CAPTURE_LOCK:
            benchmark = torch.backends.cudnn.benchmark
            torch.backends.cudnn.benchmark = True  # the shape comes back: worth timing its convolutions' kernels
            try:
                side = torch.cuda.Stream(device=inputs[0].device)
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):  # warm-up: kernels chosen, workspaces allocated, outside the capture
                    for _ in range(self.warmup):
                        fn(*inputs)
                torch.cuda.current_stream().wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                # thread_local: the worker's other thread (a training) may allocate and launch meanwhile
                with torch.cuda.graph(graph, capture_error_mode="thread_local"):
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
        self.captures.clear()
        self.failures.clear()
