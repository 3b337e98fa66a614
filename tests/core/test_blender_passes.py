"""Blender multilayer EXR renders: Combined + Vector pass reading, and their use in animation stylization."""

from pathlib import Path

import numpy as np
import pytest
import torch

OpenEXR = pytest.importorskip("OpenEXR")

from core.common.checkpoints import save_checkpoint
from core.common.images import ImageError, load_image, save_image, srgb_to_linear
from core.common.procedural import make_exemplar
from core.style import StyleModel, flicker, stylize_sequence
from core.style.apply import MODEL_KIND
from core.style.blender_passes import frames_with_flows, is_multilayer_render, load_render_passes
from core.style.transformer import TransformerConfig, TransformerNet

SIZE = 48


def _write_multilayer(path: Path, rgb_linear: np.ndarray, vector_xy: np.ndarray | None, frame: int,
                      layer: str = "ViewLayer") -> None:
    """Write an EXR laid out like Blender 5's multilayer output: one part per pass, top row first."""
    h, w = rgb_linear.shape[:2]
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage, "Frame": str(frame)}
    combined = {f"{layer}.Combined.{c}": np.ascontiguousarray(rgb_linear[..., i], np.float32)
                for i, c in enumerate("RGB")}
    combined[f"{layer}.Combined.A"] = np.ones((h, w), np.float32)
    parts = [OpenEXR.Part(dict(header, name=f"{layer}.Combined"), combined)]
    if vector_xy is not None:
        vec = {f"{layer}.Vector.{c}": np.ascontiguousarray(vector_xy[..., i], np.float32) for i, c in enumerate("XY")}
        vec.update({f"{layer}.Vector.{c}": np.zeros((h, w), np.float32) for c in "ZW"})
        parts.append(OpenEXR.Part(dict(header, name=f"{layer}.Vector"), vec))
    with OpenEXR.File(parts) as exr:
        exr.write(str(path))


def _two_way_sequence(n=4, shift=2):
    """Top half slides right, bottom half slides left: no single translation explains it.

    Returns sRGB frames and, per frame, the Blender Vector X, Y (previous minus current position, y up).
    """
    big = make_exemplar("stones", 128, 1)
    half = SIZE // 2
    frames, vectors = [], []
    for i in range(n):
        top = big[0:half, 40 - i * shift: 40 - i * shift + SIZE]  # content moves right by `shift`
        bottom = big[64:64 + half, 20 + i * shift: 20 + i * shift + SIZE]  # content moves left
        frames.append(np.ascontiguousarray(np.concatenate([top, bottom], axis=0)))
        vec = np.zeros((SIZE, SIZE, 2), np.float32)
        vec[:half, :, 0], vec[half:, :, 0] = -shift, shift  # previous x minus current x
        vectors.append(vec)
    return frames, vectors


@pytest.fixture(scope="module")
def random_model(tmp_path_factory):
    cfg = TransformerConfig(base_channels=8, residual_blocks=1)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = TransformerNet(cfg)
    path = tmp_path_factory.mktemp("style") / "random.safetensors"
    save_checkpoint(path, net.state_dict(), {"transformer": cfg.as_dict(), "name": "random"}, MODEL_KIND)
    return path


@pytest.fixture(scope="module")
def exr_frames(tmp_path_factory):
    folder = tmp_path_factory.mktemp("render")
    frames, vectors = _two_way_sequence()
    paths = []
    for i, (frame, vec) in enumerate(zip(frames, vectors)):
        p = folder / f"frame_{i + 1:04d}.exr"
        _write_multilayer(p, srgb_to_linear(frame), vec, i + 1)
        paths.append(p)
    return paths, frames, vectors


def test_reader_returns_combined_and_flow(exr_frames, tmp_path):
    paths, frames, vectors = exr_frames
    assert is_multilayer_render(paths[1])
    image, flow = load_render_passes(paths[1])
    assert image.colorspace == "linear" and image.rgb.shape == (SIZE, SIZE, 3) and image.alpha is not None
    assert np.allclose(image.rgb, srgb_to_linear(frames[1]), atol=1e-6)
    # top half moved right by 2: a pixel there was 2 px to the left in the previous frame
    assert flow.shape == (SIZE, SIZE, 2)
    assert np.allclose(flow[0, 0], [-2, 0]) and np.allclose(flow[-1, 0], [2, 0])
    assert flicker([frames[0], frames[1]], [None, flow]) < 0.02 < flicker([frames[0], frames[1]], None)
    # a render without a Vector pass: colour, no flow
    _write_multilayer(tmp_path / "novec.exr", srgb_to_linear(frames[0]), None, 1)
    image, flow = load_render_passes(tmp_path / "novec.exr")
    assert flow is None and image.rgb.shape == (SIZE, SIZE, 3)


def test_reader_errors_are_clear(tmp_path):
    plain = save_image(tmp_path / "plain.exr", np.full((8, 8, 3), 0.5, np.float32))
    assert not is_multilayer_render(plain)
    with pytest.raises(ImageError, match="no Combined pass"):
        load_render_passes(plain)
    broken = tmp_path / "broken.exr"
    broken.write_bytes(b"not an exr at all")
    with pytest.raises(ImageError, match="could not be read"):
        load_render_passes(broken)
    with pytest.raises(ImageError, match="not found"):
        load_render_passes(tmp_path / "missing.exr")


def test_vector_pass_lowers_flicker_and_gaps_fall_back(random_model, exr_frames):
    paths, frames, vectors = exr_frames
    model = StyleModel.load(random_model)
    true_flows = [None] + [load_render_passes(p)[1] for p in paths[1:]]

    def run(use_vectors):
        warnings = []
        frame_iter, flow_iter = frames_with_flows(paths, use_vectors=use_vectors, warn=warnings.append)
        out = [r.rgb for r in stylize_sequence(model, frame_iter, flow_iter, temporal_weight=0.7)]
        return out, warnings

    with_vectors, warnings = run(True)
    estimated, _ = run(False)
    assert not warnings and len(with_vectors) == len(paths) and with_vectors[0].shape == (SIZE, SIZE, 3)
    srgb = lambda frames: [np.clip(f, 0, 1) ** (1 / 2.2) for f in frames]  # compare in a perceptual scale
    steady, guessed = flicker(srgb(with_vectors), true_flows), flicker(srgb(estimated), true_flows)
    assert steady < 0.8 * guessed, (steady, guessed)
    # a gap in frame numbers: the Vector pass describes one frame of motion, so it is not used there
    warnings = []
    frame_iter, flow_iter = frames_with_flows([paths[0], paths[2]], warn=warnings.append)
    next(frame_iter), next(flow_iter), next(frame_iter)
    assert next(flow_iter) is None and any("not consecutive" in w for w in warnings)


def test_cli_animation_uses_vectors_and_keeps_exr(random_model, exr_frames, tmp_path):
    from core.cli import main
    paths, _, _ = exr_frames
    out = tmp_path / "out"
    code = main(["style", "apply", "--style", str(random_model), "--input", str(paths[0].parent),
                 "--out", str(out)])
    assert code == 0
    written = sorted(out.iterdir())
    assert [p.name for p in written] == [p.name for p in paths]
    result = load_image(written[1])
    assert result.colorspace == "linear" and result.rgb.shape == (SIZE, SIZE, 3)
    assert not is_multilayer_render(written[1])  # colour only, the flow channels are not written out
