"""The conditional (materials) texture GAN: labels, interpolation, tiling, resume, CLI."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from core.common.procedural import make_exemplar
from core.texture_gan import TextureGenerator
from core.texture_gan.conditional import ConditionalGANConfig, mix_weights, parse_mix
from core.texture_gan.distill import train_material_gan
from core.texture_gan.materials import MaterialTextureGenerator, material_canvas

ROOT = Path(__file__).resolve().parents[2]

NAMES = ["bricks", "wood"]
TINY = dict(g_channels=(16, 8, 4), g_convs=(1, 1, 1), d_channels=(8, 16), local_dim=4, global_dim=4, periodic_dim=2,
            crop_size=32, batch_size=2, stats_loss_weight=0.0, adversarial_from=2)


def _exemplars():
    return [make_exemplar(n, 64, seed=0) for n in NAMES]


def _fork_run(model: Path, copy: Path) -> None:
    """A second training run that resumes from ``model``'s state: its model, training state and config copied."""
    import shutil

    for suffix in (".safetensors", ".train.safetensors", ".json"):
        shutil.copy2(model.with_name(model.stem + suffix), copy.with_name(copy.stem + suffix))


def _train(path, steps, **kw):
    cfg = ConditionalGANConfig(n_materials=2, **TINY)
    return train_material_gan(_exemplars(), NAMES, path, steps=steps, config=cfg, seed=3, tiles=0, **kw)


def _train_with(path, steps, **fields):
    """A tiny training with these config fields on top of TINY."""
    cfg = ConditionalGANConfig(n_materials=2, **{**TINY, **fields})
    return train_material_gan(_exemplars(), NAMES, path, steps=steps, config=cfg, seed=3, tiles=0)


def _assert_a_schedule_term_joins_and_resumes(tmp_path, fields: dict, loss: str) -> dict:
    """A term set by schedule ``fields``: it reports ``loss``, a resumed run equals a straight one, and a running
    training takes it up (accepted) with steps that differ from a training without it. Returns the losses."""
    straight, resumed, joined, plain = (tmp_path / f"{n}.safetensors" for n in "abcd")
    losses = _train_with(straight, 5, **fields)["losses"]
    assert float(losses[loss]) > 0
    _train_with(resumed, 3, **fields)
    _train_with(resumed, 5, **fields)
    a, b = load_file(str(straight)), load_file(str(resumed))
    assert all(torch.equal(a[k], b[k]) for k in a)
    _train_with(joined, 3)
    _train_with(joined, 5, **fields)  # accepted: a schedule field
    _train_with(plain, 5)
    assert not all(torch.equal(load_file(str(joined))[k], load_file(str(plain))[k]) for k in a)
    return losses


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("gan") / "materials.safetensors"
    _train(path, 6)
    return path


def test_loads_as_material_generator_and_label_changes_output(model_path):
    model = TextureGenerator.load(model_path, "cpu")
    assert isinstance(model, MaterialTextureGenerator) and model.materials == NAMES
    a = model.generate(64, 64, seed=1, material="bricks")
    b = model.generate(64, 64, seed=1, material="wood")
    again = model.generate(64, 64, seed=1, material="bricks")
    assert np.array_equal(a, again)  # a pure function of (seed, material)
    assert np.abs(a - b).mean() > 1e-3  # measured 0.02-0.06 over seeds 1-4 after 6 steps


def test_interpolation_endpoints_are_the_pure_materials(model_path):
    model = TextureGenerator.load(model_path, "cpu")
    pure_a = model.generate(48, 40, seed=2, material="bricks")
    pure_b = model.generate(48, 40, seed=2, material="wood")
    assert np.array_equal(model.generate(48, 40, seed=2, material={"bricks": 1.0, "wood": 0.0}), pure_a)
    assert np.array_equal(model.generate(48, 40, seed=2, material={"bricks": 0.0, "wood": 2.0}), pure_b)
    half = model.generate(48, 40, seed=2, material={"bricks": 0.5, "wood": 0.5})
    assert np.abs(half - pure_a).mean() > 1e-4 and np.abs(half - pure_b).mean() > 1e-4


def test_output_wraps_around_exactly(model_path):
    """A canvas tiled 2x2 gives the image tiled 2x2: the wrap border is an ordinary inner boundary."""
    g = TextureGenerator.load(model_path, "cpu").generator
    canvas, fine = material_canvas(g, 5, 3, seed=4, weights=mix_weights(NAMES, {"bricks": 0.3, "wood": 0.7}))
    with torch.no_grad():
        one = g.body(canvas, fine)
        four = g.body(canvas.repeat(1, 1, 2, 2), [f.repeat(1, 1, 2, 2) for f in fine])
    assert torch.allclose(four, one.repeat(1, 1, 2, 2), atol=1e-5)


def test_fused_inference_equals_the_training_path():
    """Inference runs each upsample + conv as one low-resolution conv and folds the last stage into its RGB head;
    on random (non-trivial FiLM, noise gains) weights it must give the modules' own image."""
    from core.texture_gan.conditional import build_conditional
    from core.texture_gan.model import CircularUpsample, upsample_conv

    cfg = ConditionalGANConfig(n_materials=3, **{**TINY, "g_channels": (16, 12, 8, 6), "g_convs": (1, 2, 1, 2)})
    g, _ = build_conditional(cfg, seed=5)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in g.parameters():  # away from the identity-like initialisation
            p.add_(0.3 * torch.randn(p.shape, generator=gen, device="cpu"))
        conv = g.stages[1][1]
        x = torch.randn(2, conv.in_channels, 7, 5, generator=gen, device="cpu")
        assert torch.allclose(upsample_conv(x, conv), conv(CircularUpsample()(x)), atol=1e-5)
        canvas, fine = material_canvas(g, 6, 5, seed=2, weights=mix_weights(["a", "b", "c"], {"a": 0.4, "c": 0.6}))
        g.fused_upsampling = False
        plain = g.body(canvas, fine)
        g.fused_upsampling = True
        fused = g.body(canvas, fine)
    assert plain.shape == fused.shape == (1, 3, 48, 40)
    assert plain.std() > 0.05  # a real image, not a saturated one
    assert torch.allclose(fused, plain, atol=1e-5), float((fused - plain).abs().max())
    with torch.enable_grad():  # training keeps the modules: the same numbers as before the fusion
        g.fused_upsampling = False
        assert torch.allclose(g.body(canvas, fine).detach(), plain, atol=1e-6)


def _image_that_tiles_fuses_and_paints(g, canvas, fine):
    """``g``'s image of a canvas, checked to wrap exactly (the canvas tiled 2x2 gives the image tiled 2x2) and to
    equal the fused inference path's and the per-pixel (mask) path's."""
    plain = g.body(canvas, fine)
    four = g.body(canvas.repeat(1, 1, 2, 2), [f.repeat(1, 1, 2, 2) for f in fine])
    g.fused_upsampling = True
    fused = g.body(canvas, fine)
    g.fused_upsampling = False
    painted = g.stage_images(canvas, fine, spatial=True)[-1]
    assert torch.allclose(four, plain.repeat(1, 1, 2, 2), atol=1e-5)
    assert torch.allclose(fused, plain, atol=1e-5), float((fused - plain).abs().max())
    assert torch.allclose(painted, plain, atol=1e-5), float((painted - plain).abs().max())
    return plain


def test_cell_patterns_tile_fuse_follow_the_material_and_paint_through_a_mask():
    """Cell patterns repeat every canvas cell: the image still wraps exactly, the fused inference path and the
    per-pixel (mask) path give the plain path's image, and each material gets its own mix of the patterns."""
    from core.texture_gan.conditional import build_conditional

    cfg = ConditionalGANConfig(n_materials=3, cell_rank=2, **{**TINY, "g_channels": (16, 12, 8, 6),
                                                               "g_convs": (1, 2, 1, 2)})
    g, _ = build_conditional(cfg, seed=5)
    assert [tuple(p.shape) for p in g.cell_patterns] == [(2, 12, 2, 2), (2, 8, 4, 4), (2, 6, 8, 8)]
    assert all(float(p.detach().abs().max()) == 0 for gate in g.cell_gates for p in gate.parameters())  # closed
    gen = torch.Generator().manual_seed(1)
    weights = mix_weights(["a", "b", "c"], {"a": 0.4, "c": 0.6})
    canvas, fine = material_canvas(g, 6, 5, seed=2, weights=weights)
    with torch.no_grad():
        for p in g.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen, device="cpu"))
        plain = _image_that_tiles_fuses_and_paints(g, canvas, fine)
        saved = [p.clone() for p in g.cell_patterns]
        for p in g.cell_patterns:
            p.zero_()
        without = g.body(canvas, fine)
        for p, old in zip(g.cell_patterns, saved):
            p.copy_(old)
        other, other_fine = material_canvas(g, 6, 5, seed=2, weights=mix_weights(["a", "b", "c"], "b"))
        gates = [gate(g.condition_of(c)) for gate in g.cell_gates for c in (canvas, other)]
    assert float((without - plain).abs().mean()) > 1e-3  # the patterns draw something
    assert all(not torch.allclose(a, b) for a, b in zip(gates[::2], gates[1::2]))  # per material


