"""The bench's quality measures as reusable pieces, with each reference's features computed once.

One place for what ``tools/eval_fast_styles.py``, ``tools/eval_materials.py``, the benches' materials rows and the
zoo's ``evaluate`` hooks (``tools/zoo/__init__.py``; ``build.py gpu-run`` keeps a GPU-trained model only where
it scores better than the CPU-trained one) measure:

* stylization (``core.common.quality.style_distance`` / ``content_distance``, same formulas): ``Judge``,
  ``measure``, ``stylization_score`` on the bench's held-out photo and render (``held_out_inputs``);
* textures (``core.common.quality.vgg_texture_distance``, same formula): ``VGGJudge`` and ``texture_baseline``
  (a material's own random crops), ``gradient_energy`` (sharpness), ``material_score``.

Every judge runs on the device it is given; two models measured in one process on one device see the same
inputs, seeds and cached reference features, so their scores compare.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PAINTINGS = ROOT / "data" / "paintings"

# The bench's stylization targets: style distance cut >= 40 % against the unstylized frame, content <= 1.0.
CUT_TARGET, CONTENT_TARGET = 0.40, 1.0
# The bench's grain-gain rows (benchmarks/bench_style.py): a weave of strokes over grain shows from about 3.
GRAIN_TARGET = 3.0
# The bench's materials targets: SW ratio <= 1.6 (a score's main term), gradient energy >= 0.85: the of the
# exemplar's (``exemplar_sharpness``), and the stricter of each variation's own crop, which scores use.
RATIO_TARGET, SHARPNESS_TARGET = 1.6, 0.85
VARY_STRENGTH = 0.5


# --------------------------------------------------------------------------- stylization

@functools.lru_cache(maxsize=4)
def held_out_inputs(size: int) -> dict[str, np.ndarray]:
    """The bench's held-out photograph and render (``benchmarks.bench_style.real_inputs``), longer side
    ``size``. Cached: callers must not modify the arrays (``Judge`` keys the unstylized distances by them)."""
    from benchmarks.bench_style import real_inputs
    from core.style.optimize import fit_max_side

    return {kind: fit_max_side(frame, size) for kind, frame in real_inputs(quick=False).items()}


@functools.lru_cache(maxsize=64)
def painting(name: str) -> np.ndarray:
    """``data/paintings/NAME.jpg`` (``.jpg`` optional), loaded once."""
    from core.common.images import load_rgb

    return load_rgb(PAINTINGS / (name if name.endswith(".jpg") else f"{name}.jpg"))


class Judge:
    """``quality.style_distance`` (which keeps the paintings' Grams) and ``quality.content_distance`` (same
    formula, same network, images fitted to ``max_side``) on ``device``, with each frame's content features and
    each unstylized distance computed once."""

    def __init__(self, device: str = "cpu", max_side: int = 512):
        import torch

        from core.common.perception import CONTENT_LAYER, load_perception
        from core.common.quality import _fit

        self.torch, self.content_layer, self.fit = torch, CONTENT_LAYER, _fit
        self.device, self.max_side = device, max_side
        self.net = load_perception(device)
        self.before: dict[tuple, float] = {}
        self.content: dict[int, tuple] = {}

    def _features(self, image: np.ndarray, layers) -> dict:
        from core.common.images import to_tensor

        with self.torch.no_grad():
            return self.net(to_tensor(self.fit(image, self.max_side)).to(self.device), layers)

    def style_distance(self, image: np.ndarray, painting: np.ndarray) -> float:
        from core.common.quality import style_distance

        return style_distance(image, painting, self.max_side, device=self.device)

    def content_distance(self, image: np.ndarray, frame: np.ndarray) -> float:
        if id(frame) not in self.content:  # the frame itself is kept so its id stays its own
            fitted = self.fit(frame, self.max_side)
            self.content[id(frame)] = (frame, fitted.shape[:2], self._features(fitted, (self.content_layer,))[
                self.content_layer])
        _, shape, fc = self.content[id(frame)]
        a = self.fit(image, self.max_side)
        if a.shape[:2] != shape:
            from core.common.images import resize_rgb
            a = np.clip(resize_rgb(a, shape[1], shape[0]), 0.0, 1.0)
        fa = self._features(a, (self.content_layer,))[self.content_layer]
        return float((fa - fc).pow(2).mean() / (fc.pow(2).mean() + 1e-8))


@functools.lru_cache(maxsize=8)
def judge(device: str = "cpu", max_side: int = 512) -> Judge:
    """One ``Judge`` per device and size, so a second model measured in the same process reuses the first's
    frame features and unstylized distances."""
    return Judge(device, max_side)


def measure(judge: Judge, out: np.ndarray, frame: np.ndarray, painting: np.ndarray, key: str) -> dict:
    """One stylization against the bench's targets: the style-distance cut against the unstylized frame and the
    content distance to it."""
    before_key = (key, id(frame))  # the unstylized frame's distance: once per painting and frame
    if before_key not in judge.before:
        judge.before[before_key] = judge.style_distance(frame, painting)
    before, after = judge.before[before_key], judge.style_distance(out, painting)
    return {"cut": 1.0 - after / before, "content": judge.content_distance(out, frame), "style": after,
            "before": before}


def meets_targets(row: dict) -> bool:
    return row["cut"] >= CUT_TARGET and row["content"] <= CONTENT_TARGET


def stylization_score(rows: list[dict]) -> float:
    """Lower is better: the mean over (style x input) of the remaining style distance (after / before, i.e.
    1 - cut) plus how far the content distance goes past its 1.0 target.

    Why this form: the cut is the bench's headline and the thing training improves, while the content distance is
    a bound, not a goal: below 1.0 the frame is still recognisable, and rewarding a lower content distance would
    favour a model that barely paints (the identity scores 0). Past the bound each unit costs as much as the whole
    cut (both are ratios to a natural scale: the unstylized frame's distance, an unrelated image's ~1), so a model
    cannot buy style by destroying the frame."""
    return float(np.mean([(1.0 - r["cut"]) + max(0.0, r["content"] - CONTENT_TARGET) for r in rows]))


def style_figures(rows: dict[str, dict]) -> dict:
    """The evaluate hooks' return value: the score, the mean figures and every row (rounded)."""
    values = list(rows.values())
    return {"score": stylization_score(values),
            "mean_cut": float(np.mean([r["cut"] for r in values])),
            "mean_content": float(np.mean([r["content"] for r in values])),
            "meets_targets": all(meets_targets(r) for r in values),
            "rows": {k: {"cut": round(r["cut"], 4), "content": round(r["content"], 4)} for k, r in rows.items()}}


