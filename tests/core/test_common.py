"""The shared core pieces: images, checkpoints, quality measures, devices, jobs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.common import checkpoints as ck
from core.common import images as im
from core.common import procedural, quality
from core.common.device import pick_device, seeded_generator
from core.common.jobs import CancelToken, JobCancelled, Progress

ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- images

def test_png_roundtrip_8_and_16_bit(tmp_path):
    rgb = np.random.default_rng(0).random((37, 53, 3)).astype(np.float32)
    for depth, tol in ((8, 0.5 / 255 + 1e-6), (16, 0.5 / 65535 + 1e-6)):
        path = im.save_image(tmp_path / f"x{depth}.png", rgb, bit_depth=depth)
        assert np.abs(Image.open(path).convert("RGB").size[0] - 53) == 0
        back = im.load_image(path)
        assert back.rgb.shape == (37, 53, 3)
        if depth == 8:
            assert np.abs(back.rgb - rgb).max() <= tol


def test_grayscale_16bit_keeps_precision_and_becomes_rgb(tmp_path):
    grey = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)
    Image.fromarray(grey).save(tmp_path / "g16.png")
    data = im.load_image(tmp_path / "g16.png")
    assert data.bit_depth == 16 and data.rgb.shape == (64, 64, 3)
    np.testing.assert_allclose(data.rgb[..., 0], grey / 65535.0, atol=1e-6)
    assert np.array_equal(data.rgb[..., 0], data.rgb[..., 2])


def test_rgba_alpha_and_palette(tmp_path):
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = np.arange(16, dtype=np.uint8)[None, :] * 16
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    data = im.load_image(tmp_path / "a.png")
    assert data.alpha is not None and data.alpha.shape == (16, 16)
    np.testing.assert_allclose(data.alpha[0], np.arange(16) * 16 / 255, atol=1e-6)
    Image.fromarray(rgba[..., :3], "RGB").convert("P").save(tmp_path / "p.png")
    assert im.load_image(tmp_path / "p.png").rgb.shape == (16, 16, 3)


def test_exr_and_npy_are_linear_and_roundtrip(tmp_path):
    pytest.importorskip("OpenEXR")
    lin = np.random.default_rng(1).random((20, 24, 3)).astype(np.float32) * 4.0  # HDR values > 1
    for name in ("f.exr", "f.npy"):
        im.save_image(tmp_path / name, im.image_from_array(lin, "linear"))
        data = im.load_image(tmp_path / name)
        assert data.colorspace == "linear"
        np.testing.assert_allclose(data.rgb, lin, rtol=1e-6)
    srgb = im.to_srgb(data)
    assert srgb.colorspace == "srgb" and srgb.rgb.max() <= 1.0


def test_colour_conversions_invert():
    x = np.linspace(0, 1, 101, dtype=np.float32)
    np.testing.assert_allclose(im.linear_to_srgb(im.srgb_to_linear(x)), x, atol=1e-5)
    assert abs(float(im.srgb_to_linear(np.float32(0.5))) - 0.21404) < 1e-4


@pytest.mark.parametrize("content, message", [
    (b"", "empty"),
    (b"\x89PNG\r\n\x1a\n" + b"garbage" * 10, "could not be read|not an image"),
    (b"hello world, not an image at all", "not an image"),
])
def test_corrupt_files_give_clear_errors(tmp_path, content, message):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(im.ImageError, match=message):
        im.load_image(path)


def test_truncated_png_and_missing_file(tmp_path):
    good = im.save_image(tmp_path / "g.png", np.random.default_rng(0).random((64, 64, 3)))
    data = good.read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(im.ImageError):
        im.load_image(tmp_path / "t.png")
    with pytest.raises(im.ImageError, match="not found"):
        im.load_image(tmp_path / "nope.png")


def test_oversized_and_tiny_images_are_rejected_before_decoding(tmp_path):
    Image.new("RGB", (300, 300)).save(tmp_path / "big.png")
    with pytest.raises(im.ImageError, match="more than the limit"):
        im.load_image(tmp_path / "big.png", max_pixels=200 * 200)
    Image.new("RGB", (4, 4)).save(tmp_path / "tiny.png")
    with pytest.raises(im.ImageError, match="at least"):
        im.load_image(tmp_path / "tiny.png")


def test_nan_arrays_rejected():
    a = np.zeros((16, 16, 3), np.float32)
    a[3, 3, 1] = np.nan
    with pytest.raises(im.ImageError, match="NaN"):
        im.image_from_array(a)


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path):
    im.save_image(tmp_path / "o.png", np.zeros((8, 8, 3)))
    assert [p.name for p in tmp_path.iterdir()] == ["o.png"]
    with pytest.raises(im.ImageError, match="unsupported extension"):
        im.save_image(tmp_path / "o.xyz", np.zeros((8, 8, 3)))


# --------------------------------------------------------------------------- checkpoints

def test_checkpoint_roundtrip_and_sidecar_json(tmp_path):
    tensors = {"w": torch.randn(3, 4), "b": torch.arange(5)}
    path = ck.save_checkpoint(tmp_path / "m.safetensors", tensors, {"width": 8}, kind="texture_gan")
    loaded, config = ck.load_checkpoint(path, expected_kind="texture_gan")
    assert torch.equal(loaded["w"], tensors["w"]) and torch.equal(loaded["b"], tensors["b"])
    assert config["width"] == 8 and config["kind"] == "texture_gan"
    assert json.loads((tmp_path / "m.json").read_text())["width"] == 8
    assert ck.read_checkpoint_config(path)["format_version"] == ck.FORMAT_VERSION


def test_wrong_kind_corrupt_and_pickled_checkpoints_are_refused(tmp_path):
    path = ck.save_checkpoint(tmp_path / "m.safetensors", {"w": torch.ones(2)}, {}, kind="texture_vae")
    with pytest.raises(ck.CheckpointError, match="texture_vae"):
        ck.load_checkpoint(path, expected_kind="texture_gan")
    blob = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(blob[: len(blob) - 5])
    with pytest.raises(ck.CheckpointError, match="corrupt|truncated"):
        ck.load_checkpoint(tmp_path / "cut.safetensors")
    torch.save({"w": torch.ones(2)}, tmp_path / "p.safetensors")  # a zip pickle under the wrong name
    with pytest.raises(ck.CheckpointError, match="pickle"):
        ck.load_checkpoint(tmp_path / "p.safetensors")
    from safetensors.torch import save_file
    save_file({"w": torch.ones(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(ck.CheckpointError, match="not a model saved by this add-on"):
        ck.load_checkpoint(tmp_path / "foreign.safetensors")


def test_training_state_roundtrip_with_optimizer_and_rng(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    gen = seeded_generator(5)
    torch.rand(3, generator=gen)
    state = {"step": 7, "optimizer": opt.state_dict(), "rng": ck.rng_state(gen), "names": ("a", "b"), "none": None}
    ck.save_training_state(tmp_path / "s.train.safetensors", state)
    back = ck.load_training_state(tmp_path / "s.train.safetensors")
    assert back["step"] == 7 and back["names"] == ("a", "b") and back["none"] is None
    opt2 = torch.optim.Adam(model.parameters(), lr=1e-3)
    opt2.load_state_dict(back["optimizer"])
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    gen2 = torch.Generator()
    ck.restore_rng_state(back["rng"], gen2)
    assert torch.equal(torch.rand(3, generator=gen2), torch.rand(3, generator=gen))


# --------------------------------------------------------------------------- quality

def _periodic_noise(size: int, seed: int) -> np.ndarray:
    """Low-pass filtered white noise through the FFT: periodic by construction."""
    rng = np.random.default_rng(seed)
    f = np.fft.fftfreq(size)
    radius = np.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    spectrum = np.fft.fft2(rng.standard_normal((size, size, 3)), axes=(0, 1)) * np.exp(-(radius / 0.15) ** 2)[..., None]
    x = np.real(np.fft.ifft2(spectrum, axes=(0, 1)))
    return ((x - x.min()) / (x.max() - x.min())).astype(np.float32)


def test_pooled_seam_score_is_less_thrown_by_sparse_edges():
    """Exactly periodic bricks, rolled at random: a mortar joint on one image's border makes that image's score
    3-7; pooled over the images the border meets its peers on the same footing (crops of them still do not wrap)."""
    rng = np.random.default_rng(1)
    tiles = [np.roll(procedural.bricks(128, seed=s), tuple(rng.integers(0, 128, 2)), axis=(0, 1)) for s in range(64)]
    per_image = float(np.mean([quality.seam_score(t) for t in tiles]))
    pooled = quality.pooled_seam_score(tiles)
    assert pooled < 1.3 < per_image  # measured 1.08 and 1.65
    assert quality.pooled_seam_score([t[:, 5:101] for t in tiles]) > 2.2  # measured 2.80


def test_seam_score_tells_tileable_from_not():
    tileable = _periodic_noise(256, seed=2)
    assert abs(quality.seam_score(tileable) - 1.0) < 0.15  # one boundary vs all: a few % noise
    assert abs(quality.seam_score(np.roll(tileable, (40, 70), axis=(0, 1))) - 1.0) < 0.15
    assert quality.seam_score(tileable[:, 5:150]) > 2.0  # a crop of it no longer wraps
    assert quality.seam_score(procedural.bricks(128, seed=0)[:, 5:101]) > 2.0
    ramp = np.tile(np.linspace(0, 1, 64, dtype=np.float32)[None, :, None], (64, 1, 3))
    assert quality.seam_scores(ramp)[0] > 30  # a ramp jumps 1.0 across the wrap


def test_stats_distance_orders_similar_before_different():
    bricks_a = procedural.bricks(192, seed=0)
    bricks_b = procedural.bricks(192, seed=1)
    wood = procedural.wood(192, seed=0)
    same = quality.texture_stats_distance(bricks_a, bricks_b)
    other = quality.texture_stats_distance(bricks_a, wood)
    assert same < other / 3
    assert quality.texture_stats_distance(bricks_a, bricks_b) == same  # deterministic


def test_stats_distance_is_differentiable():
    net = quality.feature_net("cpu")
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    y = torch.rand(1, 3, 40, 40)
    loss = sum(quality.sliced_wasserstein(a, b, 16, torch.Generator().manual_seed(0)) for a, b in zip(net(x), net(y)))
    loss.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0



@pytest.mark.parametrize("sizes", [(12, 12), (12, 9)])  # equal sample counts, and quantile matching
def test_per_sample_sliced_wasserstein_equals_the_per_sample_loop(sizes):
    """The batched per-sample distance: the loop's values and gradients, and the same draws from its
    generator (a training that switches keeps its random stream)."""
    gen = torch.Generator().manual_seed(11)
    a = torch.randn(4, 6, sizes[0], sizes[0], generator=gen).requires_grad_()
    b = torch.randn(4, 6, sizes[1], sizes[1], generator=gen) * 2 + 1
    gen_loop, gen_batch = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    loop = torch.stack([quality.sliced_wasserstein(a[i:i + 1], b[i:i + 1], 16, gen_loop) for i in range(4)])
    batched = quality.sliced_wasserstein_per_sample(a, b, 16, gen_batch)
    assert batched.shape == (4,) and float(batched.detach().min()) > 0.1
    assert torch.allclose(batched, loop, rtol=1e-5)
    assert torch.equal(gen_loop.get_state(), gen_batch.get_state())
    weights = torch.arange(1.0, 5.0)
    grad_loop, = torch.autograd.grad((loop * weights).sum(), a)
    grad_batched, = torch.autograd.grad((batched * weights).sum(), a)
    assert torch.allclose(grad_batched, grad_loop, rtol=1e-4, atol=1e-7)
    with pytest.raises(ValueError, match="matching batches"):
        quality.sliced_wasserstein_per_sample(a, b[:3], 16, gen_batch)


@pytest.fixture(params=[1, 2], ids=["1-thread", "2-threads"])
def torch_threads(request):
    """sort_rows takes numpy's argsort on one torch thread and torch.sort on more: both paths."""
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sort_rows_matches_torch_sort_values_and_gradients(dtype, torch_threads):
    gen = torch.Generator().manual_seed(3)
    # distinct values (a shuffled range): the gradient then has one answer
    x = (torch.stack([torch.randperm(5000, generator=gen) for _ in range(6)]).to(dtype) / 7 - 300).requires_grad_()
    w = torch.randn(6, 5000, generator=gen, dtype=dtype)
    mine, = torch.autograd.grad((quality.sort_rows(x) * w).sum(), x)
    ref, = torch.autograd.grad((torch.sort(x, dim=1).values * w).sum(), x)
    assert torch.equal(quality.sort_rows(x), torch.sort(x, dim=1).values)
    assert torch.equal(mine, ref)
    # ties (quantised values): the values are still torch's; each tied group gets the same gradient in total
    q = (x.detach() / 40).round().requires_grad_()
    assert torch.equal(quality.sort_rows(q.detach()), torch.sort(q.detach(), dim=1).values)
    mine, = torch.autograd.grad((quality.sort_rows(q) * w).sum(), q)
    ref, = torch.autograd.grad((torch.sort(q, dim=1).values * w).sum(), q)
    for row in range(6):
        groups = q[row].detach()
        for value in groups.unique()[:20]:
            tied = groups == value
            assert torch.allclose(mine[row][tied].sum(), ref[row][tied].sum(), rtol=1e-5, atol=1e-5)  # summed in any order
    # NaN sorts last in both; other dtypes and devices take torch's sort
    nan = torch.tensor([[3.0, float("nan"), 1.0]])
    assert torch.equal(quality.sort_rows(nan)[:, :2], torch.tensor([[1.0, 3.0]]))
    assert torch.isnan(quality.sort_rows(nan)[0, 2])
    half = torch.tensor([[2.0, 1.0]], dtype=torch.bfloat16)
    assert torch.equal(quality.sort_rows(half), torch.tensor([[1.0, 2.0]], dtype=torch.bfloat16))

