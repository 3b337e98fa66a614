"""Which trained material a fine-tune starts from: a short trial from each of the nearest, the best one continued.

*Train From Image* (``distill.train_one_material(start_from=)``, and the generator phase of a Variation Model)
fine-tunes a materials GAN to the artist's exemplars, each exemplar starting from one of its materials. The nearest
by a static distance (``distill.nearest_materials``: grey VGG19 statistics of one output) is often not the one that
trains best, and no static distance tried (half size, two seeds, deep layers only, the lattice) picked well
everywhere; the better start was always among the nearest three.

So a run of at least ``MIN_STEPS`` trains ``TRIAL_STEPS`` from each of the ``CANDIDATES`` nearest materials (trial
``k``: every exemplar from its ``k``-th nearest), judges each exemplar's outputs against it, and continues the best
trial's state (bit for bit the run that started there): a 2,000-step run costs 200 steps more. With several
exemplars whose best trials differ, the run starts over from each one's best material. The trials are files beside
the model (``NAME.startK.trial.safetensors`` and their states): a cancelled run resumes them, and they are deleted
once the pick is made.

Measured on the bundled 143,229-step model, 300 steps, VGG19 ratio to the photograph's own crops (three 256 px
outputs), nearest start -> the trials' pick: dark stone blocks 1.72 -> 1.52 (cobblestones -> stone bricks: its own
tones), grey stone courses 1.19 -> 1.15, fractured rock 0.77 -> 0.59, grass 1.35 -> 1.13; two photographs never
tuned on, where the trials picked another start, 1.14 -> 1.22 (dirty tiles) and 1.29 -> 1.37 (cobblestones), both
within that measure's noise: six 512 px outputs put those pairs within 4 % (the tiles) and either way by
projection seed (the cobblestones), and the four gains at 10-23 %. At 60 steps the trials tied on the stone blocks
(the wrong start by 1 %); at 100 they led by 18 %.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..common.jobs import CancelToken, ProgressCallback, check_cancel, part_progress
from .train import training_state_path

TRIAL_STEPS = 100
CANDIDATES = 3
MIN_STEPS = 3 * TRIAL_STEPS  # a shorter run starts from the nearest material: the trials would cost most of it
TRIAL_SUFFIX = ".trial.safetensors"  # the model library skips these (core.library)
# The judge's outputs and projections are not the bench's (its seeds 0-5 and projection seed 0): the trials pick
# by the same measure, not on the same samples. Large outputs: after 100 steps on the fractured rock the three
# starts' distances were 0.0074-0.0085 with a standard deviation of 0.0007 per 256 px output, 0.0001-0.0003 per
# 512 px output (three 256 px outputs put the worst start first).
JUDGE_SEEDS = (101, 102, 103, 104)
JUDGE_PROJECTION_SEED = 1
JUDGE_MAX_SIDE = 512


@dataclass
class StartPick:
    """What the trials chose: each exemplar's starting material, the trial the run continues (None: it starts over
    from ``weights``), and each exemplar's trial distances (material -> VGG19 distance)."""
    materials: list[str]
    continued: int | None
    weights: dict[str, torch.Tensor] | None
    distances: list[dict[str, float]] = field(default_factory=list)

    def extra_steps(self, trial_steps: int) -> int:
        """Steps trained that the model's own step count does not hold (the trials not continued)."""
        trials = len(self.distances[0]) if self.distances else 0
        return trial_steps * (trials - (1 if self.continued is not None else 0))

    def record(self, model_name: str, model_steps: int | None = None) -> dict:
        """The model config's ``started_from`` entry (``model_steps``: the starting model's training steps)."""
        return {"model": model_name, "model_steps": model_steps, "materials": list(self.materials),
                "trial_distances": [{k: round(v, 5) for k, v in d.items()} for d in self.distances]}


def trial_steps_for(steps: int, trial_steps: int | None = None) -> int:
    """The trials' length for a run of ``steps`` (0: no trials); ``trial_steps`` overrides the rule."""
    if trial_steps is not None:
        return max(0, min(int(trial_steps), int(steps)))
    return TRIAL_STEPS if steps >= MIN_STEPS else 0


