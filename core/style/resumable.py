"""The checkpoint side of the time-budgeted trainings (AdaIN, multi-style): resume, history, save.

A training state holds the model, the optimizer, the step, the sampling
generator and the *history*: one entry per session (steps, seconds, machine,
profile, the content set's size and fingerprint). Only the architecture, the
seed and the encoder are the state's identity; the content folder may grow
between sessions and the recipe's sizes may change (both are recorded).
"""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any, Callable

import torch

from ..common.checkpoints import (CheckpointError, load_training_state, restore_rng_state, rng_state,
                                  save_model_and_state, sync_model_with_state)
from ..common.device import load_optimizer_state


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.machine()}, {torch.get_num_threads()} thread(s))"


class ResumableRun:
    """One session of a resumable training: restores from a state (or a warm start) and writes checkpoints."""

    def __init__(self, model_path: Path, state_path: Path, kind: str, identity: dict, module: torch.nn.Module,
                 optimizer: torch.optim.Optimizer, generator: torch.Generator, device: torch.device, profile: str,
                 content_info: dict, log: Callable[[str], None] = print):
        self.model_path, self.state_path, self.kind = Path(model_path), Path(state_path), kind
        self.identity, self.module, self.optimizer, self.generator = identity, module, optimizer, generator
        self.device, self.log = device, log
        self.step = 0
        self.history: list[dict] = []
        self.session = {"start_step": 0, "end_step": 0, "seconds": 0.0, "profile": profile,
                        "machine": machine(device), "content": content_info,
                        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        self.config_fn: Callable[[int], dict] = lambda step: {}
        self.recent: list[float] = []  # the last 20 steps' seconds: the budget's margin and the logged s/step

    def seconds_per_step(self) -> float | None:
        return (sum(self.recent) / len(self.recent)) if self.recent else None

    def continues(self, step: int, max_steps: int | None, budget) -> bool:
        """Another step fits: below ``max_steps`` and, with one average step's margin, within the budget."""
        return (max_steps is None or step < max_steps) and not budget.exhausted(
            margin_seconds=self.seconds_per_step() or 0.0)

    def end_step(self, step: int, t0: float, budget, report: Callable[[float], str] | None = None) -> None:
        """After step ``step`` (begun at ``t0``): time it, log ``report(seconds per step)`` when given, and
        checkpoint when the budget says one is due."""
        self.recent = (self.recent + [time.monotonic() - t0])[-20:]
        self.session["seconds"] = round(budget.elapsed(), 1)
        if report is not None:
            self.log(report(self.seconds_per_step()))
        if budget.checkpoint_due():
            self.save(step)

    def optimize(self, step: int, loss: torch.Tensor, diverged: str) -> None:
        """Backpropagates ``loss`` and steps the optimizer; a non-finite loss instead keeps the checkpoint
        before it and raises ``FloatingPointError(diverged)``."""
        if not torch.isfinite(loss):
            self.save(step)
            raise FloatingPointError(diverged)
        loss.backward()
        self.optimizer.step()

    def finish(self, step: int, budget) -> dict:
        """The session's last checkpoint and its summary."""
        self.session["seconds"] = round(budget.elapsed(), 1)
        self.save(step)
        self.log(f"stopped at step {step} after {self.session['seconds']:.0f} s; checkpoint {self.model_path}")
        return self.summary(step, self.seconds_per_step())

    def resume(self, warm_start: str | Path | None = None) -> int:
        """Continue from the state file, else from ``warm_start`` (e.g. the CPU state for a GPU run)."""
        source = self.state_path if self.state_path.exists() else (Path(warm_start) if warm_start else None)
        if source is not None:
            state = load_training_state(source)
            if state.get("identity") != self.identity:
                raise CheckpointError(f"{source.name} holds another architecture, seed or encoder "
                                      f"({state.get('identity')}); delete it to start over")
            self.module.load_state_dict({k: v.to(self.device) for k, v in state["model"].items()})
            load_optimizer_state(self.optimizer, state["optimizer"])
            restore_rng_state(state["rng"], self.generator)
            self.step, self.history = int(state["step"]), list(state.get("history") or [])
            self.log(f"resumed from {source} at step {self.step}")
        previous = self.history[-1]["content"] if self.history else None
        if previous and previous != self.session["content"]:
            self.log(f"content changed since the last session: {previous.get('count')} -> "
                     f"{self.session['content'].get('count')} images (recorded in the history)")
        self.session["start_step"] = self.session["end_step"] = self.step
        if self.state_path.exists():
            sync_model_with_state(self.model_path, "steps_done", self.step, self.save)
        return self.step

    def all_history(self) -> list[dict]:
        return self.history + [self.session]

    def save(self, step: int) -> None:
        self.session["end_step"] = step
        config: dict[str, Any] = {**self.config_fn(step), "steps_done": step, "history": self.all_history()}
        weights = self.module.state_dict()
        save_model_and_state(self.model_path, weights, config, self.kind, self.state_path,
                             {"identity": self.identity, "step": step, "model": weights,
                              "optimizer": self.optimizer.state_dict(), "rng": rng_state(self.generator),
                              "history": self.all_history()})

    def summary(self, step: int, seconds_per_step: float | None) -> dict:
        return {"steps": step, "session_steps": step - self.session["start_step"],
                "seconds": self.session["seconds"], "machine": self.session["machine"],
                "history": self.all_history(), "seconds_per_step": seconds_per_step}