def test_copy_check_flags_crops_not_new_textures():
    ex = procedural.rust(160, seed=3)
    assert quality.copy_check(ex[20:120, 30:130], [ex]).is_copy
    report = quality.copy_check(procedural.rust(100, seed=4), [ex])
    assert not report.is_copy and report.copied_fraction < 0.1


def test_grain_gain_tells_a_weave_painted_over_grain_from_grain_passed_through():
    frame = procedural.rust(96, seed=3)
    identity = quality.grain_gain(lambda f: f, frame)
    assert identity == pytest.approx(1.0, abs=0.15)  # the worst cell's rms of the noise itself

    def weave_on_the_left(f):  # amplifies the deviation from the local mean tenfold, in one region only
        blurred = torch.nn.functional.avg_pool2d(torch.from_numpy(f).permute(2, 0, 1)[None], 5, 1, 2,
                                                 count_include_pad=False)[0].permute(1, 2, 0).numpy()
        out = f.copy()
        out[:, :32] = blurred[:, :32] + 10 * (f[:, :32] - blurred[:, :32])
        return out

    assert quality.grain_gain(weave_on_the_left, frame) > 6  # the worst cell finds it
    assert quality.grain_gain(lambda f: f * 0.5 + 0.25, frame) == pytest.approx(0.5 * identity, rel=1e-4)
    assert quality.grain_gain(weave_on_the_left, frame, seed=1) == quality.grain_gain(weave_on_the_left, frame, seed=1)


