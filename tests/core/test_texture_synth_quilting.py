"""The quilted block start: blocks joined along mortar lines keep bricks whole, and offsets stay on the
lattice so courses stay straight."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.texture_synth import quilting
from core.texture_synth.structure import Lattice, block_field, find_lattice


def mixed_bricks(size: int = 96, course: int = 12, shortest: int = 14, longest: int = 30, seed: int = 0
                 ) -> np.ndarray:
    """Straight courses of bricks of random lengths (no bond: nothing repeats along a course), mortar 2 px,
    each brick its own shade. Random blocks cut such bricks wherever the grid falls; quilting should not."""
    rng = np.random.default_rng(seed)
    grey = np.empty((size, size), np.float32)
    for top in range(0, size, course):
        x = -int(rng.integers(0, longest))
        while x < size:
            length = int(rng.integers(shortest, longest + 1))
            grey[top: top + course, max(0, x): max(0, x + length)] = rng.uniform(0.35, 0.65)
            if x >= 0:
                grey[top: top + course, x: x + 2] = 0.85
            x += length
        grey[top: top + 2] = 0.85
    grey = np.where(grey > 0.8, grey, grey + rng.normal(0, 0.03, grey.shape).astype(np.float32))
    return np.clip(np.stack([grey, grey * 0.6, grey * 0.45], axis=-1), 0, 1).astype(np.float32)


def brick_runs(rgb: np.ndarray) -> np.ndarray:
    """Lengths of the brick stretches between mortar along every row that crosses a course (on a torus)."""
    lengths = []
    for row in rgb[..., 0] > 0.75:
        if row.mean() > 0.5 or not row.any():
            continue  # a bed joint, or no head joint at all
        row = np.roll(row, -int(np.argmax(row)))  # start on mortar: no stretch straddles the wrap
        change = np.diff(row.astype(np.int8))
        starts, ends = np.flatnonzero(change == -1), np.flatnonzero(change == 1)
        ends = np.append(ends, len(row) - 1)
        lengths += [int(ends[ends > s][0] - s) for s in starts]
    return np.array(lengths)


def _odd_share(rgb: np.ndarray, shortest: int, longest: int) -> float:
    """Share of brick stretches shorter or longer than any brick of the wall (cut or merged bricks)."""
    runs = brick_runs(rgb)
    return float(np.mean((runs < shortest - 2) | (runs > longest + 2)))


def test_quilted_blocks_keep_bricks_whole_where_random_blocks_cut_them():
    wall = mixed_bricks()
    lattice = find_lattice(wall)
    atlas = torch.from_numpy(wall).permute(2, 0, 1).contiguous()
    shortest, longest = 12, 28  # the wall's bricks less their 2 px head joint
    quilted, random_blocks = [], []
    for seed in range(4):
        fy, fx = quilting.quilt_field(atlas, [(0, 0, 96, 96)], [lattice], 160, 160, block=24, patch=7,
                                      gen=torch.Generator().manual_seed(seed), periodic=True)
        quilted.append(_odd_share(wall[fy.numpy(), fx.numpy()], shortest, longest))
        fy, fx = block_field([(0, 0, 96, 96)], [lattice], 160, 160, block=24, patch=7,
                             gen=torch.Generator().manual_seed(seed), periodic=True)
        random_blocks.append(_odd_share(wall[fy.numpy(), fx.numpy()], shortest, longest))
    # Measured over seeds 0-5: quilted 0.085-0.21 (mean of seeds 0-3: 0.14), random lattice-snapped blocks
    # 0.21-0.29 (mean 0.26).
    assert np.mean(quilted) < 0.2, quilted
    assert np.mean(quilted) < np.mean(random_blocks) - 0.05, (quilted, random_blocks)


def test_quilted_offsets_stay_on_the_lattice_and_vary():
    lattice = Lattice([(0.0, 32.0), (16.0, 16.0)], [1.0, 1.0])
    rng = np.random.default_rng(0)
    atlas = torch.from_numpy(rng.uniform(0, 1, (3, 160, 160)).astype(np.float32))
    fy, fx = quilting.quilt_field(atlas, [(0, 0, 160, 160)], [lattice], 96, 96, block=24, patch=7,
                                  gen=torch.Generator().manual_seed(0), periodic=False)
    ys, xs = np.mgrid[0:96, 0:96]
    offsets = np.stack([fy.numpy() - ys, fx.numpy() - xs], axis=-1).reshape(-1, 2)
    distinct = np.unique(offsets, axis=0)
    assert len(distinct) > 3  # copied from several places...
    basis = np.array(lattice.vectors).T
    for o in distinct[1:]:  # ...all on one lattice phase (96 px is a whole number of periods: the wrap too)
        coef = np.linalg.solve(basis, (o - distinct[0]).astype(float))
        assert np.abs(basis @ np.round(coef) - (o - distinct[0])).max() <= quilting.LATTICE_TOLERANCE + 0.5, o


def test_the_seam_follows_the_cheapest_path():
    error = np.full((20, 12), 5.0)
    error[:, :5] = 1.0
    error[:, 3] = 0.0  # a free column in the left overlap: the cut must run down it
    filled = np.zeros((20, 12), dtype=bool)
    filled[:, :5] = True  # only the left strip is already there
    keep = quilting._keep_old(error, filled, overlap=5)
    assert keep[:, :3].all() and not keep[:, 3:].any()


def test_quilted_layout_is_an_option_of_synthesize_and_keeps_tiling():
    from core.texture_synth import synthesize

    wall = mixed_bricks(96, seed=2)
    blocks = synthesize([wall], 80, 80, seed=1, tileable=True, layout="blocks").image
    quilted = synthesize([wall], 80, 80, seed=1, tileable=True, layout="quilted").image
    assert quilted.shape == blocks.shape == (80, 80, 3)
    assert float(np.abs(quilted - blocks).mean()) > 0.01  # a different start, not the default path again
    # Tileable: the wrap-around step is no larger than the steps inside the texture.
    inner = float(np.abs(np.diff(quilted, axis=1)).mean())
    wrap = float(np.abs(quilted[:, 0] - quilted[:, -1]).mean())
    assert wrap < 2.0 * inner


def test_overlap_error_by_fourier_transform_equals_the_direct_sum():
    rng = np.random.default_rng(0)
    source = torch.from_numpy(rng.uniform(0, 1, (3, 40, 36)))
    mask = torch.from_numpy(rng.uniform(0, 1, (11, 9)) > 0.5).double()
    target = torch.from_numpy(rng.uniform(0, 1, (3, 11, 9)))
    error = quilting._Spectra(source).error(mask, mask[None] * target, 11, 9)
    assert error.shape == (30, 28)
    for y, x in ((0, 0), (7, 13), (29, 27)):
        window = source[:, y: y + 11, x: x + 9]
        direct = float((mask * (window ** 2).sum(0)).sum() - 2 * (mask[None] * target * window).sum())
        assert abs(float(error[y, x]) - direct) < 1e-9


def _coverage(usage_weight: float, seed: int) -> float:
    """Share of the wall's patch centres that a 160 px quilt copies at least once."""
    wall = mixed_bricks(96, seed=seed)
    atlas = torch.from_numpy(wall).permute(2, 0, 1).contiguous()
    fy, fx = quilting.quilt_field(atlas, [(0, 0, 96, 96)], [find_lattice(wall)], 160, 160, block=24, patch=7,
                                  gen=torch.Generator().manual_seed(seed), periodic=True, usage_weight=usage_weight)
    used = np.zeros((96, 96), dtype=bool)
    used[fy.numpy(), fx.numpy()] = True
    return float(used[3:-3, 3:-3].mean())