def trial_path(out_path: str | Path, k: int) -> Path:
    out = Path(out_path)
    return out.with_name(f"{out.name.removesuffix('.safetensors')}.start{k + 1}{TRIAL_SUFFIX}")


def remove_trials(out_path: str | Path) -> None:
    """Delete every trial file (model, its config beside it, state) of the run at ``out_path``."""
    for k in range(CANDIDATES):
        trial = trial_path(out_path, k)
        for path in (trial, trial.with_suffix(".json"), training_state_path(trial)):
            path.unlink(missing_ok=True)


def pick_winners(distances: Sequence[Sequence[float]]) -> tuple[list[int], int | None]:
    """``distances[k][j]``: trial ``k``'s distance for exemplar ``j``. Each exemplar's best trial (the earlier,
    nearer start on a tie), and the trial they all share (None when they differ)."""
    table = np.asarray(distances, np.float64)
    best = [int(k) for k in np.argmin(table, axis=0)]
    return best, best[0] if len(set(best)) == 1 else None


def judge_trial(model_path: Path, exemplars: Sequence[np.ndarray]) -> list[float]:
    """Each exemplar's mean VGG19 texture distance to its material's outputs of the model at ``model_path``
    (``JUDGE_SEEDS``; square, twice the exemplar's longer side up to ``JUDGE_MAX_SIDE``)."""
    from ..common.quality import vgg_texture_distance
    from . import load_texture_gan

    model = load_texture_gan(model_path, device="cpu")
    scores = []
    for name, exemplar in zip(model.materials, exemplars):
        side = max(model.stride, min(JUDGE_MAX_SIDE, 2 * max(exemplar.shape[:2])) // model.stride * model.stride)
        scores.append(float(np.mean([vgg_texture_distance(model.generate(side, side, seed=s, material=name),
                                                          exemplar, seed=JUDGE_PROJECTION_SEED)
                                     for s in JUDGE_SEEDS])))
    return scores


def run_trials(start_from: Path, exemplars: Sequence[np.ndarray], out_path: Path, steps: int, trial_steps: int,
               train: Callable[[Path, int, dict, ProgressCallback | None], None],
               progress: ProgressCallback | None = None, cancel: CancelToken | None = None) -> StartPick:
    """Train ``trial_steps`` from each exemplar's ``CANDIDATES`` nearest materials of ``start_from`` and pick.

    ``train(path, steps, initial_weights, progress)`` trains the run's recipe at ``path`` from those generator
    weights (resuming its state there). When every exemplar's best trial is the same, that trial's model and state
    become the run's own (``out_path``), at ``trial_steps``; otherwise the pick's ``weights`` start it over. The
    trials' progress counts against the whole run's: ``steps`` plus the trials not continued."""
    from .distill import nearest_materials, start_from_materials

    ranked = nearest_materials(start_from, exemplars)
    count = min(CANDIDATES, min(len(r) for r in ranked))
    total = steps + (count - 1) * trial_steps
    distances = []
    for k in range(count):
        starts = [r[k] for r in ranked]
        _, weights, _ = start_from_materials(start_from, exemplars, starts)
        what = f"trying start {k + 1} of {count} ({', '.join(starts)})"
        train(trial_path(out_path, k), trial_steps, weights, part_progress(progress, k * trial_steps, total, what))
        check_cancel(cancel)
        distances.append(judge_trial(trial_path(out_path, k), exemplars))
    best, shared = pick_winners(distances)
    pick = StartPick([ranked[j][k] for j, k in enumerate(best)], shared, None,
                     [{ranked[j][k]: distances[k][j] for k in range(count)} for j in range(len(exemplars))])
    if shared is None:
        pick.weights = start_from_materials(start_from, exemplars, pick.materials)[1]
    else:
        trial = trial_path(out_path, shared)
        training_state_path(trial).replace(training_state_path(out_path))
        trial.replace(out_path)
    remove_trials(out_path)
    return pick