# --------------------------------------------------------------------------- devices and jobs

def test_device_helper_respects_preference(monkeypatch):
    assert pick_device("cpu").type == "cpu"
    monkeypatch.setenv("NEURAL_TEXTURES_DEVICE", "cpu")
    assert pick_device("auto").type == "cpu"
    with pytest.raises(ValueError, match="Unknown device"):
        pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            pick_device("cuda")


def test_cancel_token_and_progress_fraction():
    token = CancelToken()
    token.raise_if_cancelled()
    token.cancel()
    with pytest.raises(JobCancelled):
        token.raise_if_cancelled()
    assert Progress(step=5, total=10).fraction == 0.5 and Progress(step=1, total=0).fraction == 0.0


def test_multilayer_exr_render_reads_its_combined_pass(tmp_path):
    OpenEXR = pytest.importorskip("OpenEXR")
    rng = np.random.default_rng(3)
    combined = rng.random((12, 16, 4)).astype(np.float32) * 2.0
    vector = rng.random((12, 16, 4)).astype(np.float32)
    # Blender 5 writes one part per pass, channels named <ViewLayer>.<Pass>.<Channel>.
    parts = [OpenEXR.Part({"type": OpenEXR.scanlineimage, "compression": OpenEXR.ZIP_COMPRESSION},
                          {f"ViewLayer.{name}.{c}": np.ascontiguousarray(data[..., i]) for i, c in enumerate(chans)},
                          name=f"ViewLayer.{name}")
             for name, data, chans in (("Vector", vector, "XYZW"), ("Combined", combined, "RGBA"))]
    OpenEXR.File(parts).write(str(tmp_path / "render.exr"))
    data = im.load_image(tmp_path / "render.exr")
    assert data.colorspace == "linear"
    np.testing.assert_allclose(data.rgb, combined[..., :3])
    np.testing.assert_allclose(data.alpha, np.clip(combined[..., 3], 0, 1))


