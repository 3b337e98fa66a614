"""Structure-preserving synthesis: lighting flattening, lattice detection, lattice-snapped blocks, and what
they do to the output of a regular brick wall."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.common.procedural import make_exemplar
from core.texture_synth import synthesize
from core.texture_synth.structure import (STRAIGHTEN_MIN_DEGREES, STRAIGHTEN_MIN_KEEP, Lattice, autocorrelation,
                                          block_field, fan, find_lattice, flatten_lighting, lattice_frequencies,
                                          lattice_regularity, layout_for, line_directions, snap_offset, straighten,
                                          straightening)


def brick_wall(size: int = 128, course: int = 16, length: int = 32, seed: int = 0) -> np.ndarray:
    """A clean running-bond wall: courses ``course`` px high, bricks ``length`` px long, mortar 2 px, each
    brick its own shade; repeats along (0, length) and (course, length / 2)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    row = yy // course
    shifted = xx + (row % 2) * (length // 2)
    col = shifted // length
    mortar = ((yy % course) < 2) | ((shifted % length) < 2)
    shade = rng.uniform(0.35, 0.65, (row.max() + 2, col.max() + 2))[row, col]
    grey = np.where(mortar, 0.85, shade + rng.normal(0, 0.03, (size, size)))
    rgb = np.stack([grey, grey * 0.6, grey * 0.45], axis=-1)
    return np.clip(rgb, 0, 1).astype(np.float32)


def _in_lattice(v, lattice_vectors, tol=1.5) -> bool:
    """Is ``v`` (dy, dx) an integer combination of the true lattice vectors (within ``tol`` px)?"""
    basis = np.array(lattice_vectors, dtype=float).T
    coef = np.linalg.solve(basis, np.asarray(v, dtype=float))
    return bool(np.abs(basis @ np.round(coef) - v).max() <= tol and np.abs(coef).sum() >= 0.5)


def _course_strength(rgb: np.ndarray, course: int) -> float:
    """How straight and regular the courses are: the autocorrelation one course-pair down (2 courses: the
    running bond repeats exactly there), as a share of its value at the origin."""
    ac = autocorrelation(rgb.mean(axis=2))
    h, w = rgb.shape[:2]
    return float(ac[h + 2 * course, w])


# --------------------------------------------------------------------------- lighting

def test_flattening_keeps_a_gradient_free_exemplar_and_removes_a_lighting_gradient():
    for seed in range(4):
        wall = brick_wall(seed=seed)
        flat, light = flatten_lighting(wall)
        # An evenly lit wall stays exactly as it is (its fitted planes span x1.11-1.21 over seeds 0-5,
        # under the x1.3 that counts as lighting).
        assert np.array_equal(flat, wall) and np.all(light == 1)
    # The same wall lit from one side (x0.55 .. x1.35 across it) comes back close to the even one.
    ramp = np.linspace(0.55, 1.35, wall.shape[1], dtype=np.float32)[None, :, None]
    lit = np.clip(wall * ramp, 0, 1)
    restored, light = flatten_lighting(lit)
    # Brightness ratio right side / left side: 2.5 lit, 1.0 even; measured after flattening 1.00-1.04.
    left, right = restored[:, :16].mean(), restored[:, -16:].mean()
    assert 0.9 < right / left < 1.12, (left, right)
    assert light[:, -1].mean() / light[:, 0].mean() > 2.0


def _centre_to_corners(rgb: np.ndarray) -> float:
    h, w = rgb.shape[:2]
    corners = [rgb[:24, :24], rgb[:24, -24:], rgb[-24:, :24], rgb[-24:, -24:]]
    return float(rgb[h // 2 - 16: h // 2 + 16, w // 2 - 16: w // 2 + 16].mean() / np.mean([c.mean() for c in corners]))


def test_flattening_takes_out_a_flash_that_a_plane_cannot():
    y, x = np.mgrid[-1:1:128j, -1:1:128j]
    flash = np.exp(-0.6 * (x ** 2 + y ** 2))  # the corners at 0.3 of the centre, a round hot spot
    flash = (flash / np.exp(np.log(flash).mean()))[..., None]
    for seed in range(4):
        for texture in (brick_wall(seed=seed), np.clip(make_exemplar("stones", 128, seed=seed), 0, 1).astype(np.float32)):
            flat, light = flatten_lighting(texture)
            # Evenly lit, the texture's own shades are not taken for a curved light.
            assert np.array_equal(flat, texture) and np.all(light == 1)
            lit = np.clip(texture * flash, 0, 1).astype(np.float32)
            restored, light = flatten_lighting(lit)
            # Centre over corners, as a ratio to the unlit texture's: lit 2.12-2.20; flattened 0.90-1.24 over
            # seeds 0-5 (a plane, symmetric about the centre, takes none of it out). The fitted light's own
            # ratio: 1.77-2.37 (the flash's 2.19).
            assert 0.8 < _centre_to_corners(restored) / _centre_to_corners(texture) < 1.35
            assert _centre_to_corners(light) > 1.5


def test_plain_output_keeps_the_lighting_and_tileable_output_drops_it():
    wall = brick_wall()
    ramp = np.linspace(0.55, 1.35, wall.shape[1], dtype=np.float32)[None, :, None]
    lit = np.clip(wall * ramp, 0, 1)
    for seed in range(2):
        tiled = synthesize(lit, 96, 96, seed=seed, tileable=True).image
        plain = synthesize(lit, 96, 96, seed=seed, tileable=False).image
        # Measured right/left brightness: tileable 0.85-1.15 (no gradient: it could not tile), plain >= 1.9.
        assert 0.75 < tiled[:, -24:].mean() / tiled[:, :24].mean() < 1.3
        assert plain[:, -24:].mean() / plain[:, :24].mean() > 1.5


# --------------------------------------------------------------------------- lattice

@pytest.mark.parametrize("course,length", [(16, 32), (12, 40), (20, 28)])
def test_the_lattice_of_a_brick_wall_is_found(course, length):
    lattice = find_lattice(brick_wall(160, course, length))
    assert lattice is not None and len(lattice.vectors) == 2
    true = [(0, length), (course, length / 2)]
    for v in lattice.vectors:
        assert _in_lattice(v, true), (lattice.vectors, true)
    # The two vectors span the true lattice, not a sub-lattice of it: same cell area (within rounding).
    area = abs(np.linalg.det(np.array(lattice.vectors)))
    assert area == pytest.approx(course * length, rel=0.1), lattice.vectors


@pytest.mark.parametrize("path,stagger,no_stagger", [
    # looking up a wall of upright bricks: columns 36 px apart, each half a brick (29 px) down from the last
    ("models/exemplars/photo_brick.png", (29, 36), (0, 36)),
    # courses 32 px high, bricks 96 px long
    ("data/texture_photos/tune_brick_old_pale.jpg", (32, 48), (0, 48)),
])
def test_a_photographed_running_bond_keeps_its_stagger(path, stagger, no_stagger):
    """In a photograph the courses' own mortar lines make a ridge of repeats along the courses; its foot repeats
    the courses only. Taken as a lattice vector beside a staggered one, it let the quilt put a course (or a
    column) half a brick out of step: bricks cut short, columns that step sideways. The lattice found has the
    stagger and not the course moved straight across."""
    from pathlib import Path

    from core.common.images import load_rgb

    root = Path(__file__).resolve().parents[2]
    lattice = find_lattice(straighten(load_rgb(root / path)))
    assert lattice is not None and len(lattice.vectors) == 2, lattice
    assert _in_lattice(stagger, lattice.vectors, tol=3.0), lattice.vectors
    assert not _in_lattice(no_stagger, lattice.vectors, tol=3.0), lattice.vectors


def test_irregular_textures_have_no_lattice():
    for seed in range(3):
        assert find_lattice(np.clip(make_exemplar("stones", 128, seed=seed), 0, 1)) is None
        noise = np.random.default_rng(seed).random((96, 96, 3)).astype(np.float32)
        assert find_lattice(noise) is None


@pytest.mark.parametrize("vectors", [[(16.0, 16.0), (0.0, 32.0)], [(12.0, -20.0), (12.0, 20.0)], [(15.0, 0.0)],
                                     [(-15.999999999999995, 15.999999999999993), (16.0, 16.0)]])  # a render's
def test_lattice_frequencies_are_the_reciprocal_lattice(vectors):
    """Every frequency makes whole turns along every repeat vector (a pattern on the lattice is a sum of these
    waves), one of each +-f pair, none over the limit, the lowest first; a wall's course frequency is among them."""
    lattice = Lattice(vectors, [1.0] * len(vectors))
    freqs = lattice_frequencies(lattice, 0.2)
    assert len(freqs) == len(set(freqs)) >= 3
    for f in freqs:
        turns = np.asarray(vectors) @ np.asarray(f)
        assert np.allclose(turns, np.round(turns), atol=1e-5) and max(map(abs, f)) <= 0.2
        assert f[0] > 0 or (f[0] == 0 and f[1] > 0)
    sums = [abs(fy) + abs(fx) for fy, fx in freqs]
    assert sums == sorted(sums)
    course = abs(vectors[0][0])  # the rows repeat one course down
    assert any(np.allclose(f, (1 / course, 0.0), atol=1e-5) for f in freqs), freqs
    assert not lattice_frequencies(lattice, 0.01)


def test_lattice_regularity_tells_a_straight_wall_from_a_wavy_one():
    """The measure the VGG19 statistics miss: a wall whose courses wave (each row shifted along a slow sine)
    or whose bricks are shuffled in blocks repeats far less on the wall's own lattice."""
    wall = brick_wall(192, 16, 32)
    lattice = find_lattice(wall)
    straight = lattice_regularity(wall, lattice)
    rows = np.arange(192)
    wavy = np.stack([np.roll(wall[y], int(round(6 * np.sin(2 * np.pi * y / 70)))) for y in rows])
    wavy = np.stack([np.roll(wavy[:, x], int(round(5 * np.sin(2 * np.pi * x / 90)))) for x in rows], axis=1)
    rng = np.random.default_rng(0)
    blocks = wall.reshape(8, 24, 8, 24, 3).transpose(0, 2, 1, 3, 4).reshape(64, 24, 24, 3)[rng.permutation(64)]
    shuffled = blocks.reshape(8, 8, 24, 24, 3).transpose(0, 2, 1, 3, 4).reshape(192, 192, 3)
    assert straight > 0.6
    assert lattice_regularity(wavy, lattice) < 0.6 * straight
    assert lattice_regularity(shuffled, lattice) < 0.6 * straight


def test_snapped_block_offsets_differ_by_whole_lattice_vectors():
    lattice = Lattice([(0.0, 32.0), (16.0, 16.0)], [1.0, 1.0])
    gen = torch.Generator().manual_seed(0)
    fy, fx = block_field([(0, 0, 160, 160)], [lattice], 96, 96, block=24, patch=7, gen=gen, periodic=False)
    ys, xs = np.mgrid[0:96, 0:96]
    offsets = np.stack([fy.numpy() - ys, fx.numpy() - xs], axis=-1).reshape(-1, 2)
    distinct = np.unique(offsets, axis=0)
    assert len(distinct) > 3  # copied from several places...
    for o in distinct[1:]:  # ...all on one lattice phase
        assert _in_lattice(o - distinct[0], lattice.vectors, tol=1.0), (o, distinct[0])
    assert snap_offset((5.0, 7.0), (0.0, 0.0), None) == (5.0, 7.0)


# --------------------------------------------------------------------------- which layout

def _auto_pick(rgb: np.ndarray) -> str:
    return layout_for([find_lattice(flatten_lighting(rgb)[0])])


def test_auto_layout_picks_blocks_for_a_regular_wall_and_sliced_for_irregular_textures():
    """A lattice needs a peak of the autocorrelation >= 0.3 (structure.PEAK_MIN). Measured over seeds 0-3:
    the walls below find theirs at 0.59-0.80; stones' strongest peak is 0.13-0.19, white noise's 0.05-0.06."""
    for seed in range(3):
        for course, length in [(16, 32), (12, 40), (20, 28)]:
            assert _auto_pick(brick_wall(160, course, length, seed=seed)) == "blocks", (seed, course, length)
        assert _auto_pick(np.clip(make_exemplar("stones", 128, seed=seed), 0, 1)) == "sliced", seed
        assert _auto_pick(np.random.default_rng(seed).random((96, 96, 3)).astype(np.float32)) == "sliced", seed
    # Several exemplars: one that repeats is enough for blocks.
    stones = np.clip(make_exemplar("stones", 128, seed=0), 0, 1)
    assert layout_for([find_lattice(stones), find_lattice(brick_wall(160))]) == "blocks"


def test_auto_layout_is_exactly_the_layout_it_picks():
    wall = brick_wall(128)
    stones = np.clip(make_exemplar("stones", 96, seed=1), 0, 1)
    for exemplar, picked, other in ((wall, "blocks", "sliced"), (stones, "sliced", "blocks")):
        auto = synthesize(exemplar, 64, 64, seed=2, steps=2, layout="auto").image
        assert np.array_equal(auto, synthesize(exemplar, 64, 64, seed=2, steps=2, layout=picked).image), picked
        assert not np.array_equal(auto, synthesize(exemplar, 64, 64, seed=2, steps=2, layout=other).image), other


# --------------------------------------------------------------------------- the output

def test_a_synthesized_brick_wall_keeps_its_period_and_orientation():
    """Courses stay straight and bricks keep their length: the output repeats on the exemplar's lattice."""
    course, length = 16, 32
    wall = brick_wall(128, course, length)
    strengths = []
    for seed in range(3):
        image = synthesize(wall, 192, 192, seed=seed, tileable=True).image
        lattice = find_lattice(image)
        assert lattice is not None, seed
        for v in lattice.vectors:
            assert _in_lattice(v, [(0, length), (course, length / 2)]), (seed, lattice.vectors)
        strengths.append(_course_strength(image, course))
    # Exemplar 0.93; block layout measured 0.71-0.80 over seeds 0-2; the sliced layout (main before this
    # change) 0.25-0.45: its courses wave and break.
    assert min(strengths) > 0.6, strengths


# --------------------------------------------------------------------------- slant

def fanned_wall(size: int = 192, width: int = 16, length: int = 64, distance: float = 2.5, seed: int = 0
                ) -> np.ndarray:
    """A running-bond wall whose columns of bricks (``width`` px wide at mid-height) converge towards a
    vanishing point ``distance`` sides above the image, as a wall photographed looking up."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    d = distance * size
    u = (xx - size / 2) * (d + size / 2) / (yy + d) + 1000  # columns in the wall's own coordinates
    col = np.floor(u / width).astype(int)
    along = yy + (col % 2) * (length / 2)
    row = np.floor(along / length).astype(int)
    mortar = ((u % width) < 2) | ((along % length) < 2)
    shade = rng.uniform(0.35, 0.65, (col.max() + 2, row.max() + 2))[col, row]
    grey = np.where(mortar, 0.85, shade + rng.normal(0, 0.03, (size, size)))
    return np.clip(np.stack([grey, grey * 0.6, grey * 0.45], axis=-1), 0, 1).astype(np.float32)


def _fan_degrees(rgb: np.ndarray) -> float:
    _, angles, coherence = line_directions(rgb)
    return float(np.degrees(fan(angles, coherence)))


@pytest.mark.parametrize("distance,seed", [(2.0, 0), (1.5, 1)])
def test_a_fanned_wall_is_straightened_to_parallel_courses(distance, seed):
    wall = fanned_wall(distance=distance, seed=seed)
    assert _fan_degrees(wall) > 2 * STRAIGHTEN_MIN_DEGREES  # the columns fan out
    assert straightening(wall) is not None
    straight = straighten(wall)
    assert straight.shape[0] >= STRAIGHTEN_MIN_KEEP * wall.shape[0] and straight.shape[2] == 3
    assert _fan_degrees(straight) < 0.3 * _fan_degrees(wall)
    assert abs(straight.mean() - wall.mean()) < 0.03  # the same wall, resampled


@pytest.mark.parametrize("exemplar", ["parallel", "tilted", "stones", "noise"])
def test_exemplars_without_a_fan_are_left_exactly_as_they_are(exemplar):
    if exemplar == "parallel":
        rgb = brick_wall(192)
    elif exemplar == "tilted":  # a uniform tilt quilts well: left alone
        yy, xx = np.mgrid[0:192, 0:192]
        rgb = brick_wall(272)[(yy * 0.97 + xx * 0.24).astype(int) + 10, (xx * 0.97 - yy * 0.24).astype(int) + 60]
    elif exemplar == "stones":
        rgb = make_exemplar("stones", 192, seed=0)
    else:
        rgb = np.random.default_rng(0).uniform(0, 1, (192, 192, 3)).astype(np.float32)
    assert straightening(rgb) is None
    assert straighten(rgb) is rgb


def test_synthesis_of_a_fanned_wall_keeps_its_courses_parallel():
    wall = fanned_wall(distance=2.0)
    out = synthesize(wall, 256, 256, seed=1, tileable=True, layout="quilted").image
    # measured over seeds 1-3: 0.04-0.09 of the wall's fan; without straightening 0.51-0.58 (blocks of every tilt)
    assert _fan_degrees(out) < 0.25 * _fan_degrees(wall)
