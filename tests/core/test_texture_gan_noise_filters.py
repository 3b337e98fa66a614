"""The materials GAN's per-material noise filters: the circular convolution, how a file carries them, mixes,
fitting, and what a bad file gets."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from core.common.checkpoints import CheckpointError, load_checkpoint, model_fields, save_checkpoint
from core.common.procedural import make_exemplar
from core.common.quality import course_repeat
from core.texture_gan import TextureGenerator
from core.texture_gan.conditional import ConditionalGANConfig, mix_weights
from core.texture_gan.distill import train_material_gan
from core.texture_gan.fit_noise_filters import NoiseFilterRecipe, fit_noise_filter
from core.texture_gan.generate import KIND
from core.texture_gan.materials import material_canvas
from core.texture_gan.noise_filters import TENSOR_PREFIX, filter_noise, identity_kernel, mixed_kernel, unit_energy

NAMES = ["bricks", "wood"]
TINY = dict(g_channels=(16, 8, 4), g_convs=(1, 1, 1), d_channels=(8, 16), local_dim=4, global_dim=4, periodic_dim=2,
            crop_size=32, batch_size=2, stats_loss_weight=0.0, adversarial_from=2)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("gan") / "materials.safetensors"
    cfg = ConditionalGANConfig(n_materials=2, **TINY)
    train_material_gan([make_exemplar(n, 64, seed=0) for n in NAMES], NAMES, path, steps=4, config=cfg, seed=3,
                       tiles=0)
    return path


def _with_filters(source: Path, target: Path, filters: dict[str, torch.Tensor], described=None) -> Path:
    """``source``'s model written to ``target`` with these filter tensors and config descriptions."""
    tensors, config = load_checkpoint(source, expected_kind=KIND)
    tensors.update({TENSOR_PREFIX + name: kernel for name, kernel in filters.items()})
    config = model_fields(config)
    config["noise_filters"] = described if described is not None else {name: {} for name in filters}
    return save_checkpoint(target, tensors, config, KIND)


def _a_filter(local_dim: int = 4, size: int = 5, seed: int = 0) -> torch.Tensor:
    return unit_energy(torch.randn(local_dim, local_dim, size, size, generator=torch.Generator().manual_seed(seed)))


def test_the_filter_is_a_circular_convolution_at_any_canvas_size():
    gen = torch.Generator().manual_seed(0)
    x, kernel = torch.randn(2, 4, 9, 8, generator=gen), torch.randn(4, 4, 5, 5, generator=gen)
    expected = F.conv2d(F.pad(x, (2, 2, 2, 2), mode="circular"), kernel)
    assert torch.allclose(filter_noise(x, kernel), expected, atol=1e-4)
    # A canvas smaller than the kernel: the kernel wraps around it, as on the canvas tiled.
    small, big_kernel = torch.randn(1, 4, 3, 4, generator=gen), torch.randn(4, 4, 7, 7, generator=gen)
    tiled = F.conv2d(small.repeat(1, 1, 5, 5), big_kernel)  # output (y, x) is the canvas's (y + 3, x + 3)
    expected = torch.roll(tiled[:, :, :3, :4], shifts=(3, 3), dims=(2, 3))
    assert torch.allclose(filter_noise(small, big_kernel), expected, atol=1e-4)
    assert torch.allclose(filter_noise(x, identity_kernel(4, 5)), x, atol=1e-6)


def test_unit_energy_filters_keep_the_noise_unit_variance():
    noise = torch.randn(1, 4, 96, 96, generator=torch.Generator().manual_seed(1))
    filtered = filter_noise(noise, _a_filter(size=7))
    variances = filtered.var(dim=(0, 2, 3))
    assert torch.all((variances - 1).abs() < 0.1), variances  # 9216 cells a channel: ~0.03 of scatter
    assert (filtered - noise).abs().mean() > 0.5  # and it is not the noise it started from


def test_mixes_blend_the_kernels_and_leave_unfiltered_materials_exactly_white():
    kernel = _a_filter()
    filters = {"bricks": kernel}
    assert mixed_kernel(filters, NAMES, mix_weights(NAMES, "wood")) is None
    assert torch.allclose(mixed_kernel(filters, NAMES, mix_weights(NAMES, "bricks")), kernel, atol=1e-6)
    half = mixed_kernel(filters, NAMES, mix_weights(NAMES, {"bricks": 0.5, "wood": 0.5}))
    expected = unit_energy(0.5 * kernel + 0.5 * identity_kernel(4, 5))
    assert torch.allclose(half, expected, atol=1e-6)
    assert torch.allclose(half.pow(2).sum(dim=(1, 2, 3)), torch.ones(4), atol=1e-5)
    # Kernels of different sizes mix, the smaller one centred in the larger.
    mixed = mixed_kernel({"bricks": kernel, "wood": _a_filter(size=3, seed=1)}, NAMES,
                         mix_weights(NAMES, {"bricks": 0.5, "wood": 0.5}))
    assert mixed.shape == (4, 4, 5, 5)