# What a resumed training may grow: the fields it had, the fields it grows, its grown kind's parameter count
# (TINY has 3 stages: lattice inputs on stage 1; a finer frequency adds the last stage's, a coarse one joins
# stage 1's) and what training fills (a gate that opens; the added frequency's cos and sin columns, 2 and 5 of 6).
COARSE = ((0.125, 0.125), (0.125, -0.125))
GROWN = {
    "cell patterns": ({}, {"cell_rank": 2}, 6, ("cell_gates.1.weight", ...)),
    "lattice inputs": ({}, {"lattice_frequencies": COARSE}, 3, ("lattice_gates.0.weight", ...)),
    "finer lattice frequencies": ({"lattice_frequencies": COARSE}, {"lattice_frequencies": COARSE + ((0.375, 0.0),)},
                                  6, ("lattice_gates.1.weight", ...)),
    "more frequencies on a lattice stage": ({"lattice_frequencies": COARSE},
                                            {"lattice_frequencies": COARSE + ((0.0, 0.1),)}, 3,
                                            ("lattice_projections.0", (slice(None), [2, 5]))),
}


def _moments_by_name(state: dict, cfg: ConditionalGANConfig) -> dict[str, torch.Tensor]:
    """The generator's Adam first moments in a training state, by parameter name (groups follow the kinds)."""
    from core.texture_gan.conditional import PARAMETER_KINDS, ConditionalGenerator, parameter_kind

    named = [n for n, _ in ConditionalGenerator(cfg).named_parameters()]
    order = [n for kind in PARAMETER_KINDS for n in named if parameter_kind(n) == kind]
    return {order[int(i)]: v["exp_avg"] for i, v in state["opt_g"]["state"].items()}


