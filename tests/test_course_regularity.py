"""The course measure of the materials rows (tools/model_quality.py): what the VGG19 ratio does not see.

A wall's courses make the mean profile across them repeat; a generator whose courses wave and break loses that
while its VGG19 statistics stay close. Here on the procedural brick wall: its courses are found, a straight copy
reads as straight, the same wall with its courses waved by half a course reads far lower, and exemplars without
courses (wood, stones, rust) have none.
"""

from __future__ import annotations

import numpy as np
import pytest

from core.common.procedural import make_exemplar
from tools.model_quality import COURSE_MIN_REPEAT, course_regularity, exemplar_courses


def _waved(wall: np.ndarray, axis: int, period: int, amplitude: float) -> np.ndarray:
    """The wall with each line across its courses shifted along the profile by a slow sine (courses that wave)."""
    shifts = [int(round(amplitude * period * np.sin(2 * np.pi * i / 128))) for i in range(wall.shape[axis])]
    if axis == 1:  # the profile runs down the rows: shift each column up or down
        return np.stack([np.roll(wall[:, i], s, axis=0) for i, s in enumerate(shifts)], axis=1)
    return np.stack([np.roll(wall[i], s, axis=0) for i, s in enumerate(shifts)], axis=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_straight_courses_read_high_and_waved_ones_low(seed):
    wall = make_exemplar("bricks", 256, seed)
    courses = exemplar_courses(wall)
    assert courses is not None
    axis, period, repeat = courses
    assert 24 <= period <= 40 and repeat >= COURSE_MIN_REPEAT  # the procedural wall's 32 px courses or bricks
    straight = course_regularity(wall[:192, :192], courses)
    waved = course_regularity(_waved(wall, axis, period, 0.5), courses)
    # Measured over seeds 0-5: straight 0.91-0.98, waved by half a course 0.35-0.70 (0.27-0.64 lower).
    assert straight >= 0.85
    assert waved <= straight - 0.15


@pytest.mark.parametrize("name", ["wood", "stones", "rust"])
def test_exemplars_without_courses_have_none(name):
    assert exemplar_courses(make_exemplar(name, 256, 0)) is None


def test_the_training_term_straightens_waved_courses():
    """``course_loss`` (the GAN's course term, on this measure) pulls an image's courses toward its real crop's:
    gradient steps on the waved wall's pixels raise its repeat, a crop as straight as its real one costs nothing."""
    import torch

    from core.common.quality import course_repeat
    from core.texture_gan.distill import course_loss

    wall = make_exemplar("bricks", 256, 0)
    axis, period, _ = exemplar_courses(wall)
    waved = _waved(wall, axis, period, 0.5)[:96, :96]

    def tensor(rgb):
        return torch.from_numpy(np.ascontiguousarray(np.asarray(rgb, np.float32).transpose(2, 0, 1)))[None]
    real = tensor(wall[:96, :96])
    periods = [(axis, period), (0, 0)]
    assert float(course_loss(real.clone(), real, [0], periods)) == 0.0
    assert float(course_loss(tensor(waved), real, [1], periods)) == 0.0  # a material without courses
    fake = tensor(waved).requires_grad_(True)
    before = float(course_repeat(fake.detach(), axis, period))
    assert float(course_loss(fake.detach(), real, [0], periods)) > 0.1
    opt = torch.optim.Adam([fake], lr=0.01)
    for _ in range(30):
        opt.zero_grad()
        loss = course_loss(fake, real, [0], periods)
        loss.backward()
        opt.step()
    after = float(course_repeat(fake.detach(), axis, period))
    assert after > before + 0.1, (before, after)


def test_the_recipes_courses_are_the_bundled_walls():
    """The materials GAN's recipe names each wall's courses as this measure finds them on its exemplar, and no
    others but the fabric's blocks (placed by its lattice inputs instead)."""
    from tools.zoo import gan

    found = {}
    for (name, _, _), exemplar in zip(gan.MATERIALS, gan.load_materials(gan.MATERIALS, None)):
        courses = exemplar_courses(exemplar)
        if courses is not None and name != "render_fabric":
            found[name] = courses[:2]
    assert found == gan.COURSES
