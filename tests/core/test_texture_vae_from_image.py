"""*Train From Image* for a Variation Model (core/texture_vae/from_image.py): a materials GAN fine-tuned to the
image as the decoder, a trained encoder fine-tuned onto it; resumable, refused early when it cannot work, and
reachable from the worker's job and the CLI. Tiny stand-ins for the bundled pair keep it to seconds."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from core.common.checkpoints import CheckpointError, read_checkpoint_config
from core.common.images import save_image
from core.common.procedural import make_exemplar
from core.library import list_models
from core.texture_gan.conditional import ConditionalGANConfig
from core.texture_gan.distill import train_material_gan
from core.texture_vae import load_texture_vae, train_texture_vae
from core.texture_vae.from_image import generator_path, phase_steps, train_variation_model, variation_config
from core.texture_vae.gan_prior import GANPriorVAEConfig
from core.texture_vae.gan_prior_train import encoder_start, train_gan_prior_vae

NAMES = ["bricks", "wood"]
GAN = dict(g_channels=(16, 8, 4), g_convs=(1, 1, 1), d_channels=(8, 16), local_dim=4, global_dim=4, periodic_dim=2,
           crop_size=32, batch_size=2, stats_loss_weight=0.0, adversarial_from=2)
VAE = dict(base_channels=4, encoder_mult=(1, 2), crop_size=16, batch_size=2, vgg_samples=1)
# The fine-tune's sizes (its architecture is the source's): small crops, no VGG19 terms.
FINE_TUNE = dict(crop_size=32, batch_size=2, stats_loss_weight=0.0, exemplar_stats_weight=0.0, adversarial_from=2)


@pytest.fixture(scope="module")
def bundled_pair(tmp_path_factory):
    """A tiny materials GAN and the GAN-prior VAE trained onto it: the bundled pair's stand-ins."""
    folder = tmp_path_factory.mktemp("bundled")
    exemplars = [make_exemplar(n, 64, seed=0) for n in NAMES]
    gan = folder / "materials_gan.safetensors"
    train_material_gan(exemplars, NAMES, gan, steps=2, config=ConditionalGANConfig(n_materials=2, **GAN), seed=3,
                       tiles=0)
    vae = folder / "materials_vae.safetensors"
    train_gan_prior_vae(exemplars, gan, vae, 3, config=GANPriorVAEConfig(**VAE), seed=5)
    return gan, vae


@pytest.fixture
def stones_file(tmp_path):
    path = tmp_path / "my_stones.png"
    save_image(path, make_exemplar("stones", 64, seed=1))
    return path


def _train(stones_file, out, steps, bundled_pair, **kw):
    gan, vae = bundled_pair
    return train_variation_model([stones_file], out, steps, seed=0, start_from=gan, start_from_vae=vae,
                                 generator_config=FINE_TUNE, tiles=0, **kw)


def test_a_variation_model_of_an_image_decodes_through_the_fine_tuned_generator(bundled_pair, stones_file, tmp_path):
    """Three quarters of the steps fine-tune the generator (its own file beside the model, not listed as a model),
    the rest train an encoder that starts from the bundled one's weights: after a step the encoder is near those
    and far from a fresh one; the model's decoder is the fine-tuned generator, its one material the file's name;
    it varies."""
    out = tmp_path / "lib" / "stones_var.safetensors"
    out.parent.mkdir()
    _train(stones_file, out, 4, bundled_pair)
    model = load_texture_vae(out, "cpu")
    assert model.config.materials == ["my_stones"] and model.metadata["steps"] == 1
    generator = generator_path(out)
    assert generator.name == "stones_var.generator.safetensors"
    assert read_checkpoint_config(generator)["steps"] == 3 and model.metadata["generator_steps"] == 3
    weights = load_file(str(out))
    tuned = load_file(str(generator))
    assert all(torch.equal(weights[f"decoder.{k}"].float(), v.float()) for k, v in tuned.items())

    _, start = encoder_start(bundled_pair[1], read_checkpoint_config(generator)["architecture"], 1)
    fresh = load_texture_vae(_fresh_encoder(tmp_path, bundled_pair, stones_file), "cpu")
    body = [k for k in start if not k.startswith("head.")]
    near = sum((weights[f"encoder.{k}"].float() - start[k]).abs().mean() for k in body)
    far = sum((fresh.net.encoder.state_dict()[k].float() - start[k]).abs().mean() for k in body)
    assert near < 0.2 * far, (near, far)

    listed = [m.path.name for m in list_models([out.parent])]
    assert listed == ["stones_var.safetensors"]
    varied = model.vary(make_exemplar("stones", 64, seed=1), 0.5, seed=1, refine_steps=0)
    assert varied.shape == (64, 64, 3) and varied.std() > 0.02


def _fresh_encoder(tmp_path, bundled_pair, stones_file):
    """The same recipe from random encoder weights (the comparison for 'starts from the bundled encoder')."""
    gan = tmp_path / "fresh_gan.safetensors"
    from core.texture_gan.distill import train_one_material
    train_one_material([stones_file], gan, 2, config=FINE_TUNE, seed=0, tiles=0, start_from=bundled_pair[0])
    arch = read_checkpoint_config(gan)["architecture"]
    fields, _ = encoder_start(bundled_pair[1], arch, 1)
    path = tmp_path / "fresh_vae.safetensors"
    train_gan_prior_vae([stones_file], gan, path, 2, seed=0,
                        config=GANPriorVAEConfig.from_dict({**fields, "gan": arch, "materials": ["my_stones"]}))
    return path