# --------------------------------------------------------------------------- hostile and careless input

def nan_style_model(folder):
    """A style model file whose weights hold one NaN (training diverged, or a damaged file)."""
    from core.style.transformer import TransformerConfig, TransformerNet
    tensors = TransformerNet(TransformerConfig(8, 1)).state_dict()
    first = next(iter(tensors))
    tensors[first].view(-1)[0] = float("nan")
    return ck.save_checkpoint(folder / "nan_style.safetensors", tensors, {"transformer": {"base_channels": 8,
                                                                                         "residual_blocks": 1}},
                              "style_transfer")


def test_style_model_with_nan_weight_is_refused(tmp_path):
    from core.style import load_style_model
    with pytest.raises(ck.CheckpointError, match=r"non-finite \(NaN/inf\) weights"):
        load_style_model(nan_style_model(tmp_path), device="cpu")


def _vae_file(tmp_path, **arch):
    from core.texture_vae.model import TextureVAEConfig, TextureVAENet
    cfg = TextureVAEConfig(base_channels=4, channel_mult=(1, 2), latent_channels=2)
    config = {**cfg.to_dict(), **arch}
    return ck.save_checkpoint(tmp_path / "vae.safetensors", TextureVAENet(cfg).state_dict(),
                              {"config": config, "name": "v"}, "texture_vae")


