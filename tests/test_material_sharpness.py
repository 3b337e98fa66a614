"""The VAE's sharpness figure as the issue states it (tools/model_quality.exemplar_sharpness): gradient energy over
the whole exemplar's. The photograph's own crops read about 1 on average, a softened copy falls under the 0.85
target, and a crop's figure against its own source (``variation_figures``, the stricter measure) differs from it
where the crop is sharper or softer than the photograph's average. Cheap: no network."""

from __future__ import annotations

import numpy as np
import pytest

from tools.model_quality import SHARPNESS_TARGET, crops, exemplar_sharpness, gradient_energy, source_crops
from tools.zoo.gan import MATERIALS, load_materials

CROP = 128


@pytest.fixture(scope="module")
def grass():
    return load_materials([m for m in MATERIALS if m[0] == "photo_grass"], 256)[0]


def test_the_exemplars_own_crops_read_as_sharp_as_it(grass):
    assert exemplar_sharpness(crops(grass, CROP, 64, 1), grass) == pytest.approx(1.0, abs=0.1)


def test_a_softened_crop_falls_under_the_target(grass):
    # A 3x3 box blur: what a decoder's drift toward smooth pixels looks like, mildly.
    soft = [sum(np.roll(c, (dy, dx), (0, 1)) for dy in (-1, 0, 1) for dx in (-1, 0, 1)) / 9
            for c in crops(grass, CROP, 8, 1)]
    assert exemplar_sharpness(soft, grass) < SHARPNESS_TARGET


def test_it_judges_against_the_photograph_not_the_source_crop(grass):
    sources = source_crops(grass, CROP, 6)
    for source in sources:
        own = gradient_energy(source) / gradient_energy(grass)
        assert exemplar_sharpness([source], grass) == pytest.approx(own)
    # Against the photograph each source reads its own sharpness, which differs from crop to crop.
    spread = [exemplar_sharpness([s], grass) for s in sources]
    assert max(spread) - min(spread) > 0.05, spread