def test_a_file_with_a_filter_draws_its_material_through_it_and_the_others_as_before(model_path, tmp_path):
    plain = TextureGenerator.load(model_path, "cpu")
    kernel = _a_filter()
    filtered_path = _with_filters(model_path, tmp_path / "filtered.safetensors", {"bricks": kernel})
    filtered = TextureGenerator.load(filtered_path, "cpu")
    assert set(filtered.noise_filters) == {"bricks"}
    assert np.array_equal(filtered.generate(64, 48, seed=3, material="wood"),
                          plain.generate(64, 48, seed=3, material="wood"))
    a, b = filtered.generate(64, 48, seed=3, material="bricks"), plain.generate(64, 48, seed=3, material="bricks")
    assert np.abs(a - b).mean() > 1e-3
    # It is the canvas's white noise filtered: the same draw, then the kernel.
    g, weights = filtered.generator, mix_weights(NAMES, "bricks")
    white, _ = material_canvas(g, 4, 3, seed=5, weights=weights)
    through, _ = material_canvas(g, 4, 3, seed=5, weights=weights, noise_kernel=kernel)
    assert torch.allclose(through[:, :4], filter_noise(white[:, :4], kernel), atol=1e-5)
    assert torch.equal(through[:, 4:], white[:, 4:])  # the material's embedding and the waves are untouched
    # Still tileable: the filter is a convolution on the torus.
    canvas, fine = material_canvas(g, 4, 4, seed=2, weights=weights, noise_kernel=kernel)
    with torch.no_grad():
        one = g.body(canvas, fine)
        four = g.body(canvas.repeat(1, 1, 2, 2), [f.repeat(1, 1, 2, 2) for f in fine])
    assert torch.allclose(four, one.repeat(1, 1, 2, 2), atol=1e-5)
    # Its CPU copy (the out-of-memory fallback) keeps the filters, and tiled generation equals one pass.
    assert set(filtered.on_cpu().noise_filters) == {"bricks"}
    assert np.allclose(filtered.generate(192, 160, seed=1, material="bricks", tile_size=64),
                       filtered.generate(192, 160, seed=1, material="bricks"), atol=1e-5)


@pytest.mark.parametrize("case", ["unknown material", "shape", "even side", "not finite", "zero channel",
                                  "undescribed", "described only"])
def test_a_bad_filter_is_refused_with_a_reason(model_path, tmp_path, case):
    kernel = _a_filter()
    filters, described = {"bricks": kernel}, None
    if case == "unknown material":
        filters = {"stone": kernel}
    elif case == "shape":
        filters = {"bricks": _a_filter(local_dim=3)}
    elif case == "even side":
        filters = {"bricks": torch.ones(4, 4, 4, 4)}
    elif case == "not finite":
        filters = {"bricks": kernel.clone().index_fill_(0, torch.tensor([1]), float("nan"))}
    elif case == "zero channel":
        filters = {"bricks": kernel.clone().index_fill_(0, torch.tensor([2]), 0.0)}
    elif case == "undescribed":
        described = {}
    elif case == "described only":
        filters, described = {}, {"bricks": {}}
    path = _with_filters(model_path, tmp_path / "bad.safetensors", filters, described)
    with pytest.raises(CheckpointError, match="noise filter|non-finite|not a number|NaN|finite"):
        TextureGenerator.load(path, "cpu")


def test_the_vae_takes_the_generator_without_the_filters(model_path, tmp_path):
    from core.texture_vae.gan_prior_train import generator_from_checkpoint

    filtered_path = _with_filters(model_path, tmp_path / "filtered.safetensors", {"bricks": _a_filter()})
    _, materials, weights, _ = generator_from_checkpoint(filtered_path)
    assert materials == NAMES and not any(k.startswith(TENSOR_PREFIX) for k in weights)