@pytest.mark.parametrize("arch, needle", [({"res_blocks": 10 ** 9}, "res_blocks"),
                                          ({"base_channels": 10 ** 9}, "base_channels"),
                                          ({"channel_mult": [1] * 100}, "channel_mult"),
                                          ({"latent_channels": "8"}, "latent_channels"),
                                          ({"latent_channels": 3}, "shape")])
def test_crafted_vae_config_is_refused_before_any_allocation(tmp_path, monkeypatch, arch, needle):
    from core.texture_vae import load_texture_vae, ops
    path = _vae_file(tmp_path, **arch)
    # Watch where the network gets built (not how long it takes): at most a memoryless "meta" skeleton to
    # compare shapes, never the real module, whose weights are the allocation a crafted config would blow up.
    built_on, real_net = [], ops.TextureVAENet
    monkeypatch.setattr(ops, "TextureVAENet", lambda config: built_on.append(torch.get_default_device().type)
                        or real_net(config))
    with pytest.raises(ck.CheckpointError, match=needle):
        load_texture_vae(path, device="cpu")
    assert set(built_on) <= {"meta"}, built_on


def test_crafted_header_length_is_refused(tmp_path):
    path = tmp_path / "huge_header.safetensors"
    path.write_bytes((2 ** 40).to_bytes(8, "little") + b"{}")
    with pytest.raises(ck.CheckpointError, match="header"):
        ck.load_checkpoint(path)


def test_16_bit_rgb_and_rgba_png_keep_all_16_bits(tmp_path):
    rng = np.random.default_rng(3)
    for channels in (3, 4):
        data = rng.random((29, 31, channels)).astype(np.float32)
        path = im.save_image(tmp_path / f"c{channels}.png", data, bit_depth=16)
        back = im.load_image(path)
        assert back.bit_depth == 16
        assert np.abs(back.rgba()[..., :channels] - data).max() <= 0.5 / 65535 + 1e-6
        assert len(np.unique(back.rgb)) > 1000  # more than 8-bit levels