def test_a_resumed_variation_model_trains_its_generator_on_and_moves_onto_it(bundled_pair, stones_file, tmp_path):
    out = tmp_path / "v.safetensors"
    _train(stones_file, out, 4, bundled_pair)
    _train(stones_file, out, 8, bundled_pair)
    model = load_texture_vae(out, "cpu")
    assert model.metadata["steps"] == 2 and model.metadata["generator_steps"] == 6
    assert read_checkpoint_config(generator_path(out))["steps"] == 6
    _train(stones_file, out, 4, bundled_pair, resume=False)  # starts over
    assert load_texture_vae(out, "cpu").metadata["generator_steps"] == 3


def test_a_variation_model_is_refused_before_any_step_when_it_cannot_train(bundled_pair, stones_file, tmp_path):
    with pytest.raises(ValueError, match="at least 2 steps"):
        phase_steps(1)
    assert [phase_steps(n) for n in (2, 4, 400, 2000)] == [(1, 1), (3, 1), (300, 100), (1500, 500)]
    with pytest.raises(ValueError, match="channel_mult"):
        variation_config({"channel_mult": [1, 2]})
    with pytest.raises(ValueError, match="crop_size"):
        variation_config({"crop_size": 33}, bundled_pair[1])
    assert variation_config({"beta": 0.02}, bundled_pair[1]) == {"beta": 0.02}
    missing = tmp_path / "gone.safetensors"
    with pytest.raises(FileNotFoundError, match="nothing to start from"):
        train_variation_model([stones_file], tmp_path / "m.safetensors", 4, start_from=missing,
                              start_from_vae=bundled_pair[1])
    plain = tmp_path / "plain.safetensors"  # a plain VAE's training under the same name
    from core.texture_vae import TextureVAEConfig
    train_texture_vae([stones_file], plain, 1, config=TextureVAEConfig(base_channels=4, channel_mult=(1, 2),
                                                                       latent_channels=4, crop_size=32, batch_size=1))
    with pytest.raises(CheckpointError, match="plain VAE"):
        _train(stones_file, plain, 4, bundled_pair)
    assert not generator_path(plain).exists()  # refused before the generator's phase


def test_a_variation_model_cancelled_in_its_encoder_phase_keeps_both_parts_and_resumes(bundled_pair, stones_file,
                                                                                       tmp_path):
    """Cancel while the encoder trains: the generator is whole, the encoder's checkpoint is the model; the next
    run (same steps) trains only the rest. Progress runs over the whole run's steps through both phases."""
    from core.common.jobs import CancelToken, JobCancelled

    cancel, seen = CancelToken(), []

    def progress(p):
        seen.append((p.step, p.total, p.message))
        if p.message.startswith("training the encoder") and p.step >= 3:
            cancel.cancel()

    out = tmp_path / "c.safetensors"
    with pytest.raises(JobCancelled):
        _train(stones_file, out, 6, bundled_pair, progress=progress, cancel=cancel)
    assert read_checkpoint_config(generator_path(out))["steps"] == 4
    stopped = load_texture_vae(out, "cpu").metadata["steps"]
    assert 0 <= stopped < 2
    assert all(total == 6 for _, total, _ in seen) and seen[0][2].startswith("fine-tuning the generator")
    _train(stones_file, out, 6, bundled_pair)
    assert load_texture_vae(out, "cpu").metadata["steps"] == 2


def test_a_variation_model_of_two_images_has_a_material_each_and_blends_them(bundled_pair, tmp_path):
    """Two exemplars: two materials (the files' names), the encoder's logits for each learnt from fresh rows; a
    blend through a mask keeps each side's look where the mask puts it."""
    import numpy as np

    paths = []
    for name, kind in (("rough_stones", "stones"), ("old_wood", "wood")):
        paths.append(tmp_path / f"{name}.png")
        save_image(paths[-1], make_exemplar(kind, 64, seed=2))
    out = tmp_path / "pair.safetensors"
    gan, vae = bundled_pair
    train_variation_model(paths, out, 4, seed=0, start_from=gan, start_from_vae=vae, generator_config=FINE_TUNE,
                          tiles=0)
    model = load_texture_vae(out, "cpu")
    assert model.config.materials == ["rough_stones", "old_wood"]
    a, b = make_exemplar("stones", 64, seed=2), make_exemplar("wood", 64, seed=2)
    mask = np.zeros((64, 64), np.float32)
    mask[:, 32:] = 1.0
    blended = model.blend([a, b], mask=mask, refine_steps=0)
    assert blended.shape == (64, 64, 3) and np.isfinite(blended).all()
    left, right = model.blend([a, b], t=0.0, refine_steps=0), model.blend([a, b], t=1.0, refine_steps=0)
    # each half of the masked blend is nearer the pure side it shows than the other
    d = lambda x, y: float(np.abs(x - y).mean())  # noqa: E731
    assert d(blended[:, :24], left[:, :24]) < d(blended[:, :24], right[:, :24])
    assert d(blended[:, 40:], right[:, 40:]) < d(blended[:, 40:], left[:, 40:])
