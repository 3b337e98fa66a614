"""Style transfer: optimisation path, feed-forward models, tiles, animation, bad inputs.

Tiny networks, small images and few steps keep the whole file within the CPU
time budget; the assertions check real behaviour (statistics move towards the
style, structure stays, tiles agree, flicker drops), not hard-coded numbers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from core.common.checkpoints import CheckpointError, save_checkpoint
from core.common.images import ImageData, ImageError, load_rgb, resize_rgb, save_image, to_tensor, from_tensor
from core.common.jobs import CancelToken, JobCancelled
from core.common.procedural import make_exemplar
from core.common.quality import content_distance, style_distance, texture_stats_distance
from core.style import (StyleModel, StyleTransferConfig, flicker, flow_from_blender_vector, load_style_model,
                        stylize_optimize, stylize_sequence, train_style_model, warp)
from core.style.optimize import fit_max_side
from core.style.tiling import stylize_tiled

TINY = dict(base_channels=8, residual_blocks=2, image_size=64, batch_size=2, style_size=128,
            generated_frames=8, learning_rate=5e-3)


def _style(styles_dir, size=128):
    rgb = load_rgb(styles_dir / "starry_night.jpg")
    h, w = rgb.shape[:2]
    s = min(h, w)
    crop = rgb[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    return np.clip(resize_rgb(crop, size, size), 0, 1)


def edge_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of gradient magnitudes after a 2x box blur (structure, not fine texture)."""
    def edges(x):
        g = x.mean(-1)
        g = g[: g.shape[0] // 2 * 2, : g.shape[1] // 2 * 2].reshape(g.shape[0] // 2, 2, g.shape[1] // 2, 2).mean((1, 3))
        return np.hypot(np.diff(g, axis=1)[:-1], np.diff(g, axis=0)[:, :-1]).ravel()
    return float(np.corrcoef(edges(a), edges(b))[0, 1])


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory, styles_dir):
    path = tmp_path_factory.mktemp("style") / "starry.safetensors"
    # The config's default learning rate, not TINY's 5e-3: at 5e-3 these 120 steps are chaotic (the style
    # ratio below spread 0.86-0.97 and the edge correlation 0.47-0.87 over 6 seeds, and moved as much with a
    # 1/255 change of the painting or another CPU's kernels); at 2e-3 the model stylizes more and steadier.
    train_style_model(styles_dir / "starry_night.jpg", None, path, 120,
                      config=StyleTransferConfig(**{**TINY, "learning_rate": 2e-3}), seed=0, checkpoint_every=1000)
    return path


# --------------------------------------------------------------------------- optimisation

def test_optimize_moves_style_statistics_and_keeps_structure(styles_dir):
    from core.style.data import render_like_scene
    content, other = render_like_scene(112, 6), render_like_scene(112, 9)
    style = _style(styles_dir, 112)
    out = stylize_optimize(content, style, steps=20, max_side=112, seed=1)
    assert isinstance(out, np.ndarray) and out.shape == content.shape and out.dtype == np.float32
    before, after = style_distance(content, style), style_distance(out, style)
    assert after < 0.4 * before, (before, after)  # measured 0.08x
    # the scene's edges survive (measured 0.64-0.71 over seeds; another scene's edges: about 0)
    assert edge_correlation(out, content) > 0.45 > edge_correlation(out, other) + 0.2
    assert not np.allclose(out, content, atol=0.02)


def test_optimize_defaults_paint_a_real_render_without_repainting_it(styles_dir):
    # issue #9: the old default style weight (50) repainted renders (content distance 2.4 at 512 px).
    # At 128 px and 20 steps it measured 0.98-1.01; the default now measures 0.39 and still cuts the
    # style distance by 80% (the old one 90%).
    frame = fit_max_side(load_rgb(Path(__file__).parents[2] / "benchmarks/data/render_holdout_7777.jpg"), 128)
    style = _style(styles_dir, 128)
    out = stylize_optimize(frame, style, steps=20, seed=0)
    assert content_distance(out, frame) < 0.7
    assert style_distance(out, style) < 0.3 * style_distance(frame, style)


