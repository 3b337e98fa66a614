"""The texture VAE whose decoder is the materials GAN: the spatial condition, resumable training, variations that
stay on the prior, blends that keep each side, and files that load (or refuse) as texture VAEs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from core.common.checkpoints import CheckpointError, read_checkpoint_config, save_checkpoint
from core.common.jobs import CancelToken, JobCancelled
from core.common.procedural import make_exemplar
from core.texture_gan.conditional import ConditionalGANConfig, build_conditional
from core.texture_vae import load_texture_vae
from core.texture_vae.gan_prior import GANPriorVAEConfig, prior_step, renormalised_mix
from core.texture_vae.gan_prior_ops import GANPriorVAE
from core.texture_vae.gan_prior_train import train_gan_prior_vae

GAN = dict(n_materials=2, g_channels=(8, 4, 4), g_convs=(1, 1, 1), d_channels=(4, 8), local_dim=4, global_dim=4,
           periodic_dim=2)
TINY = dict(base_channels=4, encoder_mult=(1, 2), crop_size=16, batch_size=2, vgg_samples=1)


def _exemplars():
    return [make_exemplar("bricks", 48, seed=0), make_exemplar("wood", 48, seed=0)]


@pytest.fixture(scope="module")
def generator_file(tmp_path_factory):
    cfg = ConditionalGANConfig(**GAN)
    g, _ = build_conditional(cfg, 3)
    with torch.no_grad():  # a generator whose materials differ visibly, as a trained one's do
        g.embedding.copy_(torch.tensor([[2.0, 0, 0, 0], [-2.0, 0, 0, 0]]))
    path = tmp_path_factory.mktemp("gan") / "gan.safetensors"
    save_checkpoint(path, g.state_dict(), {"architecture": cfg.architecture(), "materials": ["bricks", "wood"],
                                           "version": 2, "steps": 7}, "texture_gan")
    return path


def _train(generator_file, path, steps):
    return train_gan_prior_vae(_exemplars(), generator_file, path, steps, config=GANPriorVAEConfig(**TINY), seed=5)


@pytest.fixture(scope="module")
def vae(generator_file, tmp_path_factory):
    path = tmp_path_factory.mktemp("vae") / "m.safetensors"
    _train(generator_file, path, 6)
    return load_texture_vae(path, "cpu")


def test_a_constant_embedding_map_gives_the_plain_generators_image():
    cfg = ConditionalGANConfig(**GAN)
    g, _ = build_conditional(cfg, 1)
    g.eval()
    gen = torch.Generator().manual_seed(0)
    local = torch.randn(1, cfg.local_dim, 5, 6, generator=gen)
    canvas = g.build_input(local, g.mix(torch.tensor([[0.3, 0.7]])), torch.zeros(1, cfg.periodic_dim),
                           quantize_to=(5, 6))
    fine = [torch.randn(1, *s, generator=gen) for s in g.fine_noise_shapes(5, 6)]
    with torch.no_grad():
        for fused in (False, True):
            g.fused_upsampling = fused
            plain = g.stage_images(canvas, fine, final_only=True)[-1]
            spatial = g.stage_images(canvas, fine, final_only=True, spatial=True)[-1]
            assert torch.allclose(plain, spatial, atol=1e-5), (fused, (plain - spatial).abs().max())


def test_a_painted_embedding_changes_only_its_region():
    cfg = ConditionalGANConfig(**GAN)
    g, _ = build_conditional(cfg, 1)
    g.eval()
    with torch.no_grad():
        g.embedding.copy_(torch.tensor([[2.0, 0, 0, 0], [-2.0, 0, 0, 0]]))
        gen = torch.Generator().manual_seed(0)
        local = torch.randn(1, cfg.local_dim, 8, 24, generator=gen)
        a = g.build_input(local, g.mix(torch.tensor([[1.0, 0.0]])), torch.zeros(1, cfg.periodic_dim))
        b = g.build_input(local, g.mix(torch.tensor([[0.0, 1.0]])), torch.zeros(1, cfg.periodic_dim))
        painted = a.clone()
        painted[..., 12:] = b[..., 12:]
        fine = [torch.randn(1, *s, generator=gen) for s in g.fine_noise_shapes(8, 24)]
        images = [g.stage_images(x, fine, final_only=True, spatial=True)[-1] for x in (a, b, painted)]
    stride = cfg.stride
    left, right = slice(3 * stride, 9 * stride), slice(15 * stride, 21 * stride)  # 3 cells clear of each edge
    assert torch.allclose(images[2][..., left], images[0][..., left], atol=1e-5)
    assert torch.allclose(images[2][..., right], images[1][..., right], atol=1e-5)
    assert (images[0] - images[1]).abs().mean() > 1e-3  # the two materials do differ


@pytest.fixture
def one_thread():
    # VGG19's backward on several CPU threads sums in a varying order (two straight runs differ at 2 threads);
    # the trainings run on one thread each, where a resume is exact.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_resume_is_bit_identical_and_keeps_its_generator(generator_file, tmp_path, one_thread):
    straight, resumed = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    _train(generator_file, straight, 4)
    _train(generator_file, resumed, 2)
    # The GAN trains on meanwhile: a resumed encoder must keep the generator it was trained against.
    moved = load_file(str(generator_file))
    moved = {k: v + 0.5 for k, v in moved.items()}
    other = tmp_path / "moved_gan.safetensors"
    save_checkpoint(other, moved, {"architecture": ConditionalGANConfig(**GAN).architecture(),
                                   "materials": ["bricks", "wood"], "version": 2}, "texture_gan")
    _train(other, resumed, 4)
    a, b = load_file(str(straight)), load_file(str(resumed))
    assert a.keys() == b.keys() and [k for k in a if not torch.equal(a[k], b[k])] == []
    assert any(k.startswith("decoder.") for k in a) and any(k.startswith("encoder.") for k in a)
    assert read_checkpoint_config(resumed)["generator_steps"] == 7  # the first generator's, kept


def test_training_moves_only_the_encoder(generator_file, tmp_path):
    path = tmp_path / "m.safetensors"
    _train(generator_file, path, 3)
    trained, original = load_file(str(path)), load_file(str(generator_file))
    assert all(torch.equal(trained[f"decoder.{k}"], v) for k, v in original.items())


def test_loads_as_a_texture_vae_and_sizes_work(vae):
    assert isinstance(vae, GANPriorVAE) and vae.materials == ["bricks", "wood"]
    image = make_exemplar("bricks", 48, seed=1)
    assert vae.reconstruct(image).shape == (48, 48, 3)
    out = vae.vary(image[:37, :45], 0.5, seed=1, width=70, height=33)
    assert out.shape == (33, 70, 3) and np.isfinite(out).all() and 0 <= out.min() and out.max() <= 1


def test_variation_is_seeded_and_moves_further_with_strength(vae):
    image = make_exemplar("bricks", 48, seed=1)
    assert np.array_equal(vae.vary(image, 0.7, seed=4), vae.vary(image, 0.7, seed=4))
    z = vae.encode(image)
    eps = torch.randn(z.shape, generator=torch.Generator().manual_seed(4))
    local = vae.config.local_dim
    steps = [prior_step(z, eps, s, local) for s in (0.0, 0.25, 0.5, 1.0, 3.0)]
    assert torch.equal(steps[0], z)
    moved = [float((s[:, :local] - z[:, :local]).abs().mean()) for s in steps]
    assert all(b > a for a, b in zip(moved, moved[1:])), moved
    assert all(torch.equal(s[:, local:], z[:, local:]) for s in steps)  # the materials stay


def _layout_error(a: np.ndarray, b: np.ndarray) -> float:
    pool = lambda x: torch.nn.functional.avg_pool2d(torch.from_numpy(x).permute(2, 0, 1)[None], 8)  # noqa: E731
    return float((pool(a) - pool(b)).abs().mean())


def test_refinement_fits_the_latents_to_the_image_and_zero_steps_change_nothing(vae, one_thread):
    image = make_exemplar("bricks", 48, seed=1)
    assert torch.equal(vae.encode(image, refine_steps=0), vae.encode(image))
    plain = vae.reconstruct(image)
    refined = vae.reconstruct(image, refine_steps=25)
    # The encoder has had 6 steps: its one guess is poor, and the refinement brings the layout toward the image.
    assert _layout_error(refined, image) < 0.8 * _layout_error(plain, image), (
        _layout_error(refined, image), _layout_error(plain, image))
    assert np.array_equal(refined, vae.reconstruct(image, refine_steps=25))  # deterministic
    assert not any(p.grad is not None for p in vae.net.parameters())  # the networks are left as they were
    varied = vae.vary(image, 0.5, seed=2, refine_steps=5)
    assert np.array_equal(varied, vae.vary(image, 0.5, seed=2, refine_steps=5))
    assert not np.array_equal(varied, vae.vary(image, 0.5, seed=2))


def test_refinement_picks_the_decoders_seed_an_image_was_drawn_with(vae, one_thread):
    """The decoder's own randomness (detail noise, wave phases, lattice shift) is in no latent: refinement picks
    the seed for it among ``candidate_seeds``, by the refinement's loss. An image decoded with one of them is found
    again (its loss there is the layout's and Grams' zero, plus the prior term every candidate shares)."""
    from core.common.images import to_tensor
    from core.texture_vae.ops import REFINE_SEED_CANDIDATES, candidate_seeds

    seeds = candidate_seeds(11)
    assert seeds[0] == 11 and len(set(seeds)) == REFINE_SEED_CANDIDATES >= 4 and seeds == candidate_seeds(11)
    z = vae.encode(make_exemplar("bricks", 48, seed=1))
    drawn = vae.decode(z, seed=seeds[3])
    x = to_tensor(drawn)
    assert vae.decoder_seed([z], [x], 11) == seeds[3]
    # Over two images the summed loss decides; each image alone is found by its own seed.
    other = vae.decode(z, seed=seeds[5])
    assert vae.decoder_seed([z], [to_tensor(other)], 11) == seeds[5]
    # A variation refines its latents with the picked seed and decodes with it; the one-pass reading keeps the seed.
    image = make_exemplar("wood", 48, seed=2)
    x = to_tensor(image)
    picked = vae.decoder_seed([vae.encode(image)], [x], 4)
    expected = vae.decode(vae.refine(vae.encode(image), x, 3, picked), seed=picked)
    assert np.array_equal(vae.vary(image, 0.0, seed=4, refine_steps=3), expected)
    assert np.array_equal(vae.vary(image, 0.0, seed=4), vae.decode(vae.encode(image), seed=4))


def test_a_refined_variation_reads_its_image_through_the_vgg19_once(vae, monkeypatch, one_thread):
    """The seed choice, the refinement and the fit check match the same targets of the same image: one VGG19 pass
    over the image, then one per decoding (before, the image's own pass ran three times)."""
    from core.texture_vae.ops import REFINE_SEED_CANDIDATES

    image = make_exemplar("bricks", 32, seed=1)
    expected = vae.vary(image, 0.5, seed=2, refine_steps=3)
    vgg = vae._perception(vae.device)
    passes, real = [], vgg.forward
    monkeypatch.setattr(vgg, "forward", lambda *a, **k: passes.append(1) or real(*a, **k))
    heard = []
    varied = vae.vary(image, 0.5, seed=2, refine_steps=3, warn=heard.append)
    assert len(passes) == 1 + REFINE_SEED_CANDIDATES + 3 + 1  # the image, the candidates, the steps, the fit
    assert np.array_equal(varied, expected) and vae._targets_memo is None  # same result, nothing kept after


def test_a_decoder_without_noise_of_its_own_keeps_the_given_seed(tmp_path):
    from core.texture_vae.model import TextureVAEConfig, TextureVAENet
    from core.texture_vae.ops import TextureVAE

    plain = TextureVAE(TextureVAENet(TextureVAEConfig(base_channels=4)), TextureVAEConfig(base_channels=4))
    assert not plain.decoder_draws_noise
    assert plain.decoder_seed([torch.zeros(1, 1, 1, 1)], [torch.zeros(1, 3, 8, 8)], 9) == 9  # nothing decoded


def test_the_bundled_vae_warns_when_an_image_is_far_from_its_materials(one_thread):
    """The bundled materials VAE draws its nine materials: a crop of one of them refines to a small loss and varies
    without a word; a photograph it never saw (brick courses) ends refinement far above ``fit_warning_loss`` (its
    variations are another texture, 14-38x a photograph's own crops' distance), and the caller hears so. Measured
    at 128 px: the materials' crops 0.05-0.23, unseen photographs 0.88 and more, the threshold 0.5."""
    from pathlib import Path

    from core.common.images import load_rgb

    root = Path(__file__).resolve().parents[2]
    vae = load_texture_vae(root / "models" / "texture_vae" / "materials.safetensors", "cpu")
    rust = np.ascontiguousarray(load_rgb(root / "models" / "exemplars" / "render_rusty_metal.png")[:128, :128])
    bricks = np.ascontiguousarray(load_rgb(root / "data" / "texture_photos" / "validate_brick_courses.jpg")[:128, :128])
    heard: list[str] = []
    vae.vary(rust, 0.5, seed=0, refine_steps=10, warn=heard.append)
    assert heard == []
    vae.vary(bricks, 0.5, seed=0, refine_steps=10, warn=heard.append)
    assert len(heard) == 1 and "far from the materials this model knows" in heard[0]
    assert heard[0].startswith("The image") and "render_rusty_metal" in heard[0]
    heard.clear()
    vae.blend([rust, bricks], 0.5, refine_steps=10, warn=heard.append)
    assert len(heard) == 1 and heard[0].startswith("Image 2 is far")
    heard.clear()
    vae.vary(bricks, 0.5, seed=0, warn=heard.append)  # the one-pass reading measures nothing
    assert heard == []


def test_refinement_reports_progress_honours_cancel_and_refuses_bad_steps(vae):
    from core.texture_vae.ops import REFINE_SEED_CANDIDATES
    image = make_exemplar("wood", 32, seed=0)
    seen = []
    vae.vary(image, 0.5, refine_steps=3, progress=seen.append)
    # One bar: the decoder's seed first (one step per candidate), then the refinement's steps.
    n = REFINE_SEED_CANDIDATES
    assert [(p.step, p.total) for p in seen] == [(k, n + 3) for k in range(1, n + 4)]
    assert seen[0].message == "choosing the decoder's noise" and seen[-1].message == "refining the latents"
    token = CancelToken()
    token.cancel()
    with pytest.raises(JobCancelled):
        vae.vary(image, 0.5, refine_steps=3, cancel=token)
    for bad in (-1, 2.5, True, 5000, "3"):
        with pytest.raises(ValueError, match="refine steps"):
            vae.vary(image, 0.5, refine_steps=bad)
    # A blend refines each input: one progress bar over both, and the result moves
    seen.clear()
    other = make_exemplar("bricks", 32, seed=4)
    refined = vae.blend([image, other], 0.5, refine_steps=2, progress=seen.append)
    assert [(p.step, p.total) for p in seen] == [(k, n + 4) for k in range(1, n + 5)]
    assert not np.array_equal(refined, vae.blend([image, other], 0.5))


def test_variation_and_blend_jobs_refine_by_default_and_take_zero_for_the_one_pass_reading():
    from core.texture_vae.jobs import DEFAULT_REFINE_STEPS
    from core.worker.registry import load_family_jobs, validate_params

    load_family_jobs()
    vary = {"image": "a.png", "model": "m.safetensors"}
    assert validate_params("texture_vae.vary", vary)["refine_steps"] == DEFAULT_REFINE_STEPS > 0
    assert validate_params("texture_vae.vary", {**vary, "refine_steps": 0})["refine_steps"] == 0
    blend = {"images": ["a.png", "b.png"], "model": "m.safetensors"}
    assert validate_params("texture_vae.blend", blend)["refine_steps"] == DEFAULT_REFINE_STEPS


def test_refinement_that_runs_out_of_device_memory_finishes_on_the_cpu(vae, monkeypatch, one_thread):
    """A GPU's allocator error cannot be raised here: the device's own refinement stands in for it (it raises the
    error a full GPU raises), the CPU's is the real one."""
    from core.common.images import to_tensor
    image = make_exemplar("bricks", 32, seed=1)
    z, x = vae.encode(image), to_tensor(image)
    on_cpu = vae.refine(z, x, 2)
    real = type(vae)._refine_on

    def full_device(self, device, *args):
        if device.type != "cpu":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(self, device, *args)

    monkeypatch.setattr(type(vae), "_refine_on", full_device)
    monkeypatch.setattr(vae, "device", torch.device("cuda"))
    with pytest.warns(RuntimeWarning, match="ran out of memory; refining this image on the CPU"):
        assert torch.equal(vae.refine(z, x, 2), on_cpu)


def test_prior_step_and_mix_keep_unit_variance_noise():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(1, 6, 64, 64, generator=gen), torch.randn(1, 6, 64, 64, generator=gen)
    for s in (0.5, 1.0, 3.0):
        assert abs(float(prior_step(a, b, s, 4)[:, :4].std()) - 1.0) < 0.05
    half = renormalised_mix([a, b], [0.5, 0.5], 4)
    assert abs(float(half[:, :4].std()) - 1.0) < 0.05  # a plain average would have std 0.71
    assert torch.allclose(half[:, 4:], 0.5 * (a[:, 4:] + b[:, 4:]))  # logits mix linearly


def test_masked_blend_takes_each_sides_latents(vae):
    a, b = make_exemplar("bricks", 64, seed=0), make_exemplar("wood", 64, seed=0)
    mask = np.zeros((64, 64), np.float32)
    mask[:, 32:] = 1.0
    f = vae.downsample
    za, zb = vae.encode(a), vae.encode(b)
    m = torch.zeros(1, 1, 64 // f, 64 // f)
    m[..., 64 // f // 2:] = 1.0
    mixed = vae.mix_latents([za, zb], [1 - m, m])
    left, right = slice(0, 64 // f // 2 - 1), slice(64 // f // 2 + 1, None)
    assert torch.allclose(mixed[..., left], za[..., left]) and torch.allclose(mixed[..., right], zb[..., right])
    out = vae.blend([a, b], mask=mask)
    assert out.shape == (64, 64, 3) and np.isfinite(out).all()


def test_a_broken_config_is_refused(vae, generator_file, tmp_path):
    path = tmp_path / "m.safetensors"
    _train(generator_file, path, 1)
    tensors = load_file(str(path))
    config = read_checkpoint_config(path)["config"]
    bad = tmp_path / "bad.safetensors"
    save_checkpoint(bad, tensors, {"config": {**config, "materials": ["only_one"]}, "name": "bad"}, "texture_vae")
    with pytest.raises(CheckpointError, match="config is invalid"):
        load_texture_vae(bad, "cpu")
    missing = tmp_path / "missing.safetensors"
    save_checkpoint(missing, {k: v for k, v in tensors.items() if not k.startswith("encoder.head")},
                    {"config": config, "name": "missing"}, "texture_vae")
    with pytest.raises(CheckpointError):
        load_texture_vae(missing, "cpu")


def test_rebase_moves_onto_a_generator_trained_further(generator_file, tmp_path):
    path = tmp_path / "m.safetensors"
    _train(generator_file, path, 2)
    original = load_file(str(generator_file))
    arch = ConditionalGANConfig(**GAN).architecture()

    def generator(steps, shift):
        p = tmp_path / f"gan_{steps}.safetensors"
        save_checkpoint(p, {k: v + shift for k, v in original.items()},
                        {"architecture": arch, "materials": ["bricks", "wood"], "version": 2, "steps": steps},
                        "texture_gan")
        return p

    def run(gan, steps):
        train_gan_prior_vae(_exemplars(), gan, path, steps, config=GANPriorVAEConfig(**TINY), seed=5, rebase=True)
        return load_file(str(path)), read_checkpoint_config(path)

    tensors, config = run(generator(5, 0.25), 3)  # fewer steps than the state's generator (7): kept
    assert torch.equal(tensors["decoder.embedding"], original["embedding"]) and config["generator_steps"] == 7
    tensors, config = run(generator(9, 0.5), 4)  # trained further: the encoder moves onto it
    assert torch.equal(tensors["decoder.embedding"], original["embedding"] + 0.5) and config["generator_steps"] == 9
    assert config["steps"] == 4
    other_cfg = ConditionalGANConfig(**{**GAN, "local_dim": 5})  # a valid GAN of another architecture
    other_g, _ = build_conditional(other_cfg, 3)
    other = tmp_path / "other.safetensors"
    save_checkpoint(other, other_g.state_dict(), {"architecture": other_cfg.architecture(),
                                                  "materials": ["bricks", "wood"], "version": 2, "steps": 99},
                    "texture_gan")
    with pytest.raises(CheckpointError, match="architecture or materials"):
        run(other, 5)
    # The GAN grew cell patterns (conditional.grow_parameters): the encoder follows it onto the grown generator.
    grown_cfg = ConditionalGANConfig(**{**GAN, "cell_rank": 2})
    grown_g, _ = build_conditional(grown_cfg, 3)
    with torch.no_grad():
        grown_g.cell_patterns[-1].add_(0.1)
    grown_weights = {**grown_g.state_dict(), **{k: v + 0.5 for k, v in original.items()}}
    grown = tmp_path / "grown.safetensors"
    save_checkpoint(grown, grown_weights, {"architecture": grown_cfg.architecture(), "materials": ["bricks", "wood"],
                                           "version": 2, "steps": 11}, "texture_gan")
    tensors, config = run(grown, 6)
    assert config["generator_steps"] == 11 and config["config"]["gan"]["cell_rank"] == 2
    assert torch.equal(tensors["decoder.cell_patterns.1"], grown_weights["cell_patterns.1"])
    vae = load_texture_vae(path, "cpu")
    assert vae.config.gan["cell_rank"] == 2  # loads as the grown architecture
    # Then lattice inputs as well: the encoder follows again, and its decodings draw them (shifted per seed).
    lattice_cfg = ConditionalGANConfig(**{**GAN, "cell_rank": 2, "lattice_frequencies": ((0.125, 0.125),)})
    lattice_g, _ = build_conditional(lattice_cfg, 3)
    with torch.no_grad():
        lattice_g.lattice_gates[0].bias.add_(2.0)  # open for every material
    lattice_weights = {**lattice_g.state_dict(), **original}  # unshifted: an image that does not saturate
    lattice = tmp_path / "lattice.safetensors"
    save_checkpoint(lattice, lattice_weights, {"architecture": lattice_cfg.architecture(),
                                               "materials": ["bricks", "wood"], "version": 2, "steps": 13},
                    "texture_gan")
    tensors, config = run(lattice, 7)
    assert config["generator_steps"] == 13 and config["config"]["gan"]["lattice_frequencies"] == [[0.125, 0.125]]
    assert torch.equal(tensors["decoder.lattice_gates.0.bias"], lattice_weights["lattice_gates.0.bias"])
    vae = load_texture_vae(path, "cpu")
    image = _exemplars()[0][:32, :32]
    varied = vae.vary(image, 0.5, seed=1, width=32, height=32)
    assert varied.shape == (32, 32, 3) and varied.std() > 0.01  # an image, not a saturated one
    assert np.array_equal(varied, vae.vary(image, 0.5, seed=1, width=32, height=32))
    with torch.no_grad():  # the decoder without its lattice draws another image from the same latents
        vae.net.decoder.lattice_gates[0].bias.zero_()
    assert not np.allclose(vae.vary(image, 0.5, seed=1, width=32, height=32), varied, atol=1e-3)
    # Then its finest stages widened (conditional.widen_parameters): the encoder follows onto the wider decoder.
    from core.texture_gan.conditional import grow_parameters
    wide_cfg = ConditionalGANConfig(**{**GAN, "g_channels": (8, 6, 8), "cell_rank": 2,
                                       "lattice_frequencies": ((0.125, 0.125),)})
    wide_g, _ = build_conditional(wide_cfg, 3)
    wide_weights, _ = grow_parameters(lattice_weights, wide_g, lattice_cfg)
    wide = tmp_path / "wide.safetensors"
    save_checkpoint(wide, wide_weights, {"architecture": wide_cfg.architecture(), "materials": ["bricks", "wood"],
                                         "version": 2, "steps": 15}, "texture_gan")
    tensors, config = run(wide, 8)
    assert config["generator_steps"] == 15 and config["config"]["gan"]["g_channels"] == [8, 6, 8]
    assert torch.equal(tensors["decoder.stages.2.1.weight"], wide_weights["stages.2.1.weight"])
    assert load_texture_vae(path, "cpu").vary(image, 0.5, seed=1, width=32, height=32).shape == (32, 32, 3)


def test_a_resumed_training_takes_the_new_recipe_but_keeps_its_architecture(generator_file, tmp_path):
    path = tmp_path / "m.safetensors"
    _train(generator_file, path, 2)
    changed = GANPriorVAEConfig(**{**TINY, "base_channels": 8}, beta=0.5, stats_weight=0.0, augment_flips=False)
    train_gan_prior_vae(_exemplars(), generator_file, path, 3, config=changed, seed=5)
    config = read_checkpoint_config(path)["config"]
    assert config["beta"] == 0.5 and config["stats_weight"] == 0.0  # the recipe moves on
    assert config["augment_flips"] is False
    assert config["base_channels"] == 4  # the weights it trained keep their shapes
    assert isinstance(load_texture_vae(path, "cpu"), GANPriorVAE)


def test_the_encoders_crops_keep_their_orientation_without_flips():
    """``augment_flips`` off: every training crop is the exemplar as it is lit, never mirrored; on, some are."""
    from test_texture_gan_materials import _found_unflipped

    from core.texture_vae.gan_prior_train import LabelledCropSampler

    exemplar = np.random.default_rng(0).random((40, 40, 3), dtype=np.float32)  # a mirrored crop is found nowhere
    source = torch.from_numpy(exemplar.transpose(2, 0, 1).copy())
    for flips, expect_all in ((False, True), (True, False)):
        sampler = LabelledCropSampler([exemplar], 16, torch.Generator().manual_seed(1), "cpu", flips=flips)
        crops, labels = sampler.sample_labelled(24)
        found = [_found_unflipped(c, source) for c in crops]
        assert all(found) if expect_all else not all(found)
        assert labels.tolist() == [0] * 24


def test_the_model_file_holds_the_encoders_moving_average_and_a_resume_keeps_it(generator_file, tmp_path,
                                                                                  one_thread):
    from core.common.checkpoints import load_training_state
    from core.texture_vae.train import training_state_path

    averaged = GANPriorVAEConfig(**TINY, ema_decay=0.5)
    straight, resumed = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    train_gan_prior_vae(_exemplars(), generator_file, straight, 4, config=averaged, seed=5)
    train_gan_prior_vae(_exemplars(), generator_file, resumed, 2, config=averaged, seed=5)
    train_gan_prior_vae(_exemplars(), generator_file, resumed, 4, config=averaged, seed=5)
    a, b = load_file(str(straight)), load_file(str(resumed))
    assert [k for k in a if not torch.equal(a[k], b[k])] == []  # the state carries the average

    # A state trained without averaging starts its average at the encoder it trained: one step at decay 0.5
    # later, the file holds the mean of the encoder before and after that step.
    path = tmp_path / "m.safetensors"
    _train(generator_file, path, 2)
    before = load_training_state(training_state_path(path))["encoder"]
    train_gan_prior_vae(_exemplars(), generator_file, path, 3, config=averaged, seed=5)
    after = load_training_state(training_state_path(path))["encoder"]
    model = load_file(str(path))
    moved = [k for k in after if after[k].is_floating_point() and not torch.equal(before[k], after[k])]
    assert moved  # the step did train the encoder
    for k in moved:
        assert torch.allclose(model[f"encoder.{k}"], (before[k] + after[k]) / 2, atol=1e-6), k
        assert not torch.equal(model[f"encoder.{k}"], after[k])
    assert read_checkpoint_config(path)["config"]["ema_decay"] == 0.5