@pytest.mark.parametrize("kind", list(GROWN))
def test_a_running_training_grows_and_draws_the_same_until_it_trains_them(tmp_path, kind):
    """A state saved without cell patterns (or lattice inputs, or finer lattice frequencies) resumes with them:
    the grown generator draws exactly the old images, the next steps train them, a grown training resumes
    bit-identically, and no other change is accepted with them."""
    from core.common.checkpoints import CheckpointError, load_training_state

    had, fields, count, (filled, where) = GROWN[kind]

    def train(path, steps, **extra):
        cfg = ConditionalGANConfig(n_materials=2, **{**TINY, **extra})
        return train_material_gan(_exemplars(), NAMES, path, steps=steps, config=cfg, seed=3, tiles=0)

    old, straight, resumed = tmp_path / "old.safetensors", tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    for path in (old, straight, resumed):
        train(path, 3, **had)
    before = TextureGenerator.load(old, "cpu").generate(64, 48, seed=1, material="wood")
    moments = _moments_by_name(load_training_state(old.with_name("old.train.safetensors")),
                               ConditionalGANConfig(n_materials=2, **{**TINY, **had}))
    train(old, 3, **fields)  # grown, no step taken
    grown = TextureGenerator.load(old, "cpu")
    assert grown.generator.cfg.architecture() == ConditionalGANConfig(n_materials=2, **{**TINY, **fields}
                                                                      ).architecture()
    assert np.array_equal(grown.generate(64, 48, seed=1, material="wood"), before)
    # Every parameter it had keeps its optimiser moments, wherever growth put it in the order (an extended
    # lattice projection: its old cos and sin columns, the added ones without moments yet).
    now = _moments_by_name(load_training_state(old.with_name("old.train.safetensors")), grown.generator.cfg)
    assert moments.keys() <= now.keys()
    for name, m in moments.items():
        if now[name].shape != m.shape:
            assert name == filled and torch.equal(now[name][:, [0, 1, 3, 4]], m) and not now[name][where].any()
        else:
            assert torch.equal(now[name], m), name
    train(straight, 6, **fields)
    train(resumed, 4, **fields)
    train(resumed, 6, **fields)
    a, b = load_file(str(straight)), load_file(str(resumed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert float(a[filled][where].abs().max()) > 0  # the gates opened, the added columns trained
    trained = TextureGenerator.load(straight, "cpu")  # tiles of the canvas start on cells: the same image
    assert np.allclose(trained.generate(160, 96, seed=5, material="wood", tile_size=64),
                       trained.generate(160, 96, seed=5, material="wood"), atol=1e-5)
    state = load_training_state(straight.with_name("a.train.safetensors"))
    groups = state["opt_g"]["param_groups"]
    assert [len(g["params"]) for g in groups] == [len(list(grown.generator.parameters())) - count, count]
    assert all(state["config"][k] == ConditionalGANConfig(**fields).to_dict()[k] for k in fields)
    fresh = tmp_path / "c.safetensors"
    train(fresh, 3, **had)
    with pytest.raises(CheckpointError, match="other exemplars or settings"):
        train(fresh, 4, **fields, lr_g=1e-3)


def test_a_running_training_widens_its_finest_stages_and_draws_the_same_until_it_trains_them(tmp_path):
    """A state saved with narrower stages (here the last two, with lattice inputs and cell patterns on them)
    resumes wider: the widened generator draws the old images (to float rounding), every kept value's optimiser
    moment follows it (divided by the factor its value was multiplied by), the added channels start at zero and
    fill with training, the widened training resumes bit-identically, and a narrower stage is refused."""
    from core.common.checkpoints import CheckpointError, load_training_state
    from core.texture_gan.conditional import PARAMETER_KINDS, ConditionalGenerator, parameter_kind

    had = dict(lattice_frequencies=COARSE + ((0.375, 0.0),), cell_rank=2)
    wide = (16, 12, 8)  # TINY's (16, 8, 4) with its two finest stages wider

    def train(path, steps, **extra):
        cfg = ConditionalGANConfig(n_materials=2, **{**TINY, **had, **extra})
        return train_material_gan(_exemplars(), NAMES, path, steps=steps, config=cfg, seed=3, tiles=0)

    def moments(state, cfg):
        named = [n for n, _ in ConditionalGenerator(cfg).named_parameters()]
        order = [n for kind in PARAMETER_KINDS for n in named if parameter_kind(n) == kind]
        return {order[int(i)]: v for i, v in state["opt_g"]["state"].items()}

    old, straight, resumed = tmp_path / "old.safetensors", tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    for path in (old, straight, resumed):
        train(path, 4)
    narrow_cfg = ConditionalGANConfig(n_materials=2, **{**TINY, **had})
    before = TextureGenerator.load(old, "cpu").generate(64, 48, seed=1, material="wood")
    had_moments = moments(load_training_state(old.with_name("old.train.safetensors")), narrow_cfg)
    train(old, 4, g_channels=wide)  # widened, no step taken
    grown = TextureGenerator.load(old, "cpu")
    assert grown.generator.cfg.g_channels == wide
    assert np.abs(grown.generate(64, 48, seed=1, material="wood") - before).max() < 1e-5
    now = moments(load_training_state(old.with_name("old.train.safetensors")), grown.generator.cfg)
    assert now.keys() == had_moments.keys()
    k1, k2 = (12 / 8) ** 0.5, (8 / 4) ** 0.5  # PixelNorm's scale-up of the widened stages' kept channels
    for name, value in had_moments.items():
        first, after = value["exp_avg"], now[name]["exp_avg"]
        if name == "stages.2.1.weight":  # reads stage 1's kept channels (k1 larger: their weights / k1)
            assert torch.allclose(after[:4, :8], first * k1) and not after[4:].any()
        elif name == "noise_gains.1":  # stage 2's noise, added after its norm: times k2
            assert torch.allclose(after[:, :4], first / k2) and not after[:, 4:].any()
        elif after.shape == first.shape:
            assert torch.equal(after, first), name
    train(straight, 8, g_channels=wide)
    train(resumed, 6, g_channels=wide)
    train(resumed, 8, g_channels=wide)
    a, b = load_file(str(straight)), load_file(str(resumed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert float(a["stages.2.1.weight"][4:].abs().max()) > 0  # the added channels trained
    trained = TextureGenerator.load(straight, "cpu")
    assert np.allclose(trained.generate(160, 96, seed=5, material="wood", tile_size=64),
                       trained.generate(160, 96, seed=5, material="wood"), atol=1e-5)
    fresh = tmp_path / "c.safetensors"
    train(fresh, 3, g_channels=wide)
    with pytest.raises(CheckpointError, match="other exemplars or settings"):
        train(fresh, 4, g_channels=(16, 12, 6))


def test_held_fine_lattice_gates_are_zero_for_closed_materials_and_their_mixes():
    """``fine_lattice_open``: the fine stage's gate becomes zero for each closed material and for any mix of them,
    the open material's gate and every coarse stage's gate stay as they were, and nothing else moves."""
    from core.texture_gan.conditional import build_conditional, hold_fine_lattice_gates

    freqs = ((1 / 16, 1 / 16), (0.0, 1 / 8), (0.375, 0.0))
    cfg = ConditionalGANConfig(n_materials=3, lattice_frequencies=freqs, **{**TINY, "g_channels": (16, 12, 8, 6),
                                                                           "g_convs": (1, 1, 1, 1)})
    g, _ = build_conditional(cfg, seed=5)
    assert g.lattice_stages == {1: [0], 2: [0, 1], 3: [2]}
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in g.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen, device="cpu"))
    before = {k: v.clone() for k, v in g.state_dict().items()}

    def gates(e):  # the coarse stages' gates side by side, the fine stage's
        return torch.cat([gate(e) for gate in g.lattice_gates[:2]], 1), g.lattice_gates[2](e)
    with torch.no_grad():
        coarse, fine = gates(g.embedding)
        assert float(fine.abs().min(dim=1).values.min()) > 1e-3  # every material's was open
        hold_fine_lattice_gates(g, (False, True, False))
        coarse_after, fine_after = gates(g.embedding)
        mixed = g.lattice_gates[2](g.mix(torch.tensor([[0.3, 0.0, 0.7]])))
    assert float(fine_after[[0, 2]].abs().max()) < 1e-6 and float(mixed.abs().max()) < 1e-6
    assert torch.allclose(fine_after[1], fine[1], atol=1e-6) and torch.allclose(coarse_after, coarse, atol=1e-6)
    changed = {k for k, v in g.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"lattice_gates.2.weight", "lattice_gates.2.bias"}
    with pytest.raises(ValueError, match="open/closed"):
        hold_fine_lattice_gates(g, (True, False))
    with pytest.raises(ValueError, match="fine_lattice_open"):
        ConditionalGANConfig(n_materials=3, fine_lattice_open=(True, False))


def test_a_running_training_takes_up_held_fine_lattice_gates(tmp_path):
    """A schedule field: a training that let both materials open the threads' stage resumes with one held closed;
    from its first step that material's gate is zero in the trained and the averaged generator, the other's opens,
    and the held training resumes bit-identically."""
    from core.common.checkpoints import load_training_state
    from core.texture_gan.conditional import ConditionalGenerator

    fields = dict(lattice_frequencies=COARSE + ((0.375, 0.0),))
    straight, resumed = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    for path in (straight, resumed):
        _train_with(path, 3, **fields)
    _train_with(straight, 6, **fields, fine_lattice_open=(False, True))
    _train_with(resumed, 4, **fields, fine_lattice_open=(False, True))
    _train_with(resumed, 6, **fields, fine_lattice_open=(False, True))
    a, b = load_file(str(straight)), load_file(str(resumed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    state = load_training_state(straight.with_name("a.train.safetensors"))
    for name in ("g", "g_ema"):
        g = ConditionalGenerator(ConditionalGANConfig(n_materials=2, **{**TINY, **fields}))
        g.load_state_dict(state[name])
        with torch.no_grad():
            fine = g.lattice_gates[1](g.embedding)
        assert float(fine[0].abs().max()) < 1e-5 < float(fine[1].abs().max()), name


def _thread_power(image: np.ndarray) -> float:
    """Power at the fabric's threads (0.375 cycles per px across either axis) over the median power of its
    neighbourhood: ~1-60 for a material without a weave, ~13,000 for the fabric."""
    x = np.asarray(image, np.float64).mean(2)
    x = x - x.mean()
    window = np.hanning(x.shape[0])
    power = np.abs(np.fft.fft2(x * window[:, None] * window[None, :])) ** 2
    k = round(0.375 * x.shape[0])
    at = power[k - 1:k + 2, 0:2].sum() + power[0:2, k - 1:k + 2].sum()
    return float(at / (12 * np.median(power[k - 6:k + 7, :]) + 1e-12))


def test_the_bundled_materials_mix_without_a_woven_mesh():
    """Only the fabric opens the threads' stage (``fine_lattice_open``), so a 50/50 mix of two other bundled
    materials has about the threads' power its materials have alone, or their photographs: brick walls' mortar and
    bark's furrows have harmonics there too (256 px crops of the photographs: stone bricks 81 on average, bark 40,
    brick wall 40; rust, cobblestones, grass, gravel, cracked ground 1-5). The 164,356-step model, trained before
    the gates were held, drew a woven mesh in every such mix: rust + cobblestones 1,124 against 9 and 38 alone,
    brick wall + stone bricks 6,521, bark + gravel 3,506. Seeds 0-3: the held 180,398-step model 2, 135, 38, 2; the
    184,883-step model 1, 144, 35, 2 (its brick wall + stone bricks seeds 79-314, the 180,398-step model's 64-194:
    two seeds alone, as this test took before, put the line at 3x the materials' own power without margin)."""
    from core.common.images import load_rgb
    from core.texture_gan.distill import bundled_materials_path
    from tools.zoo.gan import MATERIALS

    model = TextureGenerator.load(bundled_materials_path(), "cpu")
    exemplars = {name: path for name, _, path in MATERIALS}

    def power(material) -> float:
        return float(np.mean([_thread_power(model.generate(256, 256, seed=s, material=material)) for s in range(4)]))

    def photographed(material) -> float:
        image, rng = load_rgb(ROOT / exemplars[material]), np.random.default_rng(0)
        corners = [(rng.integers(0, image.shape[0] - 255), rng.integers(0, image.shape[1] - 255)) for _ in range(8)]
        return float(np.mean([_thread_power(image[y:y + 256, x:x + 256]) for y, x in corners]))

    for a, b in (("render_rusty_metal", "render_cobblestones"), ("photo_brick", "oa_stone_bricks"),
                 ("render_bark", "photo_gravel"), ("oa_cracked_ground", "photo_grass")):
        own = max(power(a), power(b), photographed(a), photographed(b))
        mixed = power({a: 0.5, b: 0.5})
        assert mixed < 3 * own + 50, (a, b, own, mixed)  # the meshes: 1,124 against 62, 6,521 against 293
    assert power("render_fabric") > 1000  # the fabric keeps its threads


def test_lattice_inputs_are_a_shifted_lattice_that_tiles_fuses_and_paints_through_a_mask():
    """The lattice channels are one lattice translated by the image's shift (rolled by whole stage pixels they
    agree exactly), quantised to whole periods they wrap with the canvas, each stage takes only the frequencies
    under its Nyquist (a frequency too fine for them, the coarsest finer stage alone), and the image with them
    tiles exactly, fuses (the last stage folded with its lattice) and paints per pixel as the plain path."""
    from core.texture_gan.conditional import build_conditional

    freqs = ((1 / 16, 1 / 16), (1 / 16, -1 / 16), (0.0, 1 / 8), (3 / 16, 1 / 16), (0.375, 0.0))
    cfg = ConditionalGANConfig(n_materials=3, lattice_frequencies=freqs, **{**TINY, "g_channels": (16, 12, 8, 6),
                                                                           "g_convs": (1, 2, 1, 2)})
    g, _ = build_conditional(cfg, seed=5)
    # Stride 8: stage 1 has 4 px pixels (up to 0.1 cycles per px), stage 2 has 2 px pixels (up to 0.2); the
    # threads-like 0.375 only the last stage can carry.
    assert g.lattice_stages == {1: [0, 1], 2: [0, 1, 2, 3], 3: [4]}
    assert [tuple(p.shape) for p in g.lattice_projections] == [(12, 4), (8, 8), (6, 2)]
    noise = [torch.zeros(1, *s) for s in g.fine_noise_shapes(8, 6)]
    still = g.lattice_inputs(noise, torch.zeros(1, 2), quantize_to=(8, 6))
    # (6, -10) output pixels of the 64 x 48 canvas: 3 and -5 stage-2 pixels.
    moved = g.lattice_inputs(noise, torch.tensor([[6.0 / 64, -10.0 / 48]]), quantize_to=(8, 6))
    assert torch.allclose(moved[1][:, 1:], still[1][:, 1:].roll((3, -5), dims=(2, 3)), atol=1e-6)
    assert torch.allclose(moved[2][:, 1:], still[2][:, 1:].roll((6, -10), dims=(2, 3)), atol=1e-6)
    for channels in (still[1][0, 1:], still[2][0, 1:]):
        assert torch.allclose(channels.pow(2).mean(dim=(1, 2)), torch.full((len(channels),), 0.5), atol=0.05)

    gen = torch.Generator().manual_seed(1)
    weights = mix_weights(["a", "b", "c"], {"a": 0.4, "c": 0.6})
    canvas, fine = material_canvas(g, 6, 5, seed=2, weights=weights)
    assert [f.shape[1] for f in fine] == [5, 9, 3]
    other = material_canvas(g, 6, 5, seed=3, weights=weights)[1]

    def other_shift(fine):
        return [torch.cat([f[:, :1], o[:, 1:]], 1) for f, o in zip(fine, other)]
    with torch.no_grad():
        closed, closed_shifted = g.body(canvas, fine), g.body(canvas, other_shift(fine))
        for p in g.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen, device="cpu"))
        plain = _image_that_tiles_fuses_and_paints(g, canvas, fine)
        shifted = g.body(canvas, other_shift(fine))
    assert closed.shape == (1, 3, 48, 40) and torch.equal(closed, closed_shifted)  # closed gates: no lattice
    assert float((shifted - plain).abs().mean()) > 1e-3  # another seed's shift moves what the lattice draws
    with pytest.raises(ValueError, match="lattice channels"):
        g.body(canvas, [f[:, :1] for f in fine])


def test_cell_patterns_learn_at_their_own_rate(tmp_path, monkeypatch):
    """The cell patterns' optimiser group runs at ``cell_lr_scale`` times the generator's rate (finishing phase
    included)."""
    import core.texture_gan.distill as distill

    seen = []
    step = distill.MaterialTrainer.step

    def recording(self):
        out = step(self)
        seen.append([g["lr"] for g in self.opt_g.param_groups])
        return out
    monkeypatch.setattr(distill.MaterialTrainer, "step", recording)
    cfg = ConditionalGANConfig(n_materials=2, **{**TINY, "cell_rank": 2, "cell_lr_scale": 4.0, "finish_from": 2,
                                                 "finish_lr_scale": 0.5})
    train_material_gan(_exemplars(), NAMES, tmp_path / "a.safetensors", steps=5, config=cfg, seed=3, tiles=0)
    lr = ConditionalGANConfig.lr_g
    assert seen == [[lr * (0.5 if s > 2 else 1), lr * (0.5 if s > 2 else 1) * 4.0] for s in range(1, 6)]


def test_the_finest_stages_learn_at_their_own_rate_and_resume_bit_identically(tmp_path):
    """``fine_lr_scale`` (a schedule field a running training takes up) scales the two finest stages' optimiser
    updates and nothing else: one step from the same state moves their parameters that many times as far, every
    other parameter the same; a run resumed across it equals a straight one."""
    from core.common.checkpoints import load_training_state
    from core.texture_gan.conditional import is_fine_stage_parameter

    def train(path, steps, **extra):
        cfg = ConditionalGANConfig(n_materials=2, **{**TINY, "g_channels": (16, 8, 6, 4), "g_convs": (1, 1, 1, 1),
                                                     **extra})
        return train_material_gan(_exemplars(), NAMES, path, steps=steps, config=cfg, seed=3, tiles=0)

    def generator(path):
        return load_training_state(path.with_name(path.stem + ".train.safetensors"))["g"]

    plain, boosted = tmp_path / "plain.safetensors", tmp_path / "boosted.safetensors"
    train(plain, 3)
    _fork_run(plain, boosted)
    before = {k: v.clone() for k, v in generator(plain).items()}
    train(plain, 4)
    train(boosted, 4, fine_lr_scale=3.0)
    a, b = generator(plain), generator(boosted)
    fine = [k for k in before if is_fine_stage_parameter(k, 4)]
    assert sorted(fine) == sorted(["stages.2.1.weight", "stages.2.1.bias", "stages.3.1.weight", "stages.3.1.bias",
                                   "noise_gains.1", "noise_gains.2", "film.2.weight", "film.2.bias", "film.3.weight",
                                   "film.3.bias", "to_rgbs.2.weight", "to_rgbs.2.bias", "to_rgbs.3.weight",
                                   "to_rgbs.3.bias"])
    for k in before:
        if k in fine:
            step = a[k] - before[k]
            assert float(step.abs().max()) > 0, k
            assert torch.allclose(b[k] - before[k], 3.0 * step, atol=1e-6), k
        else:
            assert torch.equal(a[k], b[k]), k
    straight, resumed = tmp_path / "s.safetensors", tmp_path / "r.safetensors"
    train(straight, 6, fine_lr_scale=3.0)
    train(resumed, 4, fine_lr_scale=3.0)
    train(resumed, 6, fine_lr_scale=3.0)
    x, y = load_file(str(straight)), load_file(str(resumed))
    assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
    with pytest.raises(ValueError, match="fine_lr_scale"):
        ConditionalGANConfig(n_materials=2, fine_lr_scale=0.0)


def test_a_running_training_takes_up_a_new_adversarial_weight_and_at_zero_leaves_the_discriminator(tmp_path):
    """``adversarial_weight`` is a schedule field: a state trained with the adversarial term resumes (its step goes
    on, nothing restarts) under another weight; at 0 the discriminator is neither used nor trained, while the
    generator still learns from the other terms."""
    from core.common.checkpoints import load_training_state

    def train(path, steps, weight):
        cfg = ConditionalGANConfig(n_materials=2, **{**TINY, "adversarial_weight": weight})
        return train_material_gan(_exemplars(), NAMES, path, steps=steps, config=cfg, seed=3, tiles=0)

    def state(path):
        return load_training_state(path.with_name(path.stem + ".train.safetensors"))

    on, off = tmp_path / "on.safetensors", tmp_path / "off.safetensors"
    train(on, 3, 0.05)  # adversarial from step 2: the discriminator has trained
    _fork_run(on, off)
    before = state(on)
    assert train(on, 5, 0.05)["steps"] == 5 and train(off, 5, 0.0)["steps"] == 5
    kept, moved = state(off), state(on)
    assert all(torch.equal(kept["d"][k], before["d"][k]) for k in before["d"])
    assert any(not torch.equal(moved["d"][k], before["d"][k]) for k in before["d"])
    assert any(not torch.equal(kept["g"][k], before["g"][k]) for k in before["g"])
    assert any(not torch.equal(kept["g"][k], moved["g"][k]) for k in before["g"])
    assert TextureGenerator.load(off, "cpu").config["training_config"]["adversarial_weight"] == 0.0


def test_train_from_image_gives_an_exemplar_that_repeats_its_lattice_as_inputs(tmp_path):
    """A running-bond wall (a lattice) gets its reciprocal lattice's waves as the fine-tuned generator's lattice
    inputs, at the coarse stage, and the spectrum term for itself, so its courses can run straight; stones (no
    lattice) train as before; a job's own fields win over the recipe's, and the run resumes with the same inputs."""
    from core.texture_gan.distill import train_one_material
    from core.texture_synth.structure import find_lattice, lattice_frequencies

    source = tmp_path / "source.safetensors"
    train_material_gan(_exemplars(), NAMES, source, steps=2, config=ConditionalGANConfig(n_materials=2, **TINY),
                       seed=3, tiles=0)
    small = {k: v for k, v in TINY.items() if k not in ConditionalGANConfig.ARCHITECTURE_FIELDS}
    small["exemplar_stats_weight"] = 0.0
    wall = make_exemplar("bricks", 64, seed=0)
    lattice = find_lattice(wall)
    tuned = tmp_path / "wall.safetensors"
    train_one_material(wall, tuned, 2, config=small, seed=0, tiles=0, start_from=source)
    model = TextureGenerator.load(tuned, "cpu")
    # TINY's stride 4 and one coarse stage (2 px per pixel): frequencies up to 0.4 / 2 cycles per px
    expected = lattice_frequencies(lattice, 0.2)
    got = model.generator.cfg.lattice_frequencies
    assert len(got) == len(expected) >= 6 and np.allclose(got, expected)
    assert model.generator.lattice_stages == {1: list(range(len(expected)))}
    for f in got:  # each one makes whole turns along both repeat vectors
        turns = np.asarray(lattice.vectors) @ np.asarray(f)
        assert np.allclose(turns, np.round(turns), atol=1e-4) and np.abs(turns).sum() > 0.5
    recipe = model.config["training_config"]
    assert recipe["spectrum_weight"] == 2.0 and list(recipe["spectrum_focus"]) == [1.0]
    assert recipe["lattice_lr_scale"] == 4.0
    assert model.generate(64, 48, seed=1).shape == (48, 64, 3)
    train_one_material(wall, tuned, 3, config=small, seed=0, tiles=0, start_from=source)  # resumes its own state
    resumed = TextureGenerator.load(tuned, "cpu")
    assert resumed.config["steps"] == 3 and np.allclose(resumed.generator.cfg.lattice_frequencies, expected)

    stones = tmp_path / "stones.safetensors"
    train_one_material(make_exemplar("stones", 64, seed=0), stones, 1, config=small, seed=0, tiles=0,
                       start_from=source)
    plain = TextureGenerator.load(stones, "cpu")
    assert plain.generator.cfg.lattice_frequencies == () and not plain.generator.lattice_stages
    assert plain.config["training_config"]["spectrum_weight"] == 0.0

    mine = tmp_path / "mine.safetensors"
    train_one_material(wall, mine, 1, config={**small, "spectrum_weight": 0.5}, seed=0, tiles=0, start_from=source)
    assert TextureGenerator.load(mine, "cpu").config["training_config"]["spectrum_weight"] == 0.5


def test_only_an_exemplar_that_repeats_closely_gets_its_lattice():
    """A drawn wall repeats exactly (autocorrelation 0.84-0.96 at its repeat vectors); a photographed brick wall
    loosely (0.41 / 0.39: bricks vary in length), and its lattice's waves would cut its bricks short. The bundled
    model's sizes: stride 16, lattice waves up to 0.1 cycles per px. Two exemplars: one list, each its own focus."""
    from core.common.images import load_rgb
    from core.texture_gan.distill import EXEMPLAR_LATTICE_MIN_STRENGTH, exemplar_lattice_fields
    from core.texture_synth.structure import find_lattice

    photo = load_rgb(ROOT / "data" / "texture_photos" / "tune_brick_old_pale.jpg")
    assert find_lattice(photo) is not None and max(find_lattice(photo).strengths) < EXEMPLAR_LATTICE_MIN_STRENGTH
    assert exemplar_lattice_fields([photo], 16, 5) == {}
    for seed in range(3):
        wall = make_exemplar("bricks", 256, seed=seed)
        fields = exemplar_lattice_fields([wall], 16, 5)
        assert len(fields["lattice_frequencies"]) >= 8 and max(map(max, fields["lattice_frequencies"])) <= 0.1
        assert fields["spectrum_focus"] == (1.0,)
    both = exemplar_lattice_fields([photo, wall], 16, 5)
    assert both["spectrum_focus"] == (0.0, 1.0) and both["lattice_frequencies"] == fields["lattice_frequencies"]
    assert exemplar_lattice_fields([wall], 16, 2) == {}  # no coarse lattice stage to take them


def test_train_from_image_fine_tunes_a_materials_gan_from_its_nearest_material(tmp_path):
    """``start_from``: a one-material model starts from a trained materials GAN's weights (its architecture, no
    lattice inputs) with the embedding row of the material whose output is nearest the exemplar in grey: an
    exemplar that is the source's own "wood" output, recoloured, picks "wood"; after a step the new model's
    weights are still the source's (a run from random weights is far from them). It resumes its own state (the
    source's architecture again, no second pick)."""
    from core.common.checkpoints import CheckpointError
    from core.texture_gan.distill import start_from_materials, train_one_material

    source = tmp_path / "source.safetensors"
    cfg = ConditionalGANConfig(n_materials=2, **{**TINY, "lattice_frequencies": ((0.25, 0.0),)})
    train_material_gan(_exemplars(), NAMES, source, steps=4, config=cfg, seed=3, tiles=0)
    bundled = TextureGenerator.load(source, "cpu")
    wood = bundled.generate(64, 64, seed=7, material="wood")
    exemplar = np.clip(wood[..., ::-1] * 0.8 + 0.1, 0, 1).astype(np.float32)  # another colour, the same structure
    fields, weights, picked = start_from_materials(source, [exemplar])
    assert picked == ["wood"]
    assert tuple(fields["g_channels"]) == (16, 8, 4)
    assert fields["lattice_frequencies"] == () and not any(k.startswith("lattice_") for k in weights)
    assert torch.equal(weights["embedding"], bundled.generator.embedding.detach()[1:2].float())

    small = {k: v for k, v in TINY.items() if k not in ConditionalGANConfig.ARCHITECTURE_FIELDS}
    tuned = tmp_path / "tuned.safetensors"
    train_one_material(exemplar, tuned, 1, config={**small, "exemplar_stats_weight": 0.0}, seed=0, tiles=0,
                       start_from=source)
    one = TextureGenerator.load(tuned, "cpu")
    assert one.generator.cfg.g_channels == (16, 8, 4)
    # Not the source's lattice inputs: the exemplar's own, if it repeats closely (exemplar_lattice_fields).
    from core.texture_gan.distill import exemplar_lattice_fields
    own = exemplar_lattice_fields([exemplar], 4, 3).get("lattice_frequencies", ())
    assert (0.25, 0.0) not in one.generator.cfg.lattice_frequencies
    assert np.allclose(np.reshape(one.generator.cfg.lattice_frequencies, (-1, 2)), np.reshape(own, (-1, 2)))
    fresh = tmp_path / "fresh.safetensors"
    train_one_material(exemplar, fresh, 1, config={**small, "g_channels": [16, 8, 4], "g_convs": [1, 1, 1],
                                                   "d_channels": [8, 16], "local_dim": 4, "global_dim": 4,
                                                   "periodic_dim": 2, "exemplar_stats_weight": 0.0},
                       seed=0, tiles=0)
    untuned = TextureGenerator.load(fresh, "cpu").generator.state_dict()
    # One step from the source's weights stays near them; a run from random weights is far from them.
    near = max(float((v - weights[k]).abs().max()) for k, v in one.generator.state_dict().items() if k in weights)
    far = max(float((v - weights[k]).abs().max()) for k, v in untuned.items() if k in weights)
    assert near < 0.05 < far, (near, far)
    train_one_material(exemplar, tuned, 3, config={**small, "exemplar_stats_weight": 0.0}, seed=0, tiles=0,
                       start_from=source)  # resumes its own state with the source's architecture
    assert TextureGenerator.load(tuned, "cpu").config["steps"] == 3
    with pytest.raises(ValueError, match="at least 16 px per side"):  # TINY's stride 4: 4 px at the coarsest stage
        train_one_material(exemplar[:12, :12], tmp_path / "small.safetensors", 1, config=small, tiles=0,
                           start_from=source)
    with pytest.raises(CheckpointError, match="not a materials GAN"):
        spatial = tmp_path / "spatial.safetensors"
        from core.texture_gan import TextureGANConfig, train_texture_gan
        train_texture_gan([exemplar], spatial, 1, config=TextureGANConfig(g_channels=(16, 8, 4), crop_size=32,
                                                                          batch_size=2, stats_loss_weight=0.0),
                          seed=0)
        start_from_materials(spatial, [exemplar])


def _fine_tune_source(tmp_path) -> tuple[Path, np.ndarray]:
    """A tiny two-material GAN to fine-tune, and an exemplar: its "wood" output in other colours."""
    source = tmp_path / "source.safetensors"
    train_material_gan(_exemplars(), NAMES, source, steps=4, config=ConditionalGANConfig(n_materials=2, **TINY),
                       seed=3, tiles=0)
    wood = TextureGenerator.load(source, "cpu").generate(64, 64, seed=7, material="wood")
    return source, np.clip(wood[..., ::-1] * 0.8 + 0.1, 0, 1).astype(np.float32)


_FINE_TUNE_FIELDS = {**{k: v for k, v in TINY.items() if k not in ConditionalGANConfig.ARCHITECTURE_FIELDS},
                     "exemplar_stats_weight": 0.0}


def _straight_run(tmp_path, source, exemplar, tuned: Path, material: str, steps: int) -> dict:
    """The tuned model's recipe (its saved config) run straight from ``material``, no trials: its weights."""
    from core.common.checkpoints import read_checkpoint_config
    from core.texture_gan.distill import start_from_materials

    config = read_checkpoint_config(tuned)
    cfg = ConditionalGANConfig.from_dict(config["training_config"])
    straight = tmp_path / "straight.safetensors"
    train_material_gan([exemplar], config["materials"], straight, steps=steps, config=cfg, seed=0, tiles=0,
                       initial_generator=start_from_materials(source, [exemplar], [material])[1])
    return load_file(str(straight))


def test_a_fine_tune_tries_its_nearest_starts_and_continues_the_best(tmp_path):
    """Trials of a few steps from each of the nearest materials, judged against the exemplar: the best one's state
    is continued (the model equals a run straight from that material, bit for bit), the pick and the trials'
    distances are in the model's config, the trial files are gone, and the progress counts the trials."""
    from core.common.checkpoints import read_checkpoint_config
    from core.texture_gan.distill import train_one_material

    source, exemplar = _fine_tune_source(tmp_path)
    tuned, reports = tmp_path / "tuned.safetensors", []
    train_one_material(exemplar, tuned, 5, config=_FINE_TUNE_FIELDS, seed=0, tiles=0, start_from=source,
                       start_trial_steps=2, progress=reports.append)
    started = read_checkpoint_config(tuned)["started_from"]
    (distances,) = started["trial_distances"]
    assert started["model"] == "source.safetensors" and started["model_steps"] == 4
    assert sorted(distances) == sorted(NAMES)
    assert started["materials"] == [min(distances, key=distances.get)]
    assert read_checkpoint_config(tuned)["steps"] == 5
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("tuned")) == [
        "tuned.json", "tuned.safetensors", "tuned.train.safetensors"]
    # Two trials of 2 steps, one continued to 5: 7 steps in all, counted up to the end.
    assert [r.total for r in reports] == [7] * len(reports) and reports[-1].step == 7
    done = [r.step for r in reports]
    assert done == sorted(done) and "trying start 2 of 2" in reports[3].message
    assert "resumed at step 2" in reports[6].message and started["materials"][0] in reports[6].message
    straight = _straight_run(tmp_path, source, exemplar, tuned, started["materials"][0], 5)
    weights = load_file(str(tuned))
    assert weights.keys() == straight.keys() and all(torch.equal(weights[k], straight[k]) for k in weights)


def test_a_fine_tune_cancelled_in_its_trials_resumes_them(tmp_path):
    """Cancelled during the second trial, the run keeps both trials' files and no model; run again, it resumes the
    second trial and picks as a run never cancelled: the same model, bit for bit."""
    from core.common.jobs import CancelToken, JobCancelled
    from core.texture_gan.distill import train_one_material

    source, exemplar = _fine_tune_source(tmp_path)
    whole = tmp_path / "whole.safetensors"
    train_one_material(exemplar, whole, 5, config=_FINE_TUNE_FIELDS, seed=0, tiles=0, start_from=source,
                       start_trial_steps=2)
    cancel, tuned = CancelToken(), tmp_path / "tuned.safetensors"

    def cancel_in_second_trial(p):
        if "trying start 2" in p.message and p.step == 3:
            cancel.cancel()

    with pytest.raises(JobCancelled):
        train_one_material(exemplar, tuned, 5, config=_FINE_TUNE_FIELDS, seed=0, tiles=0, start_from=source,
                           start_trial_steps=2, progress=cancel_in_second_trial, cancel=cancel)
    assert not tuned.exists() and len(list(tmp_path.glob("tuned.start*.trial.train.safetensors"))) == 2
    from core.library import list_models
    assert not any("trial" in m.path.name for m in list_models([tmp_path]))  # not models an artist may pick
    train_one_material(exemplar, tuned, 5, config=_FINE_TUNE_FIELDS, seed=0, tiles=0, start_from=source,
                       start_trial_steps=2)
    a, b = load_file(str(whole)), load_file(str(tuned))
    assert all(torch.equal(a[k], b[k]) for k in a) and not list(tmp_path.glob("*.trial*"))


def test_exemplars_whose_best_trials_differ_start_over_from_each_ones_best(tmp_path, monkeypatch):
    """Two exemplars, each best after a different trial: no trial's state holds both starts, so the run starts
    over from each one's best material (its embedding row) and trains its own steps from 0."""
    from core.common.checkpoints import read_checkpoint_config
    from core.texture_gan import start_trials
    from core.texture_gan.distill import nearest_materials, train_one_material

    source, exemplar = _fine_tune_source(tmp_path)
    other = make_exemplar("bricks", 64, seed=5)
    ranked = nearest_materials(source, [exemplar, other])
    # The judge's figures, made to disagree: trial 1 best for the first exemplar, trial 2 for the second.
    judged = iter([[1.0, 2.0], [1.5, 1.0]])
    monkeypatch.setattr(start_trials, "judge_trial", lambda path, arrays: next(judged))
    tuned, reports = tmp_path / "tuned.safetensors", []
    train_one_material([exemplar, other], tuned, 4, config=_FINE_TUNE_FIELDS, seed=0, tiles=0, start_from=source,
                       start_trial_steps=2, progress=reports.append)
    started = read_checkpoint_config(tuned)["started_from"]
    assert started["materials"] == [ranked[0][0], ranked[1][1]]
    assert started["trial_distances"] == [{ranked[0][0]: 1.0, ranked[0][1]: 1.5},
                                          {ranked[1][0]: 2.0, ranked[1][1]: 1.0}]
    # Each trial reports its start and 2 steps; then the run starts over: 4 steps after the trials' 4.
    assert "starting" in reports[6].message and reports[6].step == 4
    assert reports[-1].step == reports[-1].total == 8
    assert read_checkpoint_config(tuned)["steps"] == 4 and not list(tmp_path.glob("*.trial*"))


def test_trials_run_in_runs_long_enough_and_pick_each_exemplars_best():
    from core.texture_gan.start_trials import MIN_STEPS, TRIAL_STEPS, pick_winners, trial_steps_for

    assert trial_steps_for(2000) == TRIAL_STEPS and trial_steps_for(MIN_STEPS) == TRIAL_STEPS
    assert trial_steps_for(MIN_STEPS - 1) == 0 and trial_steps_for(100, 0) == 0 and trial_steps_for(3, 5) == 3
    assert pick_winners([[1.0, 2.0], [2.0, 3.0], [3.0, 2.5]]) == ([0, 0], 0)
    assert pick_winners([[1.0, 2.0], [0.5, 3.0]]) == ([1, 0], None)
    assert pick_winners([[1.0], [1.0]]) == ([0], 0)  # a tie: the nearer start


def test_tiled_generation_equals_one_pass(model_path):
    model = TextureGenerator.load(model_path, "cpu")
    whole = model.generate(160, 96, seed=5, material="wood")
    tiled = model.generate(160, 96, seed=5, material="wood", tile_size=64)
    assert np.allclose(whole, tiled, atol=1e-5)


def test_resume_is_bit_identical(tmp_path):
    straight, resumed = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    _train(straight, 5)  # the adversarial term starts at step 2: the discriminator's state is resumed too
    _train(resumed, 3)
    _train(resumed, 5)
    a, b = load_file(str(straight)), load_file(str(resumed))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    sa = load_file(str(straight.with_name("a.train.safetensors")))
    sb = load_file(str(resumed.with_name("b.train.safetensors")))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_a_training_continues_with_other_step_sizes_and_refuses_other_settings(tmp_path):
    """A GPU run's bigger batches of bigger crops continue a CPU state (and the CPU continues a GPU run's): the
    sizes of a step may change between sessions; an architecture or loss setting may not."""
    from core.common.checkpoints import CheckpointError, read_checkpoint_config

    path = tmp_path / "m.safetensors"
    _train(path, 3)
    cfg = ConditionalGANConfig(n_materials=2, **{**TINY, "crop_size": 48, "batch_size": 3})
    result = train_material_gan(_exemplars(), NAMES, path, steps=5, config=cfg, seed=3, tiles=0)
    assert result["steps"] == 5
    assert read_checkpoint_config(path)["training_config"]["crop_size"] == 48
    other = ConditionalGANConfig(n_materials=2, **{**TINY, "stats_loss_weight": 1.0})
    with pytest.raises(CheckpointError, match="other exemplars or settings"):
        train_material_gan(_exemplars(), NAMES, path, steps=7, config=other, seed=3, tiles=0)


def test_finishing_phase_joins_a_running_training_and_slows_its_steps(tmp_path, monkeypatch):
    """A training started without a finishing phase continues with one (its state is accepted); from
    ``finish_from`` the optimisers run at the scaled rates and the moving average at its longer decay, the same
    whether the run passes the switch in one go or resumes across it; any other change is still refused."""
    import core.texture_gan.distill as distill
    from core.common.checkpoints import CheckpointError

    finish = dict(finish_from=4, finish_lr_scale=0.5, finish_ema_decay=0.9)
    seen = []
    step = distill.MaterialTrainer.step

    def recording(self):
        out = step(self)
        seen.append((self.steps_done, self.opt_g.param_groups[0]["lr"], self.opt_d.param_groups[0]["lr"]))
        return out
    monkeypatch.setattr(distill.MaterialTrainer, "step", recording)
    train = _train_with

    straight, resumed = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    train(straight, 6, **finish)
    lr_g, lr_d = ConditionalGANConfig.lr_g, ConditionalGANConfig.lr_d
    assert seen == [(s, lr_g * (0.5 if s > 4 else 1), lr_d * (0.5 if s > 4 else 1)) for s in range(1, 7)]
    train(resumed, 3)  # no finishing phase yet
    train(resumed, 6, **finish)  # added to the running training
    a, b = load_file(str(straight)), load_file(str(resumed))
    assert all(torch.equal(a[k], b[k]) for k in a)
    fast = tmp_path / "c.safetensors"
    train(fast, 6)
    assert not all(torch.equal(a[k], load_file(str(fast))[k]) for k in a)  # the phase changed the steps
    with pytest.raises(CheckpointError, match="other exemplars or settings"):
        train(resumed, 7, **finish, lr_g=1e-3)
    with pytest.raises(ValueError, match="finish_lr_scale"):
        ConditionalGANConfig(n_materials=2, finish_lr_scale=0.0)


def test_exemplar_statistics_term_joins_a_running_training_and_resumes_bit_identically(tmp_path):
    """The whole-exemplar statistics term (a larger output against a fixed sample of the exemplar's VGG19
    features): a running training takes it up, it changes the steps, and a resumed run equals a straight one."""
    from core.common.perception import TextureFeatures
    from core.texture_gan.distill import EXEMPLAR_FEATURE_SAMPLES, exemplar_feature_sample, exemplar_sw

    _assert_a_schedule_term_joins_and_resumes(tmp_path, dict(exemplar_stats_weight=1.0, exemplar_stats_crop=48),
                                              "exemplar")

    # The sample stands for the exemplar: the exemplar scores far closer to it than another material does.
    features = TextureFeatures("cpu")
    bricks, wood = (torch.from_numpy(e.transpose(2, 0, 1).copy()) for e in _exemplars())
    sample = exemplar_feature_sample(features, bricks, torch.Generator().manual_seed(0))
    again = exemplar_feature_sample(features, bricks, torch.Generator().manual_seed(0))
    assert all(torch.equal(x, y) for x, y in zip(sample, again))
    assert all(f.shape[0] == 1 and f.shape[3] == 1 and f.shape[2] <= EXEMPLAR_FEATURE_SAMPLES for f in sample)
    own = float(exemplar_sw(features, bricks[None], sample, torch.Generator().manual_seed(1)))
    other = float(exemplar_sw(features, wood[None], sample, torch.Generator().manual_seed(1)))
    assert own < 0.2 * other
    with pytest.raises(ValueError, match="exemplar_stats"):
        ConditionalGANConfig(n_materials=2, **{**TINY, "exemplar_stats_crop": 30})


def test_exemplar_focus_picks_the_terms_material_by_weight_and_resumes_bit_identically(tmp_path, monkeypatch):
    """``exemplar_focus``: the whole-exemplar term's material is drawn by the weights (a zero weight is never
    drawn), a running training may take it up, and a resumed run equals a straight one."""
    from core.texture_gan.distill import MaterialTrainer

    drawn: list[int] = []

    class Recording(list):  # the real feature samples; records which material's the step takes
        def __getitem__(self, i):
            drawn.append(int(i))
            return super().__getitem__(i)

    real = MaterialTrainer.exemplar_features
    monkeypatch.setattr(MaterialTrainer, "exemplar_features", lambda self: Recording(real(self)))

    def train(path, steps, **fields):
        return _train_with(path, steps, **{"exemplar_stats_weight": 1.0, "exemplar_stats_crop": 48, **fields})

    train(tmp_path / "only_wood.safetensors", 6, exemplar_focus=(0.0, 1.0))
    assert drawn == [1] * 6
    drawn.clear()
    train(tmp_path / "alike.safetensors", 6)  # no focus: the step's first label, which cycles
    assert set(drawn) == {0, 1}
    straight, resumed = tmp_path / "straight.safetensors", tmp_path / "resumed.safetensors"
    train(straight, 5, exemplar_focus=(1.0, 3.0))
    train(resumed, 2)
    train(resumed, 5, exemplar_focus=(1.0, 3.0))  # a schedule field: taken up on resume
    train(tmp_path / "resumed_same.safetensors", 2, exemplar_focus=(1.0, 3.0))
    train(tmp_path / "resumed_same.safetensors", 5, exemplar_focus=(1.0, 3.0))
    a, b = load_file(str(straight)), load_file(str(tmp_path / "resumed_same.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], load_file(str(resumed))[k]) for k in a)  # the focus changed the steps
    for bad in [(1.0,), (1.0, -1.0), (0.0, 0.0)]:
        with pytest.raises(ValueError, match="exemplar_focus"):
            ConditionalGANConfig(n_materials=2, **{**TINY, "exemplar_focus": bad})


def _stripes(period: float, shift: float = 0.0, side: int = 64) -> torch.Tensor:
    x = torch.arange(side, dtype=torch.float32)
    row = 0.5 + 0.4 * torch.sin(2 * torch.pi * (x - shift) / period)
    return row.expand(3, side, side).clone()


def test_spectrum_loss_sees_periods_not_their_phase():
    """The spectrum term compares where an image repeats: a weave shifted by a few pixels matches its reference,
    one of another period does not, nor does a plain image; the reference is the mean over seeded crops."""
    from core.texture_gan.distill import SPECTRUM_CROPS, amplitude_spectrum, exemplar_spectrum, spectrum_loss

    reference = exemplar_spectrum(_stripes(8, side=160), 64, torch.Generator().manual_seed(0))
    assert reference.shape == (3, 64, 33)
    again = exemplar_spectrum(_stripes(8, side=160), 64, torch.Generator().manual_seed(0))
    assert torch.equal(reference, again)
    shifted = [float(spectrum_loss(_stripes(8, shift)[None], reference)) for shift in (0, 1.5, 3, 5)]
    other = [float(spectrum_loss(_stripes(period)[None], reference)) for period in (5, 12, 20)]
    plain = float(spectrum_loss(torch.full((1, 3, 64, 64), 0.5) + 0.01 * torch.randn(1, 3, 64, 64,
                                generator=torch.Generator().manual_seed(1)), reference))
    assert max(shifted) < 0.1 * min(other + [plain]), (shifted, other, plain)
    assert min(other) > 0.5 and plain > 0.5
    # Differentiable: a weave's gradient points toward its reference's period.
    image = _stripes(12)[None].requires_grad_(True)
    spectrum_loss(image, reference).backward()
    assert image.grad is not None and float(image.grad.abs().sum()) > 0
    assert amplitude_spectrum(torch.zeros(2, 3, 16, 16)).shape == (2, 3, 16, 9) and SPECTRUM_CROPS >= 16
    with pytest.raises(ValueError, match="at least 64 px"):
        exemplar_spectrum(_stripes(8, side=48), 64, torch.Generator())


def test_batched_spectrum_losses_equal_the_weighted_per_crop_losses():
    from core.texture_gan.distill import spectrum_loss, spectrum_losses

    gen = torch.Generator().manual_seed(5)
    fakes = torch.rand(3, 3, 32, 32, generator=gen).requires_grad_()
    references = torch.rand(3, 3, 32, 17, generator=gen) + 0.1
    weights = [1.0, 0.0, 2.5]
    loop = sum(w * spectrum_loss(fakes[i:i + 1], references[i]) for i, w in enumerate(weights))
    batched = spectrum_losses(fakes, references, weights)
    assert float(loop) > 0 and torch.allclose(batched, loop, rtol=1e-5)
    grad_loop, = torch.autograd.grad(loop, fakes)
    grad_batched, = torch.autograd.grad(batched, fakes)
    assert torch.allclose(grad_batched, grad_loop, rtol=1e-4, atol=1e-9) and float(grad_loop[1].abs().sum()) == 0


def test_spectrum_term_joins_a_running_training_and_resumes_bit_identically(tmp_path):
    """``spectrum_weight``: a schedule field a running training takes up; it changes the steps, it reports its
    loss, and a resumed run equals a straight one."""
    losses = _assert_a_schedule_term_joins_and_resumes(tmp_path, dict(spectrum_weight=0.5, exemplar_stats_crop=48),
                                                       "spectrum")
    assert "exemplar" not in losses  # no VGG19 term asked for
    with pytest.raises(ValueError, match="spectrum_weight"):
        ConditionalGANConfig(n_materials=2, **{**TINY, "spectrum_weight": -1.0})


def test_spectrum_focus_gives_the_term_only_to_the_materials_it_weighs(tmp_path, monkeypatch):
    """``spectrum_focus``: a material weighted 0 never meets the spectrum term (neither its crops nor its
    whole-exemplar output); the others do, scaled by their weight."""
    import core.texture_gan.distill as distill

    seen: list[float] = []
    real = distill.spectrum_loss

    def recording(fake, reference):
        seen.append(float(reference.mean()))
        return real(fake, reference)
    monkeypatch.setattr(distill, "spectrum_loss", recording)
    real_batch = distill.spectrum_losses

    def recording_batch(fakes, references, weights):  # the crops' term: one call for the batch
        seen.extend(float(r.mean()) for r in references)
        return real_batch(fakes, references, weights)
    monkeypatch.setattr(distill, "spectrum_losses", recording_batch)
    # The trainer's references at 32 px (its crops' and whole-exemplar output's size), told apart by their means.
    exemplars = [torch.from_numpy(e.transpose(2, 0, 1).copy()) for e in _exemplars()]
    trainer = SimpleNamespace(_exemplar_spectra={}, sampler=SimpleNamespace(exemplars=exemplars))
    references = [float(r.mean()) for r in distill.MaterialTrainer.exemplar_spectra(trainer, 32)]
    assert abs(references[0] - references[1]) > 1e-3 * abs(references[0])
    counts = {}
    for focus in [(1.0, 1.0), (0.0, 2.0), (0.0, 0.0)]:
        seen.clear()
        _train_with(tmp_path / f"{focus}.safetensors", 4, spectrum_weight=1.0, spectrum_focus=focus,
                    exemplar_stats_crop=32)
        # Matched to float rounding: on CUDA the trainer's references are reduced in another order than here.
        counts[focus] = [sum(abs(s - r) <= 1e-5 * abs(r) for s in seen) for r in references]
    assert counts[(1.0, 1.0)][0] >= 4 and counts[(1.0, 1.0)][1] >= 4  # every crop of both materials
    assert counts[(0.0, 2.0)][0] == 0 and counts[(0.0, 2.0)][1] >= 4
    assert counts[(0.0, 0.0)] == [0, 0]
    with pytest.raises(ValueError, match="spectrum_focus"):
        ConditionalGANConfig(n_materials=2, **{**TINY, "spectrum_focus": (1.0,)})


def test_train_from_image_default_recipe_has_the_whole_exemplar_term_fitted_to_the_exemplar(tmp_path):
    import json

    from core.common.checkpoints import read_checkpoint_config
    from core.texture_gan.distill import WHOLE_EXEMPLAR_STATS, train_one_material

    out = train_one_material([make_exemplar("stones", 112, seed=1)], tmp_path / "mine.safetensors", 1, tiles=1)
    config = read_checkpoint_config(out)
    training = config["training_config"] if isinstance(config["training_config"], dict) else \
        json.loads(config["training_config"])
    assert training["exemplar_stats_weight"] == WHOLE_EXEMPLAR_STATS["exemplar_stats_weight"] > 0
    # Training crops as before (96 px); the whole-exemplar output as large as the exemplar allows, up to 192 px.
    assert training["crop_size"] == 96 and training["exemplar_stats_crop"] == 112


def test_minutes_budget_stops_with_a_checkpoint(tmp_path):
    path = tmp_path / "m.safetensors"
    result = _train(path, None, minutes=0.0)
    assert result["steps"] == 0 and path.exists()
    assert _train(path, 2)["steps"] == 2


def test_mix_parsing_and_validation():
    assert parse_mix("bricks:0.7, wood:0.3") == {"bricks": 0.7, "wood": 0.3}
    assert torch.allclose(mix_weights(NAMES, {"bricks": 1, "wood": 3}), torch.tensor([[0.25, 0.75]]))
    with pytest.raises(ValueError, match="unknown material"):
        mix_weights(NAMES, "marble")
    with pytest.raises(ValueError, match="not all be 0"):
        mix_weights(NAMES, {"bricks": 0.0})
    with pytest.raises(ValueError, match="NAME:WEIGHT"):
        parse_mix("bricks")


def test_cli_lists_materials_and_generates(model_path, tmp_path, capsys):
    from core.cli import main

    assert main(["texture", "materials", "--model", str(model_path)]) == 0
    listed = [line.split("\t")[0] for line in capsys.readouterr().out.strip().splitlines()]
    assert listed == NAMES
    out = tmp_path / "mix.png"
    assert main(["texture", "generate", "--model", str(model_path), "--mix", "bricks:1,wood:1", "--width", "40",
                 "--height", "24", "--seed", "1", "--tileable", "--out", str(out)]) == 0
    from core.common.images import load_rgb
    assert load_rgb(out).shape == (24, 40, 3)
    assert main(["texture", "generate", "--model", str(model_path), "--material", "marble", "--out", str(out)]) != 0
    assert "unknown material 'marble'" in capsys.readouterr().err


@pytest.mark.parametrize("family", ["gan", "gan_vae"])
def test_zoo_recipe_tiny_writes_model_state_and_manifest_entry(tmp_path, family):
    """``build.py models --only gan|gan_vae --minutes N``'s contract on the tiny profile: model beside its state
    (still in training: not a bundled default), state, an entry in the manifest's ``training`` list only."""
    import json

    from core import library
    from tools import zoo

    (tmp_path / "manifest.json").write_text(json.dumps({"models": [{"name": zoo.recipe(family).NAME}]}))
    entry = zoo.recipe(family).train(0.02, profile="tiny", out_dir=tmp_path)
    model = tmp_path / entry["file"]
    assert model.is_file() and model.parent == tmp_path / "training"
    assert (tmp_path / "training" / f"{family}.train.safetensors").is_file()
    assert [m["name"] for m in entry["materials"]] == ["photo_brick", "photo_grass"]
    assert all(m["exemplars"] for m in entry["materials"]) and entry["training_seconds"] >= 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["models"] == [] and [m["name"] for m in manifest["training"]] == [entry["name"]]
    assert library.list_models([], bundled_folders=[tmp_path]) == []  # the add-on does not offer it
    model.unlink()  # --minutes 0 rewrites the model from the state
    again = zoo.recipe(family).train(0.0, profile="tiny", out_dir=tmp_path)  # continues from the state
    assert again["steps"] == entry["steps"] and model.is_file()
    assert zoo.recipe(family).find_model(tmp_path) == (model, "")


def test_teacher_tiles_are_cached_under_a_key_that_names_the_synthesizer_version(tmp_path, monkeypatch):
    import core.texture_synth as texture_synth
    from core.texture_gan.distill import synthesized_tiles, tiles_cache_path

    exemplar = make_exemplar("bricks", 48, seed=0)
    tiles = synthesized_tiles(exemplar, 1, 32, seed=2, cache_dir=tmp_path, steps=2)
    path = tiles_cache_path(tmp_path, exemplar, 1, 32, seed=2, steps=2)
    assert path.exists() and tiles.shape == (1, 32, 32, 3) and tiles.dtype == np.uint8
    np.save(path, np.zeros_like(tiles))  # a second call reads the cache (eval_materials looks it up the same way)
    assert not synthesized_tiles(exemplar, 1, 32, seed=2, cache_dir=tmp_path, steps=2).any()
    monkeypatch.setattr(texture_synth, "SYNTHESIS_VERSION", texture_synth.SYNTHESIS_VERSION + 1)
    assert tiles_cache_path(tmp_path, exemplar, 1, 32, seed=2, steps=2) != path  # a new teacher: new tiles


def test_the_course_term_joins_a_running_training_and_resumes(tmp_path):
    """``course_weight`` with ``course_periods``: a schedule field that reports its term, resumes bit-identically and
    changes the steps of a training that takes it up; bad periods are refused."""
    _assert_a_schedule_term_joins_and_resumes(tmp_path, dict(course_weight=1.0, course_periods=((1, 16), (0, 0))),
                                              "courses")
    for bad in (((1, 12),), ((2, 12), (0, 0)), ((0, 2), (0, 0))):
        with pytest.raises(ValueError, match="course_periods"):
            ConditionalGANConfig(n_materials=2, course_weight=1.0, course_periods=bad)


def test_a_running_distillation_moves_to_the_exemplars_own_crops_and_stops_synthesizing_tiles(tmp_path, monkeypatch):
    """``exemplar_fraction`` is a schedule field: a training distilled from teacher tiles resumes with every crop
    from its exemplars (the bundled CPU recipe's change at step 183,837). It then synthesizes no tiles (they would
    go unused), its record says what it learns from, and its steps differ from the distillation's."""
    from core.common.checkpoints import read_checkpoint_config
    from core.texture_gan import distill

    def distilled(path, steps, **fields):
        cfg = ConditionalGANConfig(n_materials=2, **{**TINY, **fields})
        return train_material_gan(_exemplars(), NAMES, path, steps=steps, config=cfg, seed=3, tiles=1, tile_size=32,
                                  synth_steps=2, cache_dir=tmp_path / "tiles")

    moved, kept = tmp_path / "moved.safetensors", tmp_path / "kept.safetensors"
    distilled(moved, 3)
    assert read_checkpoint_config(moved)["recipe"] == "distilled from texture_synth"
    _fork_run(moved, kept)
    synthesized = []
    original = distill.synthesized_tiles
    monkeypatch.setattr(distill, "synthesized_tiles", lambda *a, **k: synthesized.append(1) or original(*a, **k))
    distilled(moved, 5, exemplar_fraction=1.0)  # accepted on resume
    assert synthesized == []
    meta = read_checkpoint_config(moved)
    assert meta["recipe"] == "the exemplars' own crops" and meta["distilled_tiles"] == 0
    assert meta["training_config"]["exemplar_fraction"] == 1.0 and meta["steps"] == 5
    distilled(kept, 5)
    assert synthesized == [1, 1]  # one material each, from the cache
    a, b = load_file(str(moved)), load_file(str(kept))
    assert not all(torch.equal(a[k], b[k]) for k in a)


def _found_unflipped(crop: torch.Tensor, exemplar: torch.Tensor) -> bool:
    """Whether ``crop`` (3xCxC) is a crop of ``exemplar`` (3xHxW) as it is, not mirrored."""
    c = crop.shape[-1]
    windows = exemplar.unfold(1, c, 1).unfold(2, c, 1)  # 3 x H' x W' x C x C
    return bool((windows - crop[:, None, None]).abs().amax(dim=(0, 3, 4)).min() < 1e-6)


def test_the_exemplar_crops_keep_their_orientation_without_flips(tmp_path):
    """``augment_flips`` off: every training crop is the exemplar as lit, never mirrored (a rendered or
    photographed surface's light comes from one side; mirrored crops read 1.1-7.9x further from it than the crops
    themselves under the judge). On, some crops are mirrored. A schedule field: a running training takes it up."""
    from core.texture_gan.distill import TargetSampler

    rng = np.random.default_rng(0)
    exemplar = rng.random((40, 40, 3), dtype=np.float32)  # no symmetry: a mirrored crop is found nowhere
    source = torch.from_numpy(exemplar.transpose(2, 0, 1).copy())
    for flips, expect_all in ((False, True), (True, False)):
        sampler = TargetSampler([exemplar], [np.zeros((0, 1, 1, 3), np.uint8)], 16, 1.0,
                                torch.Generator().manual_seed(1), torch.device("cpu"), flips=flips)
        found = [_found_unflipped(sampler.sample(0), source) for _ in range(24)]
        assert all(found) if expect_all else not all(found)

    path = tmp_path / "run.safetensors"
    for steps, flips in ((2, True), (4, False)):  # accepted on resume
        cfg = ConditionalGANConfig(n_materials=2, **{**TINY, "augment_flips": flips})
        train_material_gan(_exemplars(), NAMES, path, steps=steps, config=cfg, seed=3, tiles=0)
    from core.common.checkpoints import read_checkpoint_config
    meta = read_checkpoint_config(path)
    assert meta["steps"] == 4 and meta["training_config"]["augment_flips"] is False
    assert meta["recipe"].endswith(", never mirrored")  # the record says so