def test_coarse_to_fine_schedule_and_progress():
    from core.style.optimize import scale_sides
    assert scale_sides(200, 256) == [200]
    assert scale_sides(512, 256) == [256, 512]
    assert scale_sides(1920, 256) == [256, 512, 1024, 1920]
    assert scale_sides(600, 256) == [256, 600]  # never a near-duplicate scale just below the end


def test_coarse_to_fine_reaches_full_size_and_warm_start_refines(styles_dir):
    content = make_exemplar("stones", 96, 3)[:, :80]
    style = _style(styles_dir, 96)
    seen = []
    out = stylize_optimize(content, style, steps=4, refine_steps=2, start_side=48, max_side=None,
                           progress=lambda p: seen.append((p.step, p.total, p.message)))
    assert out.shape == content.shape
    assert seen[-1][:2] == (6, 6) and "96 px (2/2)" in seen[-1][2] and "48 px (1/2)" in seen[0][2]
    # A warm start runs only at the working size and stays near its init (animation consistency).
    warm = stylize_optimize(content, style, steps=4, refine_steps=2, start_side=48, max_side=None, init=out)
    cold = stylize_optimize(content, style, steps=4, refine_steps=2, start_side=48, max_side=None, seed=1)
    assert np.abs(warm - out).mean() < np.abs(cold - out).mean()
    with pytest.raises(ValueError, match="init"):
        stylize_optimize(content, style, steps=2, init=out[:50])


