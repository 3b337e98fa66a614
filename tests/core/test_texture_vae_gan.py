"""The sharp texture VAE (VAE-GAN training): resumable, loads as a texture VAE, variations and blends behave."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from core.common.procedural import make_exemplar
from core.texture_vae import load_texture_vae
from core.texture_vae.vaegan import VAEGANConfig, train_vae_gan

TINY = dict(base_channels=4, channel_mult=(1, 2), latent_channels=2, crop_size=16, batch_size=2,
            stats_features="random", adversarial_from=2, d_channels=(4, 8))


def _exemplars():
    return [make_exemplar("bricks", 48, seed=0), make_exemplar("wood", 48, seed=0)]


def _train(path, steps, **kw):
    return train_vae_gan(_exemplars(), path, steps, config=VAEGANConfig(**TINY), seed=5, **kw)


@pytest.fixture(scope="module")
def vae(tmp_path_factory):
    path = tmp_path_factory.mktemp("vaegan") / "m.safetensors"
    _train(path, 12)
    return load_texture_vae(path, "cpu")


def test_resume_is_bit_identical(tmp_path):
    straight, resumed = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    _train(straight, 4)  # the adversarial term starts at step 2: the discriminator is resumed too
    _train(resumed, 2)
    _train(resumed, 4)
    a, b = load_file(str(straight)), load_file(str(resumed))
    assert all(torch.equal(a[k], b[k]) for k in a)
    sa = load_file(str(tmp_path / "a.train.safetensors"))
    sb = load_file(str(tmp_path / "b.train.safetensors"))
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_variation_strength_is_monotone_in_the_change(vae):
    image = make_exemplar("bricks", 48, seed=1)
    for seed in range(3):
        base = vae.vary(image, 0.0, seed=seed)
        changes = [float(np.abs(vae.vary(image, s, seed=seed) - base).mean()) for s in (0.25, 0.5, 1.0, 2.0)]
        assert changes[0] > 0
        assert all(b > a for a, b in zip(changes, changes[1:])), changes


def test_masked_blend_keeps_each_side(vae):
    a, b = make_exemplar("bricks", 48, seed=0), make_exemplar("wood", 48, seed=0)
    mask = np.zeros((48, 48), np.float32)
    mask[:, 24:] = 1.0
    out = vae.blend([a, b], mask=mask)
    ra, rb = vae.reconstruct(a), vae.reconstruct(b)
    left, right = slice(0, 16), slice(32, 48)  # away from the mask's edge (the decoder's reach)
    assert np.abs(out[:, left] - ra[:, left]).mean() < np.abs(out[:, left] - rb[:, left]).mean()
    assert np.abs(out[:, right] - rb[:, right]).mean() < np.abs(out[:, right] - ra[:, right]).mean()


def test_minutes_budget_stops_with_a_checkpoint(tmp_path):
    path = tmp_path / "m.safetensors"
    assert _train(path, None, minutes=0.0)["steps"] == 0
    assert load_texture_vae(path, "cpu").metadata["steps"] == 0