def test_a_filter_pays_where_it_was_fitted_and_never_costs_straightness_at_the_measuring_size():
    from tools.fit_noise_filters import MIN_REGULARITY_GAIN, RATIO_CEILING, pays

    gain = MIN_REGULARITY_GAIN + 0.01
    white = {"ratio": 1.0, "regularity": 0.5}
    assert pays(white, {"ratio": 1.0, "regularity": 0.5 + gain})
    assert not pays(white, {"ratio": 1.0, "regularity": 0.5 + gain / 2})
    assert not pays(white, {"ratio": RATIO_CEILING + 0.01, "regularity": 0.9})
    white = {**white, "regularity_at_fit_size": 0.5}
    assert pays(white, {"ratio": 1.0, "regularity": 0.5, "regularity_at_fit_size": 0.5 + gain})
    assert not pays(white, {"ratio": 1.0, "regularity": 0.49, "regularity_at_fit_size": 0.9})
    assert not pays(white, {"ratio": 1.0, "regularity": 0.9, "regularity_at_fit_size": 0.5 + gain / 2})


def test_fitting_straightens_the_courses_it_is_fitted_on(model_path):
    """The tiny generator, its noise filtered for courses every 12 px along the rows: the fitted filter raises
    their repeat on seeds it never drew, and starts from the model as trained."""
    model = TextureGenerator.load(model_path, "cpu")
    exemplar = make_exemplar("bricks", 64, seed=0)

    def repeat(kernel) -> float:
        model.noise_filters = {} if kernel is None else {"bricks": kernel}
        outs = [torch.from_numpy(model.generate(64, 64, seed=s, material="bricks").transpose(2, 0, 1).copy())
                for s in range(8)]
        return float(course_repeat(torch.stack(outs).double(), 0, 12).mean())

    start = fit_noise_filter(model, "bricks", exemplar, 0, 12, 64, NoiseFilterRecipe(steps=0, kernel=5))
    assert start.shape == (4, 4, 5, 5)
    assert torch.allclose(start.pow(2).sum(dim=(1, 2, 3)), torch.ones(4), atol=1e-5)
    assert torch.allclose(start, identity_kernel(4, 5), atol=0.05)
    fitted = fit_noise_filter(model, "bricks", exemplar, 0, 12, 64,
                              NoiseFilterRecipe(steps=30, kernel=5, statistics_weight=0.0, rate=0.05))
    white, straightened = repeat(None), repeat(fitted)
    assert straightened > white + 0.1, (white, straightened)  # 0.28-0.55 over 3 trainings x 3 fitting seeds
    with pytest.raises(ValueError, match="not one of"):
        fit_noise_filter(model, "stone", exemplar, 0, 12, 64)


def test_fit_file_keeps_a_filter_only_where_it_pays_and_writes_a_file_that_loads(model_path, tmp_path, monkeypatch):
    from tools import fit_noise_filters
    from tools.zoo import gan as zoo_gan

    path = tmp_path / "materials.safetensors"
    shutil.copy2(model_path, path)
    shutil.copy2(model_path.with_suffix(".json"), path.with_suffix(".json"))
    exemplars = {"bricks": make_exemplar("bricks", 128, seed=0), "wood": make_exemplar("wood", 128, seed=0)}
    monkeypatch.setattr(zoo_gan, "MATERIALS", [(n, n.title(), f"{n}.png") for n in NAMES])
    monkeypatch.setattr(zoo_gan, "COURSES", {"bricks": (0, 12)})
    monkeypatch.setattr(zoo_gan, "load_materials", lambda materials, side: [exemplars[m[0]] for m in materials])
    monkeypatch.setattr(fit_noise_filters, "RATIO_CEILING", 1e9)  # the tiny generator is far from any exemplar
    monkeypatch.setattr(fit_noise_filters, "RECIPES", {"bricks": {"statistics_weight": 0.0}})
    described = fit_noise_filters.fit_file(path, steps=30, seeds=4, log=lambda *_: None)
    assert set(described) == {"bricks"} and described["bricks"]["kept"], described
    for label in ("", "held_out_"):
        figures = described["bricks"]
        assert figures[label + "filtered"]["regularity"] >= figures[label + "white"]["regularity"] + 0.05
    model = TextureGenerator.load(path, "cpu")
    assert set(model.noise_filters) == {"bricks"} and model.config["noise_filters"]["bricks"]["kept"]
    written = load_file(str(path))[TENSOR_PREFIX + "bricks"]
    # Refitted with a recipe that buys nothing (no steps: white noise's own), the previous filter, measured beside
    # it, still pays: it stays bit for bit with its description, and the refit is recorded as tried.
    fit_noise_filters.fit_file(path, steps=0, seeds=4, log=lambda *_: None)
    again = TextureGenerator.load(path, "cpu")
    assert torch.equal(load_file(str(path))[TENSOR_PREFIX + "bricks"], written)
    assert again.config["noise_filters"]["bricks"] == model.config["noise_filters"]["bricks"]
    tried = again.config["noise_filters_tried"]["bricks"]
    assert not tried["kept"] and tried["held_out_previous"] == described["bricks"]["held_out_filtered"], tried
    # One wall fitted alone: the other keeps its filter and its figures, bit for bit.
    monkeypatch.setattr(zoo_gan, "COURSES", {"bricks": (0, 12), "wood": (1, 12)})
    monkeypatch.setattr(fit_noise_filters, "RATIO_CEILING", 0.0)
    monkeypatch.setattr(fit_noise_filters, "FIT_SCALES", {"wood": 2})  # fitted and judged at twice the size too
    assert set(fit_noise_filters.fit_file(path, steps=2, seeds=1, only=["wood"], log=lambda *_: None)) == {"wood"}
    alone = TextureGenerator.load(path, "cpu")
    assert torch.equal(load_file(str(path))[TENSOR_PREFIX + "bricks"], written)
    assert alone.config["noise_filters"]["bricks"] == model.config["noise_filters"]["bricks"]
    wood = alone.config["noise_filters_tried"]["wood"]
    assert wood["fit_scale"] == 2 and "regularity_at_fit_size" in wood["held_out_filtered"]
    # Fitted again (a later ship), nothing is stacked; with a ceiling no filter meets, none is kept.
    fit_noise_filters.fit_file(path, steps=2, seeds=1, log=lambda *_: None)
    model = TextureGenerator.load(path, "cpu")
    assert model.noise_filters == {} and set(model.config["noise_filters_tried"]) == {"bricks", "wood"}


