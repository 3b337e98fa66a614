"""The switch for the CPU inference rewrites (``core/style/fused_convs.py``, the perception module's channels-last
path): on without gradients on the CPU; ``layers_as_trained()`` turns them off, so the bench can time the same
weights the plain way, side by side. ``rewrites_on_any_device()`` lets them run on a GPU too, where the graph
replay of the style networks times both forms and keeps the faster (``common/accelerate.py``)."""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

import torch

_rewrites_on = True
# Per thread (and task): the worker's other thread must not see one thread's rewrites on a GPU.
_any_device: ContextVar[bool] = ContextVar("rewrites_on_any_device", default=False)


def cpu_inference(x: torch.Tensor) -> bool:
    """Whether a layer may run its inference rewrite on ``x``: no gradients, on the CPU (or any device within
    ``rewrites_on_any_device``), not switched off."""
    return _rewrites_on and not torch.is_grad_enabled() and (_any_device.get() or x.device.type == "cpu")


@contextmanager
def rewrites_on_any_device() -> Iterator[None]:
    """Within (in this thread): the rewrites run on every device, not only the CPU."""
    token = _any_device.set(True)
    try:
        yield
    finally:
        _any_device.reset(token)


@contextmanager
def layers_as_trained() -> Iterator[None]:
    """Within: every layer runs as in training (the reference the rewrites are measured and tested against)."""
    global _rewrites_on
    before, _rewrites_on = _rewrites_on, False
    try:
        yield
    finally:
        _rewrites_on = before