def test_the_usage_term_spreads_the_quilt_over_the_whole_exemplar():
    """Without it the best-fitting places win again and again (smooth long bricks, the same few pieces), so a
    quilt over-represents them and under-represents the rest; the usage term makes copied places dearer."""
    plain = [_coverage(0.0, seed) for seed in range(4)]
    spread = [_coverage(quilting.USAGE_WEIGHT, seed) for seed in range(4)]
    # Measured over seeds 0-5: without the term 0.50-0.62 (mean 0.58), with it 0.71-0.85 (mean 0.78).
    assert min(spread) > 0.65, spread
    assert np.mean(spread) > np.mean(plain) + 0.1, (plain, spread)


def test_the_quilt_can_be_cancelled_between_blocks():
    calls = []

    def check():
        calls.append(1)
        if len(calls) == 3:
            raise InterruptedError("cancelled")

    atlas = torch.from_numpy(mixed_bricks(96)).permute(2, 0, 1).contiguous()
    with pytest.raises(InterruptedError):
        quilting.quilt_field(atlas, [(0, 0, 96, 96)], [None], 160, 160, block=24, patch=7,
                             gen=torch.Generator().manual_seed(0), periodic=True, check_cancel=check)
    assert len(calls) == 3  # stopped at the third block of about 49


def _two_pieces(periodic_step: bool = True):
    """An exemplar that brightens left to right (plus grain) and an output made of two pieces of it, side by
    side: the right piece comes from 25 px further right, so its tone steps up where the pieces meet."""
    from core.texture_synth import nearest_patches

    gen = torch.Generator().manual_seed(0)
    exemplar = torch.linspace(0.1, 0.9, 96).view(1, 1, 96).expand(3, 96, 96).clone()
    exemplar += 0.05 * torch.rand(3, 96, 96, generator=gen)
    atlas = nearest_patches.PatchAtlas([exemplar], 7)
    ys, xs = torch.meshgrid(torch.arange(40), torch.arange(40), indexing="ij")
    sources = (ys + 20) * 96 + xs + 10 + torch.where(xs < 20, 0, 25)
    return nearest_patches, atlas, sources


