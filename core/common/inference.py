"""The switch for the CPU inference rewrites (``core/style/fused_convs.py``, the perception module's channels-last
path): on without gradients on the CPU; ``layers_as_trained()`` turns them off, so the bench can time the same
weights the plain way, side by side."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

_rewrites_on = True


def cpu_inference(x: torch.Tensor) -> bool:
    """Whether a layer may run its inference rewrite on ``x``: no gradients, on the CPU, not switched off."""
    return _rewrites_on and not torch.is_grad_enabled() and x.device.type == "cpu"


@contextmanager
def layers_as_trained() -> Iterator[None]:
    """Within: every layer runs as in training (the reference the rewrites are measured and tested against)."""
    global _rewrites_on
    before, _rewrites_on = _rewrites_on, False
    try:
        yield
    finally:
        _rewrites_on = before
