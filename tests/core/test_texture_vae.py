"""Texture VAE: training, variations, blends, sizes, tiling, checkpoints, resume, bad inputs.

One tiny model (f=4, a few thousand weights) is overfit on two small procedural
exemplars once per module and shared by the behaviour tests.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.common import procedural
from core.common.checkpoints import CheckpointError, save_checkpoint
from core.common.device import pick_device
from core.common.images import ImageError, save_image
from core.common.jobs import CancelToken, JobCancelled
from core.common.quality import seam_score
from core.texture_vae import (
    TextureVAE, TextureVAEConfig, TextureVAENet, load_texture_vae, train_texture_vae,
)
from core.texture_vae.train import training_state_path

TINY = TextureVAEConfig(base_channels=8, channel_mult=(1, 2), latent_channels=4, crop_size=32, batch_size=4,
                        lr=3e-3, beta=0.01, stats_weight=0.05, variation_stats_weight=0.0)
STEPS = 100
# Everything here runs on NEURAL_TEXTURES_DEVICE (cpu unless `python build.py test --device cuda`).
# Determinism: on the CPU a seed gives bit-identical outputs and a resumed run bit-identical
# weights; on CUDA inference repeats are identical on one device, and resumed training equals
# an uninterrupted run within float tolerance (atomics in conv backward reorder sums).
DEVICE = pick_device()
ON_CPU = DEVICE.type == "cpu"
# Two routes to the same numbers (other shapes, repeated grids): float rounding on the CPU;
# bf16 autocast rounds per shape on CUDA.
ROUTE_ATOL = 1e-5 if ON_CPU else 5e-3


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())


def _wrap_vs_interior(rgb: np.ndarray) -> float:
    """Seam score of the wrap border over the worst interior boundary's (rolled to the border).

    The seam score alone depends on where structure (mortar lines, cell edges) happens
    to fall; a tileable image's wrap border is simply no worse than its inner boundaries.
    """
    h, w = rgb.shape[:2]
    interior = [seam_score(np.roll(rgb, (int(h * fy), int(w * fx)), (0, 1)))
                for fy, fx in ((0.5, 0.5), (0.25, 0.25), (0.33, 0.66), (0.66, 0.33), (0.75, 0.75))]
    return seam_score(rgb) / max(interior)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Other jobs share this machine's two cores; two OpenMP threads competing with
    # them spin-wait and run ~15x slower than one thread (measured).
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def exemplars():
    return [procedural.stones(64, seed=1), procedural.rust(64, seed=2)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, exemplars):
    out = tmp_path_factory.mktemp("vae") / "tiny.safetensors"
    history = []
    path = train_texture_vae(exemplars, out, STEPS, config=TINY, seed=3, checkpoint_every=1000,
                             progress=lambda p: history.append(p))
    return path, history


@pytest.fixture(scope="module")
def model(trained):
    return load_texture_vae(trained[0])


def test_training_reduces_reconstruction_error(trained, model, exemplars):
    path, history = trained
    assert [p.step for p in history] == list(range(1, STEPS + 1))
    assert history[-1].preview is not None and history[-1].preview.shape[-1] == 3
    first = np.mean([p.losses["l1"] for p in history[:5]])
    last = np.mean([p.losses["l1"] for p in history[-5:]])
    assert last < 0.85 * first, (first, last)
    torch.manual_seed(3)  # the same initial weights the training started from
    untrained = TextureVAE(TextureVAENet(TINY), TINY, device=DEVICE)
    for ex in exemplars:
        assert _mad(model.reconstruct(ex), ex) < 0.75 * _mad(untrained.reconstruct(ex), ex)


def test_vary_strength_zero_is_reconstruction_and_distance_grows(model, exemplars):
    image = exemplars[0]
    recon = model.reconstruct(image)
    np.testing.assert_array_equal(model.vary(image, 0.0, seed=5), recon)
    strengths = [0.25, 0.5, 1.0, 2.0, 4.0]
    # Mean over three seeds of the mean absolute distance to the reconstruction.
    distances = [np.mean([_mad(model.vary(image, s, seed=seed), recon) for seed in (0, 1, 2)]) for s in strengths]
    assert distances[0] > 1e-4
    assert all(b > a for a, b in zip(distances, distances[1:])), distances


def test_vary_is_deterministic_per_seed(model, exemplars):
    a = model.vary(exemplars[0], 1.0, seed=11)
    np.testing.assert_array_equal(a, model.vary(exemplars[0], 1.0, seed=11))
    assert _mad(a, model.vary(exemplars[0], 1.0, seed=12)) > 1e-4


def test_blend_endpoints_match_reconstructions(model, exemplars):
    a, b = exemplars
    rec_a, rec_b = model.reconstruct(a), model.reconstruct(b)
    np.testing.assert_allclose(model.blend([a, b], t=0.0), rec_a, atol=1e-6)
    np.testing.assert_allclose(model.blend([a, b], t=1.0), rec_b, atol=1e-6)
    mid = model.blend([a, b], t=0.5)
    assert _mad(mid, rec_a) > 1e-3 and _mad(mid, rec_b) > 1e-3
    # N images with weights: a one-hot weight is that image's reconstruction.
    np.testing.assert_allclose(model.blend([a, b, a], weights=[0, 2, 0]), rec_b, atol=ROUTE_ATOL)


def test_masked_blend_follows_the_mask(model, exemplars):
    a, b = exemplars
    rec_a, rec_b = model.reconstruct(a), model.reconstruct(b)
    h, w = a.shape[:2]
    mask = np.zeros((h, w), np.float32)
    mask[:, w // 2:] = 1.0  # left shows A, right shows B
    out = model.blend([a, b], mask=mask, t=0.9)  # t is ignored with a mask
    left, right = slice(w // 8, 3 * w // 8), slice(5 * w // 8, 7 * w // 8)  # away from both borders
    assert _mad(out[:, left], rec_a[:, left]) < 0.5 * _mad(out[:, left], rec_b[:, left])
    assert _mad(out[:, right], rec_b[:, right]) < 0.5 * _mad(out[:, right], rec_a[:, right])
    # A mask of another size is resized to the latent grid: same result for a 2x larger painted mask.
    big = np.zeros((2 * h, 2 * w), np.float32)
    big[:, w:] = 1.0
    np.testing.assert_allclose(model.blend([a, b], mask=big), out, atol=ROUTE_ATOL)


def test_outputs_tile_and_come_in_any_size(model, exemplars):
    image = exemplars[0]
    for width, height in ((37, 23), (64, 64), (97, 50), (11, 8)):
        out = model.vary(image, 1.0, seed=0, width=width, height=height)
        assert out.shape == (height, width, 3) and out.dtype == np.float32
        assert 0.0 <= out.min() and out.max() <= 1.0
    odd = np.ascontiguousarray(image[:45, :31])
    assert model.reconstruct(odd).shape == (45, 31, 3)
    latents = model.encode(image)
    assert tuple(latents.shape) == (1, 4, 16, 16)
    decoded = model.decode(latents, width=75, height=41)
    assert decoded.shape == (41, 75, 3)
    # The wrap border looks like any other pixel boundary; a non-tiling crop's does not.
    for out in (decoded, model.blend(exemplars, t=0.5, width=53, height=61),
                model.vary(image, 2.0, seed=4, width=90, height=70), model.reconstruct(exemplars[1])):
        assert seam_score(out) < 2.0 and _wrap_vs_interior(out) < 1.25, (seam_score(out), _wrap_vs_interior(out))
    crop = procedural.rust(96, seed=5)[:70, :50]
    assert _wrap_vs_interior(crop) > 2.0
    # Larger than the input: strength 0 repeats the reconstruction, a variation does not repeat.
    same = model.vary(image, 0.0, width=128, height=64)
    np.testing.assert_allclose(same[:, :64], same[:, 64:], atol=ROUTE_ATOL)
    varied = model.vary(image, 1.0, seed=1, width=128, height=64)
    assert _mad(varied[:, :64], varied[:, 64:]) > 1e-3


def test_checkpoint_round_trip(trained, model, exemplars, tmp_path):
    path, _ = trained
    assert path.with_suffix(".json").exists()
    again = TextureVAE.load(path)
    assert again.config == TINY and again.name == "tiny"
    assert again.metadata["kind"] == "texture_vae" and again.metadata["steps"] == STEPS
    np.testing.assert_array_equal(again.vary(exemplars[1], 0.7, seed=2), model.vary(exemplars[1], 0.7, seed=2))
    copy = tmp_path / "copy.safetensors"
    save_checkpoint(copy, model.net.state_dict(), {"config": TINY.to_dict(), "name": "copy"}, kind="texture_vae")
    np.testing.assert_array_equal(load_texture_vae(copy).reconstruct(exemplars[0]), model.reconstruct(exemplars[0]))


def test_resume_reproduces_uninterrupted_training(exemplars, tmp_path):
    cfg = TextureVAEConfig(base_channels=4, channel_mult=(1, 2), latent_channels=2, crop_size=16, batch_size=2)
    full = train_texture_vae(exemplars, tmp_path / "full.safetensors", 6, config=cfg, seed=9, checkpoint_every=2)
    token = CancelToken()

    def cancel_after_three(p):
        if p.step == 3:
            token.cancel()

    with pytest.raises(JobCancelled):
        train_texture_vae(exemplars, tmp_path / "cut.safetensors", 6, config=cfg, seed=9, checkpoint_every=2,
                          progress=cancel_after_three, cancel=token)
    assert training_state_path(tmp_path / "cut.safetensors").exists()
    steps_seen = []
    resumed = train_texture_vae(exemplars, tmp_path / "cut.safetensors", 6, config=cfg, seed=9,
                                checkpoint_every=2, progress=lambda p: steps_seen.append(p.step))
    assert steps_seen == [4, 5, 6]
    a, b = load_texture_vae(full).net.state_dict(), load_texture_vae(resumed).net.state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0 if ON_CPU else 2e-3)
    # A training state from other settings is not silently reused.
    with pytest.raises(ValueError, match="resume=False"):
        train_texture_vae(exemplars, tmp_path / "cut.safetensors", 6, config=cfg, seed=10)


def test_bad_inputs_are_rejected_clearly(model, exemplars, tmp_path):
    corrupt = tmp_path / "broken.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20)
    with pytest.raises(ImageError, match="broken.png"):
        train_texture_vae([corrupt], tmp_path / "m.safetensors", 2, config=TINY)
    with pytest.raises(ImageError):
        model.vary(np.zeros((4, 4, 3), np.float32), 1.0)
    wrong = tmp_path / "gan.safetensors"
    save_checkpoint(wrong, {"w": torch.zeros(2)}, {"config": {}}, kind="texture_gan")
    with pytest.raises(CheckpointError, match="texture_gan"):
        load_texture_vae(wrong)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file at all")
    with pytest.raises(CheckpointError):
        load_texture_vae(garbage)
    a, b = exemplars
    with pytest.raises(ValueError, match="strength"):
        model.vary(a, -0.5)
    for bad_t in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            model.blend([a, b], t=bad_t)
    with pytest.raises(ValueError, match="mask"):
        model.blend([a, b], mask=np.full((8, 8), 2.0, np.float32))
    with pytest.raises(ValueError, match="mask"):
        model.blend([a, b], mask=np.zeros((8, 8, 8, 1), np.float32))
    with pytest.raises(ValueError, match="exactly two"):
        model.blend([a, b, a], mask=np.zeros((8, 8), np.float32))
    with pytest.raises(ValueError, match="weights"):
        model.blend([a, b], weights=[0.0, 0.0])
    with pytest.raises(ValueError, match="latents"):
        model.decode(torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="at least 8x8"):
        model.vary(a, 1.0, width=5, height=9)
    with pytest.raises(ValueError, match="steps"):
        train_texture_vae([a], tmp_path / "m.safetensors", 0, config=TINY)


def test_cli_train_vary_blend(exemplars, tmp_path):
    import argparse

    from core.cli import vae as vae_cli
    from core.common.images import load_rgb

    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default=DEVICE.type)
    vae_cli.register(parser.add_subparsers(dest="family", required=True))
    paths = []
    for i, ex in enumerate(exemplars):
        paths.append(tmp_path / f"ex{i}.png")
        save_image(paths[-1], ex)
    model_path = tmp_path / "cli.safetensors"

    def run(*argv):
        args = parser.parse_args(list(argv))
        return args.func(args)

    assert run("vae", "train", "--exemplar", *map(str, paths), "--out", str(model_path), "--steps", "2",
               "--seed", "1", "--beta", "0.1", "--crop", "32", "--batch", "2", "--channels", "8", "--recipe", "plain") == 0
    assert load_texture_vae(model_path).config.beta == 0.1
    out = tmp_path / "vary.png"
    assert run("vae", "vary", "--model", str(model_path), "--input", str(paths[0]), "--strength", "1.5",
               "--seed", "4", "--out", str(out), "--width", "33", "--height", "20") == 0
    assert load_rgb(out).shape == (20, 33, 3)
    one_pass = tmp_path / "one_pass.png"
    assert run("vae", "vary", "--model", str(model_path), "--input", str(paths[0]), "--strength", "1.5",
               "--seed", "4", "--out", str(one_pass), "--width", "33", "--height", "20", "--refine-steps", "0") == 0
    assert np.abs(load_rgb(one_pass) - load_rgb(out)).max() > 1 / 255  # the flag reaches the model...
    from core.texture_vae.jobs import DEFAULT_REFINE_STEPS
    assert parser.parse_args(["vae", "vary", "--model", "m", "--input", "i", "--out", "o"]).refine_steps \
        == DEFAULT_REFINE_STEPS > 0  # ... and by default the CLI refines as the panel does
    mask = tmp_path / "mask.png"
    save_image(mask, np.tile(np.linspace(0, 1, 40, dtype=np.float32)[None, :, None], (30, 1, 3)))
    blended = tmp_path / "blend.png"
    assert run("vae", "blend", "--model", str(model_path), "--a", str(paths[0]), "--b", str(paths[1]),
               "--mask", str(mask), "--out", str(blended)) == 0
    assert load_rgb(blended).shape == exemplars[0].shape
    assert run("vae", "blend", "--model", str(model_path), "--a", str(paths[0]), "--b", str(paths[1]),
               "--mask", str(mask), "--out", str(blended), "--refine-steps", "1") == 0


def test_crops_cut_from_flipped_exemplars_are_the_crops_flipped():
    """The sampler cuts a flipped crop as a view of a flipped copy of its exemplar (one stack per batch, not a
    flip per crop): the pixels and the random stream are those of cutting the crop and flipping it."""
    from core.texture_vae.train import CropSampler

    exemplars = [procedural.make_exemplar("bricks", 40, seed=0), procedural.make_exemplar("wood", 24, seed=0)]
    sampler = CropSampler(exemplars, 32, torch.Generator().manual_seed(3))
    gen = torch.Generator().manual_seed(3)
    expected = []
    for _ in range(100):  # the draws as the sampler makes them, each crop cut and flipped
        index = int(torch.randint(len(sampler.images), (1,), generator=gen))
        img = sampler.images[index]
        top = int(torch.randint(img.shape[1] - 32 + 1, (1,), generator=gen))
        left = int(torch.randint(img.shape[2] - 32 + 1, (1,), generator=gen))
        across, down = (torch.rand(2, generator=gen, device="cpu") < 0.5).tolist()
        crop = img[:, top:top + 32, left:left + 32]
        crop = crop.flip(2) if across else crop
        expected.append(crop.flip(1) if down else crop)
    assert torch.equal(sampler.sample(100), torch.stack(expected))
    assert torch.equal(sampler.generator.get_state(), gen.get_state())