def test_blended_seams_lose_their_tone_step_and_keep_the_grain():
    nearest_patches, atlas, sources = _two_pieces()
    copied = nearest_patches.copy_sources(atlas, sources)
    blended = nearest_patches.blend_seams(atlas, sources, periodic=True)

    def step(image):  # mean jump across the seam between the pieces (column 19 -> 20), over the grain
        return float((image[:, :, 20] - image[:, :, 19]).mean())

    inside = lambda image: image[:, :, 2:18].diff(dim=2)  # noqa: E731 (the left piece's own grain)
    # Measured: step 0.220 before, 2e-6 after; the grain's differences moved by at most 0.015.
    assert step(copied) > 0.15  # 25 px of the brightening: a visible seam
    assert abs(step(blended)) < 0.02 * step(copied) + 0.01
    # Only a smooth offset changed inside the pieces: their pixel-to-pixel differences (the grain) stay.
    assert float((inside(blended) - inside(copied)).abs().max()) < 0.03
    assert abs(float(blended.mean() - copied.mean())) < 1e-4


def test_a_seams_tone_correction_stays_near_the_seam(monkeypatch):
    """Screened blending (``BLEND_REACH``): the step at a seam is still taken out, but the offset that does it
    fades with the distance from that seam, instead of shifting whole regions of the output (on a quilt of many
    seams the unscreened offsets add up into lighter and darker areas the photograph does not have)."""
    from core.texture_synth import nearest_patches

    gen = torch.Generator().manual_seed(0)
    # A darker left and a lighter right half, with grain; the output: 120 px of each half, side by side, so the
    # tone steps up at x = 120 and down again at the wrap.
    exemplar = torch.where(torch.arange(320) < 160, 0.3, 0.6).view(1, 1, 320).expand(3, 40, 320).clone()
    exemplar += 0.05 * torch.rand(3, 40, 320, generator=gen)
    atlas = nearest_patches.PatchAtlas([exemplar], 7)
    ys, xs = torch.meshgrid(torch.arange(20), torch.arange(240), indexing="ij")
    sources = (ys + 10) * 320 + xs + 10 + torch.where(xs < 120, 0, 40)
    copied = nearest_patches.copy_sources(atlas, sources)

    def blended(reach):
        monkeypatch.setattr(nearest_patches, "BLEND_REACH", reach)
        return nearest_patches.blend_seams(atlas, sources, periodic=True)

    def step(image):
        return float((image[:, :, 120] - image[:, :, 119]).mean())

    def offset(image, cols):
        return float((image - copied)[:, :, cols].mean())

    near, far = slice(114, 118), slice(55, 65)  # 2-6 px from the seam at 120; 55-65 px from both seams
    for reach in (None, 8.0, 24.0):
        out = blended(reach)
        # Measured: the step 0.30 before; 0.002 unscreened, 0.021 at reach 8, 0.009 at reach 24.
        assert abs(step(out)) < 0.15 * abs(step(copied)), reach  # the seam is taken out either way
        assert abs(float(out.mean() - copied.mean())) < 1e-4
    screened, plain = blended(8.0), blended(None)
    # Measured: reach 8 moves the far middle by 2e-4 against 0.09 beside the seam; unscreened both by 0.15.
    assert abs(offset(screened, far)) < 0.02 * abs(offset(screened, near))  # faded far from the seams
    assert abs(offset(plain, far)) > 0.8 * abs(offset(plain, near))  # unscreened: the whole piece moves


def test_blending_changes_nothing_without_seams():
    nearest_patches, atlas, sources = _two_pieces()
    one_piece = sources[:, :1] + torch.arange(40).view(1, 40)  # a plain crop: every neighbour is a neighbour
    copied = nearest_patches.copy_sources(atlas, one_piece)
    # On plain output the wrap (the crop's right edge against its left) is kept as it is, not blended away.
    assert torch.allclose(nearest_patches.blend_seams(atlas, one_piece, periodic=False), copied, atol=1e-5)


def test_the_default_quilt_blends_its_seams():
    import sys

    from core.texture_synth import synthesize

    module = sys.modules["core.texture_synth.synthesize"]
    ramp = np.linspace(0.2, 0.8, 160, dtype=np.float32)
    waves = 0.25 * np.sin(np.arange(160) / 9.0)[:, None] * np.cos(np.arange(160) / 13.0)[None, :]
    grain = np.random.default_rng(0).uniform(-0.04, 0.04, (160, 160))
    exemplar = np.clip(np.stack([0.5 + waves + grain] * 3, axis=-1) * ramp[None, :, None] / 0.5, 0, 1)
    blended = synthesize(exemplar.astype(np.float32), 96, 96, seed=1, tileable=True).image
    original = module.BLEND_SEAMS
    try:
        module.BLEND_SEAMS = False
        plain = synthesize(exemplar.astype(np.float32), 96, 96, seed=1, tileable=True).image
    finally:
        module.BLEND_SEAMS = original
    assert not np.allclose(blended, plain)
    # The same layout (blending comes after every choice): only smooth offsets differ.
    assert float(np.abs(np.diff(blended - plain, axis=1)).mean()) < 0.01
