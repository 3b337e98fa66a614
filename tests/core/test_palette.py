"""The palette step of the multi-style network: a frame's colour mean and covariance mapped onto a painting's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.common.checkpoints import CheckpointError
from core.style.multistyle import palettes_of
from core.style.palette import (EPS, Palette, _sqrt_psd, blend, colour_transform, inverse_sqrt_psd, match_palette,
                                match_palette_on_device, palette_target)


def _frame(seed: int, h: int = 48, w: int = 64) -> np.ndarray:
    """Correlated colours well inside [0, 1], so no clamping hides the map."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0.0, 0.08, (h, w, 1))
    return np.clip(0.45 + base * np.array([1.0, 0.6, 0.3]) + rng.normal(0, 0.03, (h, w, 3)), 0, 1).astype(np.float32)


def _tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb.transpose(2, 0, 1).copy())[None]


def _image(t: torch.Tensor) -> np.ndarray:
    return t[0].numpy().transpose(1, 2, 0)


PAINTING = Palette((0.55, 0.40, 0.30), ((0.006, 0.002, -0.001), (0.002, 0.004, 0.0005), (-0.001, 0.0005, 0.003)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_full_strength_gives_the_paintings_mean_and_covariance(seed):
    frame = _frame(seed)
    out = _image(match_palette(_tensor(frame), PAINTING, 1.0))
    assert out.min() > 0 and out.max() < 1  # nothing clamped: the statistics must match exactly
    measured = Palette.of_image(out)
    np.testing.assert_allclose(measured.mean, PAINTING.mean, atol=1e-5)
    np.testing.assert_allclose(measured.cov, PAINTING.cov, atol=1e-5)
    before = Palette.of_image(frame)
    assert np.abs(np.array(before.cov) - np.array(PAINTING.cov)).max() > 1e-3  # it did have to change


def test_strength_blends_with_the_networks_colours():
    frame = _tensor(_frame(3))
    assert torch.equal(match_palette(frame, PAINTING, 0.0), frame)
    full = match_palette(frame, PAINTING, 1.0)
    torch.testing.assert_close(match_palette(frame, PAINTING, 0.25), frame + 0.25 * (full - frame), atol=1e-6,
                               rtol=0)


def test_a_mix_blends_the_colour_distributions():
    a, b = _frame(4), _frame(5) * 0.5 + 0.4
    both = np.concatenate([a, a, a, b], axis=0)  # 3:1
    mixed = blend([Palette.of_image(a), Palette.of_image(b)], [3, 1])
    np.testing.assert_allclose(mixed.mean, Palette.of_image(both).mean, atol=1e-9)
    np.testing.assert_allclose(mixed.cov, Palette.of_image(both).cov, atol=1e-9)


def test_flat_frames_and_one_colour_paintings_stay_finite():
    flat = torch.full((1, 3, 16, 16), 0.3)
    out = match_palette(flat, Palette((0.2, 0.5, 0.7), ((0.0,) * 3,) * 3), 1.0)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, torch.tensor([0.2, 0.5, 0.7]).view(1, 3, 1, 1).expand_as(out), atol=1e-4,
                               rtol=0)


@pytest.mark.parametrize("bad", [[{"mean": [0, 0], "cov": [[0] * 3] * 3}],
                                 [{"mean": [0, 0, 0], "cov": [[-1, 0, 0], [0, 0, 0], [0, 0, 0]]}] * 2,
                                 [{"mean": [0, 0, float("nan")], "cov": [[0] * 3] * 3}] * 2, "x"])
def test_invalid_palettes_are_refused_clearly(bad):
    with pytest.raises(CheckpointError, match="palettes"):
        palettes_of({"palettes": bad}, 2)


def test_the_gpu_form_of_the_colour_transform_equals_the_matrix_product():
    g = torch.Generator().manual_seed(4)
    image = torch.rand(3, 37, 53, generator=g)
    matrix, shift = torch.randn(3, 3, generator=g), torch.randn(3, generator=g)
    product = colour_transform(image, matrix, shift, broadcast=False)
    expected = torch.einsum("ij,jhw->ihw", matrix, image) + shift.view(3, 1, 1)
    assert torch.allclose(product, expected, atol=1e-5)
    assert torch.allclose(colour_transform(image, matrix, shift, broadcast=True), product, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("strength", [0.4, 1.0])
def test_the_match_without_a_host_read_equals_the_match(seed, strength):
    """The CUDA graph's form (Newton-Schulz, no eigendecomposition on the host) gives the same frame, here on the
    CPU, on real-looking frames (ridge and floor agree above the floor) and on a flat one (finite, in range)."""
    x = _tensor(_frame(seed, 61, 83))
    palette = blend([PAINTING, Palette.of_image(_frame(seed + 7))], [0.7, 0.3])
    ref = match_palette(x, palette, strength)
    out = match_palette_on_device(x, palette_target(palette, strength))
    assert (out - ref).abs().max().item() < 2e-3
    flat = match_palette_on_device(torch.full((1, 3, 20, 30), 0.3), palette_target(palette, strength))
    assert torch.isfinite(flat).all() and flat.min() >= 0 and flat.max() <= 1
    assert (flat - match_palette(torch.full((1, 3, 20, 30), 0.3), palette, strength)).abs().max().item() < 1e-4
    # Near-grey frames (a fade, sepia): colour variances near EPS, where a floor and a ridge used to differ by 0.19.
    g = torch.Generator().manual_seed(seed)
    for noise in (1e-3, 5e-4, 1e-2):
        grey = (0.4 + noise * torch.randn(1, 3, 40, 50, generator=g)).clamp(0, 1)
        diff = match_palette_on_device(grey, palette_target(palette, strength)) - match_palette(grey, palette, strength)
        assert diff.abs().max().item() < 1e-3, noise


def test_newton_schulz_converges_to_the_ridged_inverse_root_from_the_flattest_frames():
    g = torch.Generator().manual_seed(1)
    covs = [torch.diag(torch.tensor([0.25, 0.25, 0.0], dtype=torch.float64)), torch.zeros(3, 3, dtype=torch.float64)]
    for _ in range(50):
        q, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
        covs.append(q @ torch.diag(0.25 * 10 ** (-7 * torch.rand(3, generator=g, dtype=torch.float64))) @ q.T)
    for cov in covs:
        exact = _sqrt_psd(cov + EPS * torch.eye(3, dtype=torch.float64), inverse=True)
        assert ((inverse_sqrt_psd(cov) - exact).abs().max() / exact.abs().max()).item() < 1e-9