def _filtered_png16(samples: np.ndarray) -> bytes:
    """A 16-bit RGB(A) PNG whose rows use every filter type (0-4), as other encoders write them."""
    import struct
    import zlib
    h, w, c = samples.shape
    raw = samples.astype(">u2").view(np.uint8).reshape(h, w * c * 2).astype(int)
    bpp = 2 * c
    out = bytearray()
    previous = np.zeros(raw.shape[1], int)
    for y in range(h):
        row, kind = raw[y], y % 5
        left = np.concatenate([np.zeros(bpp, int), row[:-bpp]])
        upper_left = np.concatenate([np.zeros(bpp, int), previous[:-bpp]])
        if kind == 4:
            p = left + previous - upper_left
            pa, pb, pc = abs(p - left), abs(p - previous), abs(p - upper_left)
            predictor = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, previous, upper_left))
        else:
            predictor = [0 * row, left, previous, (left + previous) // 2][kind]
        out += bytes([kind]) + bytes(((row - predictor) % 256).astype(np.uint8))
        previous = row

    def chunk(tag, body):
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 16, {3: 2, 4: 6}[c], 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(out))) + chunk(b"IEND", b"")


def test_16_bit_png_with_row_filters_decodes_exactly(tmp_path):
    for channels in (3, 4):
        samples = np.random.default_rng(channels).integers(0, 65536, (12, 9, channels)).astype(np.uint16)
        path = tmp_path / f"filtered{channels}.png"
        path.write_bytes(_filtered_png16(samples))
        back = im.load_image(path)
        np.testing.assert_array_equal(np.round(back.rgba()[..., :channels] * 65535).astype(np.uint16), samples)


@pytest.mark.parametrize("dtype", [np.complex64, np.int64, np.int32, object, bool])
def test_non_image_arrays_are_refused(tmp_path, dtype):
    array = np.ones((16, 16, 3), dtype=dtype)
    path = tmp_path / "x.npy"
    np.save(path, array, allow_pickle=dtype is object)
    with pytest.raises(im.ImageError):
        im.load_image(path)
    with pytest.raises(im.ImageError, match="not an image type"):
        im.image_from_array(array)