def style_profile_size(profile: str) -> int:
    """Longer side of the held-out frames (and the measures' fit): the bench's 512, 64 px for the rehearsal."""
    return 64 if profile == "tiny" else 512


# --------------------------------------------------------------------------- textures

def gradient_energy(rgb: np.ndarray) -> float:
    grey = np.asarray(rgb, np.float64).mean(axis=2)
    return float((np.diff(grey, axis=0) ** 2).mean() + (np.diff(grey, axis=1) ** 2).mean())


def crops(exemplar: np.ndarray, size: int, count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    h, w = exemplar.shape[:2]
    return [exemplar[y:y + size, x:x + size] for y, x in
            ((int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))) for _ in range(count))]


# Courses: a wall's bed joints (the brick photograph's columns) make the mean profile across them repeat. The VGG19
# ratio does not see whether they run straight (a wall whose courses wave and break reads as well as one whose
# courses are straight), so the materials rows measure it apart. An exemplar has courses when its profile, after
# the straightening instant synthesis applies (``structure.straighten``), correlates at least COURSE_MIN_REPEAT
# with itself shifted by a period of at least COURSE_MIN_PERIOD px (a local maximum: smooth images correlate
# with themselves at small shifts): photo_brick 0.94 at 36 px, oa_stone_bricks 0.86 at 39, render_fabric's blocks
# 0.99 at 16; the other six bundled materials have none (gravel's best: 0.28).
COURSE_MIN_REPEAT, COURSE_MIN_PERIOD = 0.6, 12


