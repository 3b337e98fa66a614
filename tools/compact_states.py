"""Compact the committed training states before a commit: ``python tools/compact_states.py models/training/*.train.safetensors``.

Rewrites each state with its optimizers' Adam moments as 8-bit logarithmic codes per block of 256 values
(``core.common.checkpoints.compact_training_state``: a quarter of their float32 bytes, half of the bfloat16
that earlier compactions left: 3.9 MB less for the repository's four, 19.4 -> 15.6 MB), then checks what it
wrote: the state loads, every tensor other than a moment is bit-identical to before, each moment keeps its
zeros and signs and every value is within the relative bound its block's log range gives (2 ** (R / 508) - 1
for second moments, 2 ** (R / 252) - 1 for first moments, R = max - min log2 magnitude of the block), and
each optimizer in it accepts its state and steps (``torch.optim.Adam.load_state_dict`` + one step on
parameters shaped like its moments). It prints the median and worst relative error per kind of moment
(committed states, 2026-12-04, first and second moments: medians 1.3-2.3 % and 0.3-1.3 %, worst 6-8 % and
5-7 %, except AdaIN's 42 % and 12 %, where decayed values near 1e-40 share blocks with normal ones: 11 % of
its first-moment values are off by more than 10 %).

Run it after the session's last training step and after ``build.py models --only X --minutes 0`` (which
rewrites a state in full float32): the trainings always write full states, so compacting is the last step
before ``git add``. Already compact files are left as they are. Exit status 1 when a check fails.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.common.checkpoints import (compact_training_state, load_training_state,  # noqa: E402
                                     q8_relative_bounds)

# A value below float32's normal range may also be off by its last denormal bit.
DENORMAL_SLACK = 2.0 ** -149


def _leaves(obj, prefix=""):
    """(path, value) of every tensor / scalar in a nested state, like the saved structure's keys."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _leaves(v, f"{prefix}.{i}" if prefix else str(i))
    else:
        yield prefix, obj


def _optimizer_states(obj):
    """Every optimizer state dict (``{"state": ..., "param_groups": ...}``) inside a training state."""
    if isinstance(obj, dict):
        if "state" in obj and "param_groups" in obj:
            yield obj
        else:
            for v in obj.values():
                yield from _optimizer_states(v)


def check_resumes(state: dict) -> int:
    """Load each optimizer state into an Adam over parameters shaped like its moments and take one step."""
    count = 0
    for opt_state in _optimizer_states(state):
        groups = opt_state["param_groups"]
        params = {i: torch.nn.Parameter(torch.zeros_like(s["exp_avg"], dtype=torch.float32))
                  for i, s in opt_state["state"].items() if "exp_avg" in s}
        ordered = [[params[i] for i in g["params"] if i in params] for g in groups]
        optimizer = torch.optim.Adam([{"params": p} for p in ordered])
        optimizer.load_state_dict({"state": opt_state["state"],
                                   "param_groups": [{**g, "params": [i for i in g["params"] if i in params]}
                                                    for g in groups]})
        for p in params.values():
            p.grad = torch.ones_like(p)
        optimizer.step()
        for p in params.values():
            if not torch.isfinite(p).all():
                raise AssertionError("a resumed optimizer step gave non-finite values")
        for s in optimizer.state.values():
            if s["exp_avg"].dtype != torch.float32:
                raise AssertionError("moments were not cast back to float32")
        count += 1
    return count


def check_moment(name: str, key: str, old: torch.Tensor, new: torch.Tensor, bound: torch.Tensor) -> torch.Tensor:
    """Zeros and signs kept, every value within its bound; returns the relative errors of the nonzero values."""
    if not torch.equal(new.sign(), old.sign()):  # sign 0 for a zero: zeros kept both ways
        raise AssertionError(f"{name}: {key} lost a zero or a sign")
    error = (new.double() - old.double()).abs()
    magnitude = old.double().abs()
    if (error > bound * magnitude + DENORMAL_SLACK).any():
        worst = float(((error - DENORMAL_SLACK) / magnitude - bound)[old != 0].max())
        raise AssertionError(f"{name}: {key} is off by more than its block's bound (by {worst:.3g})")
    return (error / magnitude)[old != 0].float()


def compact_and_verify(path: Path) -> str:
    before = dict(_leaves(load_training_state(path)))
    quantized = compact_training_state(path)
    after_state = load_training_state(path)
    after = dict(_leaves(after_state))
    bounds = q8_relative_bounds(path)
    if before.keys() != after.keys():
        raise AssertionError(f"{path.name}: the state's structure changed")
    errors: dict[str, list[torch.Tensor]] = {}
    for key, old in before.items():
        new = after[key]
        if isinstance(old, torch.Tensor):
            if new.dtype != old.dtype or new.shape != old.shape:
                raise AssertionError(f"{path.name}: {key} is not what was saved")
            if key in quantized:
                errors.setdefault(key.rsplit(".", 1)[-1], []).append(check_moment(path.name, key, old, new,
                                                                                  bounds[key]))
            elif not torch.equal(new, old):
                raise AssertionError(f"{path.name}: {key} is not what was saved")
        elif old != new:
            raise AssertionError(f"{path.name}: {key} changed ({old!r} -> {new!r})")
    optimizers = check_resumes(after_state)
    if quantized:
        spread = []
        for kind, parts in sorted(errors.items()):
            rel = torch.cat(parts)
            if rel.numel():
                spread.append(f"{kind} relative error median {float(rel.median()):.2%}, worst {float(rel.max()):.2%}")
        return (f"{path}: {len(quantized)} moment tensors now 8-bit, {optimizers} optimizer(s) resume"
                + "".join(f"; {line}" for line in spread))
    return f"{path}: already compact; {optimizers} optimizer(s) resume"


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    failed = 0
    for name in argv:
        path = Path(name)
        size = path.stat().st_size
        try:
            message = compact_and_verify(path)
        except Exception as exc:  # report every file, then fail
            print(f"FAILED {path}: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"{message}; {size / 1e6:.2f} MB -> {path.stat().st_size / 1e6:.2f} MB")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