def test_optimize_sliced_wasserstein_and_colour_preservation(styles_dir):
    content = make_exemplar("bricks", 48, 1)
    style = _style(styles_dir, 48)
    out = stylize_optimize(content, style, steps=10, max_side=48, style_loss="sliced_wasserstein",
                           preserve_color=True)
    yiq = np.array([[0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], np.float32)
    # Luminance-only transfer: the chroma (I, Q) of the frame is kept (up to clipping).
    assert np.abs(out @ yiq.T - content @ yiq.T).mean() < 0.01
    assert np.abs(out - content).mean() > 0.01
    hist = stylize_optimize(content, style, steps=3, max_side=48, preserve_color="histogram")
    assert hist.shape == content.shape
    with pytest.raises(ValueError, match="style_loss"):
        stylize_optimize(content, style, steps=1, style_loss="fancy")


def test_optimize_keeps_type_alpha_colourspace_and_strength_zero_is_exact(styles_dir):
    rng = np.random.default_rng(0)
    lin = ImageData(rng.random((40, 56, 3), dtype=np.float32) * 2.0, rng.random((40, 56), dtype=np.float32),
                    "linear", 32, "render.exr")
    out = stylize_optimize(lin, _style(styles_dir, 48), steps=3, max_side=32)
    assert isinstance(out, ImageData) and out.colorspace == "linear" and out.rgb.shape == (40, 56, 3)
    assert np.array_equal(out.alpha, lin.alpha)
    same = stylize_optimize(lin, _style(styles_dir, 48), strength=0.0)
    assert np.array_equal(same.rgb, lin.rgb) and np.array_equal(same.alpha, lin.alpha)
    arr = (rng.random((20, 24, 4)) * 255).astype(np.uint8)
    assert np.array_equal(stylize_optimize(arr, _style(styles_dir, 32), strength=0), arr)
    with pytest.raises(ValueError, match="strength"):
        stylize_optimize(arr, _style(styles_dir, 32), strength=1.5)


def test_optimize_cancel(styles_dir):
    token = CancelToken()
    seen = []

    def progress(p):
        seen.append(p.step)
        token.cancel()

    with pytest.raises(JobCancelled):
        stylize_optimize(make_exemplar("wood", 32, 0), _style(styles_dir, 32), steps=50, max_side=32,
                         progress=progress, cancel=token)
    assert seen == [5]


# --------------------------------------------------------------------------- feed-forward

def test_trained_model_stylizes_and_keeps_structure(trained_model, styles_dir):
    model = load_style_model(trained_model)
    assert model.config["kind"] == "style_transfer" and model.name == "starry_night"
    assert model.config["style"]["fingerprint"] and "starry_night" in model.config["style"]["source"]
    assert model.config["frames"]["source"].startswith("generated")
    style = _style(styles_dir, 128)
    from core.style.data import render_like_scene
    # Spreads measured over 12 trainings: seeds 0-6 on this CPU's AVX-512 kernels, seeds 0-2 on AVX2 and 0-1 on
    # SSE4.1 (ONEDNN_MAX_CPU_ISA / ATEN_CPU_CAPABILITY as the project's cross-CPU check sets them).
    ratios = []
    for content in (render_like_scene(128, 77), make_exemplar("stones", 128, 9)):
        out = model.stylize(content)
        assert out.shape == content.shape
        ratios.append(style_distance(out, style) / style_distance(content, style))
        # Structure stays: measured 0.41-0.79 per frame. An output that ignores its frame (the model's output
        # for the other frame) scores -0.02 to 0.05; the old 0.5 sat inside the spread (0.4994 on a Zen 5 CPU).
        assert edge_correlation(out, content) > 0.25, ratios
    # The VGG19 Gram statistics it was trained on move towards the painting: the mean over both frames was
    # 0.61-0.85x the unstyled frame's distance (one frame alone up to 0.90x). The identity scores 1.0x and the
    # same fixture trained for 1 step instead of 120 scores 1.04x: this fails for a model that did not learn.
    assert np.mean(ratios) < 0.95, ratios


def test_model_io_types_alpha_strength(trained_model):
    model = StyleModel.load(trained_model)
    rng = np.random.default_rng(1)
    lin = ImageData(rng.random((36, 50, 3), dtype=np.float32) * 3.0, rng.random((36, 50), dtype=np.float32),
                    "linear", 32, "frame.exr")
    out = model.stylize(lin)
    assert isinstance(out, ImageData) and out.colorspace == "linear" and np.array_equal(out.alpha, lin.alpha)
    # Linear in -> sRGB for the network -> linear out: equals stylizing the sRGB-encoded frame.
    from core.common.images import to_srgb, srgb_to_linear
    expected = srgb_to_linear(model.stylize(to_srgb(lin).rgb))
    assert np.allclose(out.rgb, expected, atol=1e-5)
    zero = model.stylize(lin, strength=0)
    assert np.array_equal(zero.rgb, lin.rgb)
    rgba = rng.random((30, 30, 4)).astype(np.float32)
    res = model.stylize(rgba)
    assert res.shape == (30, 30, 4) and np.array_equal(res[..., 3], rgba[..., 3])
    assert np.array_equal(model.stylize(rgba, strength=0.0), rgba)
    half = model.stylize(rgba[..., :3], strength=0.5)
    full = model.stylize(rgba[..., :3])
    assert np.allclose(half, 0.5 * (rgba[..., :3] + full), atol=1e-5)


def test_checkpoint_round_trip_and_wrong_kind(trained_model, tmp_path):
    model = StyleModel.load(trained_model)
    again = StyleModel.load(trained_model)
    x = make_exemplar("fabric", 40, 0)
    assert np.array_equal(model.stylize(x), again.stylize(x))
    bad = tmp_path / "gan.safetensors"
    save_checkpoint(bad, {"w": torch.zeros(2)}, {"name": "x"}, "texture_gan")
    with pytest.raises(CheckpointError, match="style_transfer"):
        StyleModel.load(bad)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(trained_model.read_bytes()[:200])
    with pytest.raises(CheckpointError):
        StyleModel.load(corrupt)


def test_training_resume_reproduces_uninterrupted_run(tmp_path, styles_dir):
    cfg = dict(base_channels=4, residual_blocks=1, image_size=32, batch_size=1, style_size=48, generated_frames=2)
    style = _style(styles_dir, 48)
    straight = train_style_model(style, None, tmp_path / "a.safetensors", 4, config=StyleTransferConfig(**cfg))
    token = CancelToken()

    def stop_at_two(p):
        if p.step == 2:
            token.cancel()

    with pytest.raises(JobCancelled):
        train_style_model(style, None, tmp_path / "b.safetensors", 4, config=StyleTransferConfig(**cfg),
                          progress=stop_at_two, cancel=token)
    assert load_style_model(tmp_path / "b.safetensors").config["steps_done"] == 2
    resumed = train_style_model(style, None, tmp_path / "b.safetensors", 4, config=StyleTransferConfig(**cfg))
    a, b = load_style_model(straight), load_style_model(resumed)
    for (ka, va), (kb, vb) in zip(a.net.state_dict().items(), b.net.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka
    # A training state from other settings is not silently reused.
    with pytest.raises(CheckpointError, match="different"):
        train_style_model(style, None, tmp_path / "b.safetensors", 6,
                          config=StyleTransferConfig(**{**cfg, "style_weight": 9.0}))


def test_training_from_user_frames_folder(tmp_path, styles_dir):
    folder = tmp_path / "frames"
    for i in range(2):
        save_image(folder / f"f{i}.png", make_exemplar("rust", 40, i))
    path = train_style_model(styles_dir / "wave.jpg", folder, tmp_path / "w.safetensors", 2,
                             config=StyleTransferConfig(base_channels=4, residual_blocks=1, image_size=32,
                                                        batch_size=1, style_size=48))
    cfg = load_style_model(path).config
    assert cfg["frames"]["source"] == str(folder) and cfg["frames"]["count"] == 2
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageError, match="no images"):
        train_style_model(styles_dir / "wave.jpg", tmp_path / "empty", tmp_path / "x.safetensors", 1)
    with pytest.raises(ImageError, match="not found"):
        train_style_model(styles_dir / "wave.jpg", tmp_path / "missing", tmp_path / "x.safetensors", 1)


# --------------------------------------------------------------------------- tiles

def test_tiled_matches_untiled_away_from_borders_and_has_no_seams(trained_model):
    model = StyleModel.load(trained_model)
    from core.style.data import render_like_scene
    frame = np.clip(resize_rgb(render_like_scene(160, 5), 200, 150), 0, 1)
    full = model.stylize(frame)
    tiled = model.stylize(frame, tile_size=64)
    diff = np.abs(full - tiled).mean(-1)
    # Over 6 trainings of the fixture (seeds 5-6 on AVX-512, 1-2 on AVX2, 0-1 on SSE4.1): mean 0.0011-0.0057,
    # 99th percentile 0.019-0.076 (the old 0.05 failed 3 of the 6); tiling without shared statistics differs
    # by 0.06-0.14 on average, checked below.
    assert diff.mean() < 0.01, diff.mean()
    assert np.percentile(diff, 99) < 0.15, np.percentile(diff, 99)
    # Seams: the jump across tile starts is no larger than across any other column.
    from core.style.tiling import tile_starts
    xs = [x for x in tile_starts(200, 64, 8)[1:]]
    col_jump = np.abs(np.diff(tiled, axis=1)).mean(axis=(0, 2))
    assert col_jump[[x - 1 for x in xs]].max() < 2.0 * np.median(col_jump) + 0.01  # measured 0.55-0.73x of it
    # Without shared statistics, per-tile instance norm disagrees much more.
    x = to_tensor(frame).to(next(model.net.parameters()))  # the net's device and dtype (fp16 on CUDA)
    naive = torch.zeros_like(x)
    with torch.no_grad():
        for y0 in range(0, 150, 75):
            for x0 in range(0, 200, 100):
                naive[..., y0:y0 + 75, x0:x0 + 100] = model.net(x[..., y0:y0 + 75, x0:x0 + 100])
    assert np.abs(from_tensor(naive) - full).mean() > 2 * diff.mean()  # measured 18-56x


def test_tiled_stats_from_downscaled_frame_are_close(trained_model):
    """Tiles share one set of norm statistics, so they agree with one untiled pass.

    What tiling guarantees, for any weights: with statistics recorded once (on the
    whole frame, or on a copy downscaled to ``stats_max_side``), every tile is
    normalised alike and the tiled result equals one untiled pass using those same
    statistics; with full-frame statistics it equals the plain untiled pass.
    How close downscaled statistics come to the full frame's is a property of the
    trained weights, not of the tiling: for this 120-step model it ranged from
    0.014 to 0.28 over 3 training seeds x 4 frames, and the weights themselves
    follow the CPU's float summation order (threads, SIMD width), which is why the
    old single-model threshold (0.03) failed on some CPUs. Checked over 8 frames.
    """
    from core.style.tiling import record_norm_stats

    model = StyleModel.load(trained_model)
    # fp16 on CUDA rounds each tile shape differently; the CPU agrees to float rounding.
    atol = 1e-4 if model.device.type == "cpu" else 3e-3
    for kind in ("stones", "bricks", "wood", "rust"):
        for seed in (1, 4):
            x = to_tensor(make_exemplar(kind, 192, seed)).to(model.device)
            with torch.no_grad():
                full = from_tensor(model.net(x))
                record_norm_stats(model.net, x, 96)
                same_stats = from_tensor(model.net(x))
                model.net.set_norm_mode("instance")
                approx = from_tensor(stylize_tiled(model.net, x, tile_size=96, stats_max_side=96))
                exact = from_tensor(stylize_tiled(model.net, x, tile_size=96, stats_max_side=192))
                own_stats = from_tensor(model.net(x[..., :96, :96]))
            assert np.abs(approx - same_stats).max() < atol, (kind, seed)
            assert np.abs(exact - full).max() < atol, (kind, seed)
            # Sharing matters: a tile normalised on its own differs visibly (0.010 to 0.105 measured
            # over 6 trainings on three CPU kernel sets x 8 frames).
            assert np.abs(own_stats - full[:96, :96]).mean() > 5e-3, (kind, seed)


# --------------------------------------------------------------------------- animation

def _moving_sequence(n=6, size=72, shift=3):
    big = make_exemplar("stones", 160, 2)
    frames = [np.ascontiguousarray(big[20:20 + size, 10 + i * shift: 10 + i * shift + size]) for i in range(n)]
    # Frame i shows the texture moved left by `shift`: pixel x of frame i was at x + shift in frame i-1.
    flow = np.zeros((size, size, 2), np.float32)
    flow[..., 0] = shift
    return frames, [None] + [flow] * (n - 1)


def test_flicker_measure_and_warp_convention():
    frames, flows = _moving_sequence()
    assert flicker(frames, flows) < 1e-5  # exact motion explains everything
    assert flicker(frames, None) > 0.02  # ignoring the motion does not
    assert flicker(frames, flows[1:]) == flicker(frames, flows)  # one flow per pair is accepted too
    warped, valid = warp(frames[0], flows[1])
    assert np.allclose(warped[:, :-3], frames[1][:, :-3], atol=1e-5) and not valid[:, -3:].any()
    # Blender Vector pass: X, Y = previous minus current position, y up; top-down arrays flip y
    # (measured on a real Cycles render, see tests/blender/test_motion_vectors.py).
    vec = np.zeros((4, 5, 4), np.float32)
    vec[..., 0], vec[..., 1] = 3.0, -2.0
    assert np.allclose(flow_from_blender_vector(vec, top_down=True)[0, 0], [3.0, 2.0])
    assert np.allclose(flow_from_blender_vector(vec, top_down=False)[0, 0], [3.0, -2.0])


def test_temporal_consistency_lowers_flicker(trained_model):
    model = StyleModel.load(trained_model)
    frames, flows = _moving_sequence()
    per_frame = [model.stylize(f) for f in frames]
    steady = list(stylize_sequence(model, frames, flows, temporal_weight=0.7))
    estimated = list(stylize_sequence(model, frames, None, temporal_weight=0.7))
    base = flicker(per_frame, flows)
    assert flicker(steady, flows) < 0.7 * base, (flicker(steady, flows), base)  # measured 0.29-0.40x
    assert flicker(estimated, flows) < 0.8 * base  # measured 0.29-0.40x (6 trainings, three CPU kernel sets)
    assert len(steady) == len(frames) and steady[0].shape == frames[0].shape
    zero = list(stylize_sequence(model, frames, flows, strength=0))
    assert all(np.array_equal(a, b) for a, b in zip(zero, frames))


def test_sequence_rejects_mismatched_frames_and_flows(trained_model):
    model = StyleModel.load(trained_model)
    frames = [make_exemplar("wood", 32, 0), make_exemplar("wood", 40, 1)]
    with pytest.raises(ValueError, match="same size"):
        list(stylize_sequence(model, frames))
    same = [make_exemplar("wood", 32, 0)] * 3
    with pytest.raises(ValueError, match="flows"):
        list(stylize_sequence(model, same, [None] * 5))
    with pytest.raises(ValueError, match="HxWx2"):
        list(stylize_sequence(model, same, [None, np.zeros((32, 32, 3)), None]))


# --------------------------------------------------------------------------- bad inputs, VGG19

def test_bad_images_are_rejected(tmp_path, trained_model):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    from core.cli import style as style_cli
    import argparse
    parser = argparse.ArgumentParser()
    style_cli.register(parser.add_subparsers(dest="family"))
    args = parser.parse_args(["style", "apply", "--style", str(trained_model), "--input", str(bad),
                              "--out", str(tmp_path / "o.png")])
    args.device = "cpu"
    with pytest.raises(ImageError, match="corrupt"):
        args.func(args)
    model = StyleModel.load(trained_model)
    with pytest.raises(ImageError, match="NaN"):
        model.stylize(np.full((16, 16, 3), np.nan, np.float32))
    with pytest.raises(ImageError, match="at least"):
        model.stylize(np.zeros((4, 4, 3), np.float32))


class Evil:
    """Any non-tensor object in a .pth must be refused by the weights-only reader."""


def _vgg_state():
    from core.style.features import _vgg19_expected_shapes
    return {k: torch.randn(s) * 0.01 for k, s in _vgg19_expected_shapes().items()}


def test_vgg19_weights_loading_and_validation(tmp_path, styles_dir):
    from safetensors.torch import save_file
    from core.style import load_vgg19
    state = _vgg_state()
    good = tmp_path / "vgg19.safetensors"
    save_file({**state, "classifier.0.weight": torch.zeros(2, 2)}, str(good))
    net = load_vgg19(good)
    assert torch.equal(net.features[0].weight, state["features.0.weight"])
    out = stylize_optimize(make_exemplar("wood", 32, 0), _style(styles_dir, 32), steps=2, max_side=32,
                           vgg19_weights=str(good))
    assert out.shape == (32, 32, 3)
    pth = tmp_path / "vgg19.pth"
    torch.save({k[len("features."):]: v for k, v in state.items()}, pth)  # features-only layout
    assert torch.equal(load_vgg19(pth).features[2].weight, state["features.2.weight"])

    wrong_keys = tmp_path / "other.safetensors"
    save_file({"conv1.weight": torch.zeros(1)}, str(wrong_keys))
    with pytest.raises(CheckpointError, match="missing"):
        load_vgg19(wrong_keys)
    wrong_shape = tmp_path / "vgg16ish.safetensors"
    save_file({**state, "features.0.weight": torch.zeros(32, 3, 3, 3)}, str(wrong_shape))
    with pytest.raises(CheckpointError, match="shapes"):
        load_vgg19(wrong_shape)

    evil = tmp_path / "evil.pth"
    torch.save({"features.0.weight": Evil()}, evil)
    with pytest.raises(CheckpointError, match="weights-only"):
        load_vgg19(evil)


# --------------------------------------------------------------------------- CLI

def _cli(argv):
    import argparse
    from core.cli import style as style_cli
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    style_cli.register(parser.add_subparsers(dest="family"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_train_and_apply_frame_and_animation(tmp_path, styles_dir):
    from core.common.images import load_image
    frames = tmp_path / "frames"
    big = make_exemplar("bricks", 96, 0)
    for i in range(3):
        save_image(frames / f"frame_{i:04d}.png", big[:48, i * 2: i * 2 + 48])
    model = tmp_path / "m.safetensors"
    assert _cli(["style", "train", "--style", str(styles_dir / "udnie.jpg"), "--frames", str(frames),
                 "--out", str(model), "--steps", "2", "--image-size", "32", "--batch-size", "1"]) == 0
    assert model.exists() and (tmp_path / "m.json").exists()
    out_dir = tmp_path / "styled"
    assert _cli(["style", "apply", "--style", str(model), "--input", str(frames), "--out", str(out_dir),
                 "--strength", "0.8"]) == 0
    written = sorted(p.name for p in out_dir.iterdir())
    assert written == ["frame_0000.png", "frame_0001.png", "frame_0002.png"]
    single = tmp_path / "one.png"
    assert _cli(["style", "apply", "--style", str(model), "--input", str(frames / "frame_0000.png"),
                 "--out", str(single), "--tile", "32"]) == 0
    assert load_image(single).rgb.shape == (48, 48, 3)
    opt = tmp_path / "opt.png"
    assert _cli(["style", "apply", "--style", str(styles_dir / "wave.jpg"), "--input", str(frames / "frame_0001.png"),
                 "--out", str(opt), "--steps", "2", "--max-side", "32"]) == 0
    assert load_image(opt).rgb.shape == (48, 48, 3)
    # an animation with any painting: optimisation per frame, warm-started from the previous one
    assert _cli(["style", "apply", "--style", str(styles_dir / "wave.jpg"), "--input", str(frames),
                 "--out", str(tmp_path / "x"), "--steps", "2", "--max-side", "32"]) == 0
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == written


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.float16, 2e-3), (torch.bfloat16, 1e-2)])
def test_one_pass_norm_statistics_match_the_training_paths(dtype, tolerance):
    """The GPU inference norms' statistics (one pass in the frame's dtype, float32 accumulators) against the
    training path's (a float32 copy, two passes), on channels of very different scales and offsets."""
    from core.style.transformer import one_pass_statistics

    gen = torch.Generator().manual_seed(4)
    scales = torch.tensor([0.01, 0.1, 1.0, 5.0, 20.0]).view(1, 5, 1, 1)
    offsets = torch.tensor([0.5, -2.0, 0.0, 30.0, 3.0]).view(1, 5, 1, 1)
    x = (torch.randn(2, 5, 37, 29, generator=gen) * scales + offsets).to(dtype)
    mean, var = one_pass_statistics(x)
    xf = x.float()
    ref_mean = xf.mean(dim=(2, 3), keepdim=True)
    ref_var = (xf - ref_mean).square().mean(dim=(2, 3), keepdim=True)
    assert mean.dtype == var.dtype == torch.float32 and mean.shape == var.shape == (2, 5, 1, 1)
    assert torch.allclose(mean, ref_mean, rtol=tolerance, atol=tolerance * float(scales.max()) * 1e-2)
    assert torch.allclose(var, ref_var, rtol=tolerance * 4)