def _profile_repeat(profile: np.ndarray, lag: int) -> float:
    """Correlation of a profile with itself shifted by ``lag`` (the overlapping part)."""
    a, b = profile[:-lag], profile[lag:]
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (math.sqrt(float((a * a).sum() * (b * b).sum())) + 1e-12))


def exemplar_courses(exemplar: np.ndarray) -> tuple[int, int, float] | None:
    """(axis averaged along, period in px, repeat) of the exemplar's courses, straightened; None: it has none."""
    from core.texture_synth.structure import straighten

    grey = np.asarray(straighten(exemplar), np.float64).mean(axis=2)
    peaks = []  # (axis, lag, repeat) of every local maximum
    for axis in (0, 1):
        profile = grey.mean(axis=axis)
        repeats = [_profile_repeat(profile, lag) if lag else 1.0 for lag in range(len(profile) // 3 + 1)]
        peaks += [(axis, lag, repeats[lag]) for lag in range(COURSE_MIN_PERIOD, len(repeats) - 1)
                  if repeats[lag - 1] < repeats[lag] >= repeats[lag + 1] and repeats[lag] >= COURSE_MIN_REPEAT]
    if not peaks:
        return None
    # The strongest peak's period, or a shorter one that repeats nearly as well (its multiples repeat too).
    strongest = max(p[2] for p in peaks)
    return min((p for p in peaks if p[2] >= strongest - 0.05), key=lambda p: p[1])


def course_regularity(image: np.ndarray, courses: tuple[int, int, float]) -> float:
    """How straight and even an image's courses run (1.0: the mean profile across them repeats exactly): the
    largest correlation of its profile with itself shifted within 20 % of the exemplar's period
    (``core.common.quality.course_repeat``, which the GAN's course term uses too)."""
    import torch

    from core.common.quality import course_repeat
    axis, period, _ = courses
    rgb = torch.from_numpy(np.ascontiguousarray(np.asarray(image, np.float64).transpose(2, 0, 1)))[None]
    return float(course_repeat(rgb, axis, period))


class VGGJudge:
    """``core.common.quality.vgg_texture_distance`` against one reference, its features computed once
    (the same numbers: same crop, layers, projections and seed)."""

    def __init__(self, reference: np.ndarray, seed: int = 0, max_side: int = 512, device: str = "cpu"):
        import torch

        from core.common.images import to_tensor
        from core.common.perception import load_perception
        from core.common.quality import TEXTURE_LAYERS, _crop

        self.net, self.layers, self.seed, self.max_side = load_perception(device), TEXTURE_LAYERS, seed, max_side
        self._crop, self._to_tensor, self.device = _crop, to_tensor, device
        with torch.no_grad():
            self.ref = self.net(to_tensor(_crop(reference, max_side)).to(device), self.layers)

    def __call__(self, image: np.ndarray) -> float:
        import torch

        from core.common.quality import sliced_wasserstein
        gen = torch.Generator().manual_seed(self.seed)
        with torch.no_grad():
            feats = self.net(self._to_tensor(self._crop(image, self.max_side)).to(self.device), self.layers)
            total = 0.0
            for name in self.layers:
                scale = float(self.ref[name].pow(2).mean()) + 1e-8
                total += float(sliced_wasserstein(feats[name], self.ref[name], 64, gen)) / scale
        return total / len(self.layers)


_BASELINES: dict[tuple, tuple[VGGJudge, float]] = {}

# How many of an exemplar's own random crops its baseline averages (the denominator of every materials ratio). One
# crop's distance to its exemplar scatters widely (coefficient of variation over 48 crops, 256 px of a 512 px
# exemplar: 0.44 brick wall, 0.41 grass and rust, 0.27 cobblestones and fabric, 0.15 stone bricks), so the 2-6
# crops that stood here until the forty-seventh session put a material's ratio 10-35 % off either way (cobblestones'
# six crops read 1.88e-3 where 48 read 2.19e-3 and another 48 2.25e-3: its ratio 17 % high; grass's six 5.34e-3
# against 3.95e-3: 35 % low). Sixty-four put it within ~5 %. A fixed draw, the first crops the same as before.
BASELINE_CROPS = 64


def texture_baseline(key: str, exemplar: np.ndarray, size: int, device: str = "cpu",
                     count: int = BASELINE_CROPS) -> tuple[VGGJudge, float]:
    """(the exemplar's judge, the mean distance of ``count`` of its own random ``size``-px crops): what a
    material's outputs are divided by. Cached per material, size, count and device."""
    cache_key = (key, exemplar.shape, size, count, device)
    if cache_key not in _BASELINES:
        judge = VGGJudge(exemplar, device=device)
        _BASELINES[cache_key] = judge, float(np.mean([judge(c) for c in crops(exemplar, size, count, 1)]))
    return _BASELINES[cache_key]


def source_crops(exemplar: np.ndarray, size: int, count: int) -> list[np.ndarray]:
    """The crops a VAE's variations are made from, one per seed. A variation keeps its source's layout, so it reads
    about as far from the exemplar as its source does: one source (the bench's until the forty-seventh session)
    made a material's figure that crop's (the cobblestones' read 1.6x the exemplar's own crops' mean by itself)."""
    return crops(exemplar, size, count, 7)


def variation_figures(images: list[np.ndarray], sources: list[np.ndarray], judge: VGGJudge, base: float
                      ) -> tuple[float, float]:
    """(VGG19 ratio to the exemplar's own crops, gradient energy over each image's source crop) of variations (or
    samples set beside them), averaged; ``sources``: one per image."""
    return (float(np.mean([judge(v) for v in images])) / base,
            float(np.mean([gradient_energy(v) / gradient_energy(s) for v, s in zip(images, sources)])))


def exemplar_sharpness(images: list[np.ndarray], exemplar: np.ndarray) -> float:
    """Gradient energy of ``images`` over the whole exemplar's, averaged: the issue's VAE target ("gradient energy
    >= 0.85 of the exemplar's"). ``variation_figures``' figure, over each variation's own source crop, is stricter
    where a source is sharper than the photograph's average (the bench's grass crops: 1.10-1.20 of it)."""
    return float(np.mean([gradient_energy(v) for v in images])) / gradient_energy(exemplar)


def material_score(rows: list[dict]) -> float:
    """Lower is better: the geometric mean over materials of the SW ratio (the bench's headline: 1.0 is as close
    as the exemplar's own crops) plus, where measured, how far the gradient energy falls short of its 0.85 target.

    Geometric: the ratios are multiplicative and spread widely between materials (the CPU-trained VAE at 1559
    steps: 4.0 on brick, 41 on rusty metal), so halving any material's ratio counts alike instead of the worst
    materials deciding alone. The shortfall is in the same unit (a ratio to the crop's own figure) and only a
    shortfall counts: sharper than the crop is not better, and blur is what a VAE's pixel losses drift to. ``inf``
    where a material is missing from the model, so a model that lost one never replaces one that has it."""
    if any(r.get("missing") for r in rows):
        return math.inf
    terms = [r["ratio"] + max(0.0, SHARPNESS_TARGET - r.get("grad_energy", SHARPNESS_TARGET)) for r in rows]
    return float(np.exp(np.mean(np.log(terms))))