def test_failed_and_killed_writes_leave_no_temporary_files(tmp_path):
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    # an EXR write that fails half way (the file size limit stands in for a full disk)
    script = ("import resource, numpy as np; resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096));"
              "from core.common.images import save_image, image_from_array;"
              f"save_image({str(tmp_path / 'x.exr')!r}, image_from_array(np.random.rand(256, 256, 3).astype('f4'), "
              "'linear'))")
    proc = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin",
                               "PYTHONDONTWRITEBYTECODE": "1"})  # no half-written .pyc under the limit
    if "OpenEXR" in proc.stderr and "needs" in proc.stderr:
        pytest.skip("OpenEXR is not installed")
    assert proc.returncode != 0 and list(tmp_path.iterdir()) == [], proc.stderr[-500:]
    # a temporary left by a process killed mid-write is removed by the next write of that file
    (tmp_path / ".y.png.k3x9.tmp").write_bytes(b"partial")
    im.save_image(tmp_path / "y.png", np.zeros((8, 8, 3), np.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["y.png"]


def test_divergence_is_caught_by_loss_explosion_not_only_nan():
    from core.common.jobs import DivergenceMonitor, TrainingDiverged
    healthy = DivergenceMonitor()
    rng = np.random.default_rng(0)
    for step, loss in enumerate(1.5 * np.exp(-np.arange(2000) / 400) + rng.random(2000) * 0.5):  # noisy, falling
        healthy.check(step, loss)
    healthy.check(2000, 40.0)  # one spike is no divergence
    exploding = DivergenceMonitor()
    with pytest.raises(TrainingDiverged, match="grew"):
        for step, loss in enumerate([0.66, 3e8, 1.4e30, 3e32, 4e33]):
            exploding.check(step, loss)
    with pytest.raises(TrainingDiverged, match="nan"):
        DivergenceMonitor().check(0, float("nan"))


def test_too_high_learning_rate_stops_the_training(tmp_path):
    # lr 10 keeps the VAE's loss finite (1e35): before, it trained to noise and reported success
    from core.common.jobs import TrainingDiverged
    from core.texture_vae import train_texture_vae
    from core.texture_vae.model import TextureVAEConfig
    cfg = TextureVAEConfig(base_channels=4, channel_mult=(1, 2), latent_channels=2, crop_size=32, batch_size=2, lr=10.0)
    with pytest.raises(TrainingDiverged):
        train_texture_vae([procedural.make_exemplar("wood", 64)], tmp_path / "v.safetensors", 40, config=cfg,
                          device="cpu", checkpoint_every=1000)
    with pytest.raises(ck.CheckpointError, match="learning rate"):
        ck.check_config_values("config", "texture_vae", cfg.to_dict())


def test_sigterm_stops_a_timed_training_after_its_step_with_a_checkpoint():
    """`kill` on a background training (build.py models --only gan|vae) must lose nothing: the step under way
    finishes, the checkpoint is written, and the run returns normally."""
    import os
    import signal
    import time

    from core.common.jobs import timed_training

    saved, done = [], []

    def step() -> dict:
        done.append(1)
        if len(done) == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives while the step runs
        return {"loss": 1.0}

    before = signal.getsignal(signal.SIGTERM)
    result = timed_training(step, lambda s, seconds, losses: saved.append(s), 0, None, 60.0, time.perf_counter(),
                            {}, 0.0, checkpoint_minutes=60.0, name="test")
    assert result["steps"] == 3 and saved == [3] and len(done) == 3
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is put back


def test_ctrl_c_stops_a_timed_training_with_a_checkpoint_and_tells_a_caller_that_can_be_cancelled():
    """Ctrl-C (SIGINT) stops the training after its step with a checkpoint; a caller holding a cancel token (the
    CLI: exit 130, a worker job) is told it was cancelled, one without (build.py models) gets a normal return."""
    import os
    import signal
    import time

    from core.common.jobs import CancelToken, JobCancelled, timed_training

    def run(cancel):
        saved, done = [], []

        def step() -> dict:
            done.append(1)
            if len(done) == 2:
                os.kill(os.getpid(), signal.SIGINT)
            return {"loss": 1.0}

        try:
            return timed_training(step, lambda s, seconds, losses: saved.append(s), 0, None, 60.0,
                                  time.perf_counter(), {}, 0.0, checkpoint_minutes=60.0, name="test",
                                  cancel=cancel), saved
        except JobCancelled as exc:
            return exc, saved

    token = CancelToken()
    cancelled, saved = run(token)
    assert isinstance(cancelled, JobCancelled) and "step 2" in str(cancelled) and saved == [2] and token.cancelled
    result, saved = run(None)
    assert result["steps"] == 2 and saved == [2]


def test_lattice_line_share_sees_a_grid_on_the_8_px_lattice_not_a_photos_own_detail():
    photo = np.asarray(Image.open(ROOT / "models" / "content_frames" / "photo_astronaut.jpg").convert("RGB"),
                       np.float32) / 255
    render = np.asarray(Image.open(ROOT / "models" / "content_frames" / "render_003.jpg").convert("RGB"),
                        np.float32) / 255
    clean = [quality.lattice_line_share(photo), quality.lattice_line_share(render)]
    assert all(c < 0.5 for c in clean)  # measured 0.11 and 0.26: those lines' share of the spectrum, about
    for frame, c in zip((photo, render), clean):
        xs = np.arange(frame.shape[1])[None, :]
        grid = 0.03 * (((xs % 8) == 3).astype(np.float32) - ((xs % 8) == 5))  # a 3 % pair of columns per cell
        assert quality.lattice_line_share(frame + grid[..., None]) > 2.5 * c  # measured 3.5x and 12x
        # a crop that does not start on the lattice, any size: the same figure within a fifth
        assert quality.lattice_line_share(frame[3:, 5:]) == pytest.approx(c, rel=0.2)
    assert quality.lattice_line_share(np.full((64, 64, 3), 0.5, np.float32)) == 0.0


def test_adam_is_fused_on_cuda_and_its_state_continues_on_any_device():
    """``device.adam``: the fused kernels on CUDA (checked here with the CPU's fused kernels, which take the same
    state dict), the usual Adam elsewhere; a state saved by one continues in the other."""
    from core.common.device import adam

    def run(opt_device, steps, state=None):
        torch.manual_seed(0)
        w = torch.nn.Parameter(torch.randn(8, 5))
        opt = adam([w], opt_device, lr=0.05, betas=(0.5, 0.99))
        if state is not None:
            w.data.copy_(state[0])
            opt.load_state_dict(state[1])
        x = torch.linspace(-1, 1, 40).reshape(8, 5)
        for _ in range(steps):
            opt.zero_grad()
            ((w - x) ** 3).abs().sum().backward()
            opt.step()
        return w.detach().clone(), opt.state_dict(), opt.defaults["fused"]

    assert run("cuda", 0)[2] is True and not run("cpu", 0)[2]
    straight = run("cpu", 6)[0]
    halfway = run("cuda", 3)
    assert not torch.allclose(halfway[0], straight, atol=1e-3)
    assert torch.allclose(run("cpu", 3, halfway[:2])[0], straight, atol=1e-5)
    assert torch.allclose(run("cuda", 3, run("cpu", 3)[:2])[0], straight, atol=1e-5)


def test_timed_training_reads_a_devices_losses_only_every_few_steps_and_before_each_save():
    """Each read of a GPU training's losses makes the host wait for the GPU: steps whose losses live on a device
    are read every ``LOSS_READ_EVERY`` steps, at the end and before a save. Meta tensors hold no values, so a read
    of one raises: every step but those returns meta losses, the read ones CPU losses."""
    import time

    from core.common.jobs import LOSS_READ_EVERY, timed_training

    done, saved = [], []

    def step() -> dict:
        done.append(1)
        k = len(done)
        if k % LOSS_READ_EVERY == 0 or k == 2 * LOSS_READ_EVERY + 3:  # the steps the loop reads
            return {"loss": torch.tensor(float(k)), "d": torch.tensor(0.5)}
        return {"loss": torch.zeros((), device="meta"), "d": torch.zeros((), device="meta")}

    result = timed_training(step, lambda s, seconds, losses: saved.append((s, losses)), 0,
                            2 * LOSS_READ_EVERY + 3, None, time.perf_counter(), {}, 0.0, checkpoint_minutes=60.0,
                            name="test")
    last = 2 * LOSS_READ_EVERY + 3
    assert result["steps"] == last and result["losses"] == {"loss": float(last), "d": 0.5}
    assert saved == [(last, {"loss": float(last), "d": 0.5})]

    def diverging() -> dict:
        done.append(1)
        return {"loss": torch.tensor(float("nan"))}  # on the CPU: read (and refused) at once

    saved.clear()
    with pytest.raises(FloatingPointError, match="diverged"):
        timed_training(diverging, lambda s, seconds, losses: saved.append(s), 0, 10, None, time.perf_counter(), {},
                       0.0, checkpoint_minutes=60.0, name="test", diverged=FloatingPointError)
    assert saved == []  # a diverged training saves nothing


@pytest.mark.parametrize("samples", [None, 3])
def test_projection_directions_drawn_at_once_are_the_per_layer_draws(samples):
    """``draw_directions`` draws every layer's projections as the layers drew them one after another (the random
    stream and the numbers are those of the per-layer draws, bit for bit), normalised."""
    channels = [5, 64, 17]
    gen_once, gen_each = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    once = quality.draw_directions(channels, 8, gen_once, "cpu", samples=samples)
    for d, c in zip(once, channels):
        blocks = [torch.randn(8, c, generator=gen_each, device="cpu") for _ in range(samples or 1)]
        each = torch.stack(blocks) if samples else blocks[0]
        assert torch.equal(d, each / each.norm(dim=-1, keepdim=True))
    assert torch.equal(gen_once.get_state(), gen_each.get_state())


def test_a_loaded_optimiser_state_keeps_the_implementation_the_optimiser_was_built_with():
    """PyTorch takes a saved group's ``foreach``/``fused`` flags: a CUDA training resumed from a state saved on the
    CPU ran Adam unfused. ``load_optimizer_state`` keeps the optimiser's own (and the saved moments)."""
    from core.common.device import adam, load_optimizer_state

    param = torch.nn.Parameter(torch.randn(4))
    plain = torch.optim.Adam([param], lr=0.1)  # the state of another implementation (foreach and fused None)
    param.grad = torch.randn(4)
    plain.step()
    optimiser = adam([param], "cpu", lr=0.1)
    load_optimizer_state(optimiser, plain.state_dict())
    assert optimiser.param_groups[0]["foreach"] is True and optimiser.param_groups[0]["fused"] is None
    assert torch.equal(optimiser.state[param]["exp_avg"], plain.state[param]["exp_avg"])
