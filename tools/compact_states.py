"""Compact the committed training states before a commit: ``python tools/compact_states.py models/training/*.train.safetensors``.

Rewrites each state with its optimizers' Adam moments in bfloat16 (``core.common.checkpoints.
compact_training_state``: about a third less bytes for a state, 9 MB for the repository's four), then
checks what it wrote: the state loads, every tensor other than a moment is bit-identical to before, each
moment is the float32 original rounded to bfloat16, and each optimizer in it accepts its state and steps
(``torch.optim.Adam.load_state_dict`` + one step on parameters shaped like its moments).

Run it after the session's last training step and after ``build.py models --only X --minutes 0`` (which
rewrites a state in full float32): the trainings always write full states, so compacting is the last step
before ``git add``. Already compact files are left as they are. Exit status 1 when a check fails.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.common.checkpoints import compact_training_state, load_training_state  # noqa: E402


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


def compact_and_verify(path: Path) -> str:
    before = dict(_leaves(load_training_state(path)))
    rounded = compact_training_state(path)
    after_state = load_training_state(path)
    after = dict(_leaves(after_state))
    if before.keys() != after.keys():
        raise AssertionError(f"{path.name}: the state's structure changed")
    for key, old in before.items():
        new = after[key]
        if isinstance(old, torch.Tensor):
            expected = old.to(torch.bfloat16).float() if key in rounded else old
            if new.dtype != old.dtype or not torch.equal(new, expected):
                raise AssertionError(f"{path.name}: {key} is not what was saved")
        elif old != new:
            raise AssertionError(f"{path.name}: {key} changed ({old!r} -> {new!r})")
    optimizers = check_resumes(after_state)
    if rounded:
        return f"{path}: {len(rounded)} moment tensors now bfloat16, {optimizers} optimizer(s) resume"
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