@pytest.mark.parametrize("axis", [0, 1])
def test_a_banded_filter_reaches_along_the_courses_only(model_path, axis):
    """A band of 3 taps across courses that run along ``axis``: every tap outside it stays exactly zero through
    fitting, the band itself is fitted, and a bad band is refused."""
    model = TextureGenerator.load(model_path, "cpu")
    exemplar = make_exemplar("bricks", 64, seed=0)
    kernel = fit_noise_filter(model, "bricks", exemplar, axis, 12, 64,
                              NoiseFilterRecipe(steps=3, kernel=7, band=3, statistics_weight=0.0, rate=0.05))
    across = kernel.abs().sum(dim=(0, 1, 2 + axis))  # per tap across the courses
    assert torch.all(across[:2] == 0) and torch.all(across[5:] == 0), across
    assert torch.all(across[2:5] > 0), across
    off_centre = kernel.clone()
    off_centre[:, :, 3, 3] = 0
    assert float(off_centre.abs().sum()) > 0  # more than the identity's centre tap
    for band in (2, 9):
        with pytest.raises(ValueError, match="band"):
            fit_noise_filter(model, "bricks", exemplar, axis, 12, 64, NoiseFilterRecipe(steps=1, kernel=7, band=band))


def test_the_bench_reads_the_courses_at_twice_its_size_with_and_without_the_filter(model_path, tmp_path):
    """``tools.eval_materials.large_courses``: the GAN through its filter and the same seeds through white noise
    differ, the white noise's figure is the unfiltered model's own, the model's filters are put back, and the
    straightened exemplar and the instant synthesizer are read at that size too."""
    from tools.eval_materials import large_courses
    from tools.model_quality import course_regularity, exemplar_courses

    model = TextureGenerator.load(_with_filters(model_path, tmp_path / "f.safetensors", {"bricks": _a_filter()}),
                                  "cpu")
    exemplar = make_exemplar("bricks", 64, seed=0)
    courses = exemplar_courses(exemplar)  # (1, 16, ...): rows of bricks
    figures = large_courses(model, "bricks", exemplar, courses, 64, seeds=2, tiles=1, white=True)
    assert set(model.noise_filters) == {"bricks"}
    assert figures["large_px"] == 64 and figures["gan_large"] != figures["gan_white_noise_large"]
    plain = TextureGenerator.load(model_path, "cpu")
    expected = np.mean([course_regularity(plain.generate(64, 64, seed=s, material="bricks"), courses) for s in (0, 1)])
    assert figures["gan_white_noise_large"] == pytest.approx(expected, abs=1e-6)
    assert figures["exemplar_large"] > 0.8 and all(-1.0 <= figures[k] <= 1.0 for k in figures if k != "large_px")
