"""The chunk contract of render-farm runs (core/style/chunks.py) on a real Cycles render with its Vector pass."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("OpenEXR")

from core.cli import main as cli_main
from core.common.images import load_image, to_srgb
from core.style import StyleModel, flicker, stylize_sequence
from core.style.blender_passes import frames_with_flows, load_render_passes
from core.style.chunks import (DEFAULT_WARMUP, StyleSpec, frame_number, output_path, parse_frame_range, plan_chunks,
                               stylize_chunk, stylize_chunked)

ROOT = Path(__file__).resolve().parents[2]
STYLES = [ROOT / "models" / "style" / "previous" / f"{name}.safetensors" for name in ("wave", "starry_night")]


@pytest.fixture(scope="session")
def sequence() -> list[Path]:
    """24 frames, 160x120, OpenEXR MultiLayer with the Vector pass (tools/render_motion_sequence.py, cached)."""
    sys.path.insert(0, str(ROOT))
    from tools.render_motion_sequence import cached_sequence
    return cached_sequence()


@pytest.fixture(scope="module")
def wave():
    return StyleModel.load(STYLES[0], "cpu")


def _pixels(folder: Path, files) -> list[np.ndarray]:
    return [load_image(output_path(folder, f)).rgb for f in files]


def test_ranges_and_names():
    assert parse_frame_range("1-48") == (1, 48) and parse_frame_range(" 7 ") == (7, 7)
    for bad in ("48-1", "a-b", "-3", "1-2-3"):
        with pytest.raises(ValueError):
            parse_frame_range(bad)
    chunks = plan_chunks(3, 26, 5)
    covered = [f for s, e in chunks for f in range(s, e + 1)]
    assert covered == list(range(3, 27))  # every frame once, in order
    assert frame_number("shot_v2_0042.exr") == 42 and frame_number("plate.png") is None
    assert output_path("out", "in/frame_0007.exr") == Path("out/frame_0007.exr")
    assert output_path("out", "in/frame_0007.tif") == Path("out/frame_0007.png")  # as the single-machine run


def test_warmup_reaching_the_first_frame_is_the_single_machine_run(sequence, wave, tmp_path):
    """A chunk whose warm-up reaches back to frame 1 is exactly the sequential run's frames (same code path)."""
    frames, flows = frames_with_flows(sequence[:12])
    sequential = [r.rgb for r in stylize_sequence(wave, frames, flows)]
    result = stylize_chunk(wave, sequence, tmp_path, 7, 12, warmup=6)
    assert result.warmup_frames == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"frame_{i:04d}.exr" for i in range(7, 13)]  # no warm-up
    for got, want in zip(_pixels(tmp_path, sequence[6:12]), sequential[6:]):
        np.testing.assert_array_equal(got, want)


def _border_and_inside(folder: Path, files, flows, chunk_size: int) -> tuple[float, float]:
    outs = [to_srgb(load_image(output_path(folder, f))).rgb for f in files]
    errors = {i: flicker([outs[i - 1], outs[i]], [None, flows[i]]) for i in range(1, len(outs))}
    border = [e for i, e in errors.items() if i % chunk_size == 0]
    inside = [e for i, e in errors.items() if i % chunk_size != 0]
    return float(np.mean(border)), float(np.mean(inside))


@pytest.mark.parametrize("style", STYLES, ids=lambda p: p.stem)
def test_default_warmup_keeps_chunk_borders_steady(sequence, style, tmp_path):
    """Chunk borders flicker within 10 % of the frames inside chunks with the default warm-up; cold starts do not.

    Measured (warped-frame error, 4 chunks of 6 frames, Vector pass): border/inside = 1.036 (wave) and
    1.042 (starry night) at W=6, 1.09-1.10 at W=4, 2.9-3.0 at W=0 (cold chunks).
    """
    model = StyleModel.load(style, "cpu")
    flows = [load_render_passes(f)[1] for f in sequence]
    stylize_chunked(model, sequence, tmp_path / "warm", chunk_size=6, warmup=DEFAULT_WARMUP)
    border, inside = _border_and_inside(tmp_path / "warm", sequence, flows, 6)
    assert border <= 1.10 * inside, (border, inside)
    stylize_chunked(model, sequence, tmp_path / "cold", chunk_size=6, warmup=0)
    cold_border, cold_inside = _border_and_inside(tmp_path / "cold", sequence, flows, 6)
    assert cold_border > 2.0 * cold_inside, (cold_border, cold_inside)  # what the warm-up is for


def test_retried_chunk_writes_the_same_bytes_and_nothing_else(sequence, wave, tmp_path):
    first = stylize_chunk(wave, sequence, tmp_path, 13, 18)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    second = stylize_chunk(wave, sequence, tmp_path, 13, 18)  # a farm retry of the same chunk
    assert first.written == second.written == [str(tmp_path / f"frame_{i:04d}.exr") for i in range(13, 19)]
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no temp files, identical bytes


def test_overlap_cross_fades_the_same_in_any_order(sequence, wave, tmp_path):
    """With --overlap, whichever neighbour finishes second blends: forward and backward orders agree."""
    chunks = [(1, 8), (9, 16), (17, 24)]
    for name, order in (("forward", chunks), ("backward", chunks[::-1])):
        for s, e in order:
            stylize_chunk(wave, sequence, tmp_path / name, s, e, warmup=4, overlap=3)
    forward, backward = _pixels(tmp_path / "forward", sequence), _pixels(tmp_path / "backward", sequence)
    for a, b in zip(forward, backward):
        np.testing.assert_array_equal(a, b)
    plain = tmp_path / "plain"
    for s, e in chunks:
        stylize_chunk(wave, sequence, plain, s, e, warmup=4)
    plain_pixels = _pixels(plain, sequence)
    changed = [i + 1 for i, (a, b) in enumerate(zip(forward, plain_pixels)) if not np.array_equal(a, b)]
    assert changed == [9, 10, 11, 17, 18, 19]  # exactly the overlap frames are blends


def test_cli_frames_writes_only_its_range(sequence, wave, tmp_path):
    out = tmp_path / "styled"
    code = cli_main(["--device", "cpu", "style", "apply", "--style", str(STYLES[0]), "--input",
                     str(sequence[0].parent), "--out", str(out), "--frames", "19-24", "--warmup", "6"])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == [f"frame_{i:04d}.exr" for i in range(19, 25)]
    reference = tmp_path / "reference"
    stylize_chunk(wave, sequence, reference, 19, 24, warmup=6)
    for a, b in zip(_pixels(out, sequence[18:]), _pixels(reference, sequence[18:])):
        np.testing.assert_array_equal(a, b)
    assert StyleSpec.for_path(STYLES[0]).method == "model" and StyleSpec.for_path("x.jpg").method == "optimize"


def test_cli_ray_without_ray_says_how_to_install_it(sequence, tmp_path, monkeypatch, capsys):
    import importlib.util
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real_find_spec(name, *a))
    code = cli_main(["--device", "cpu", "style", "apply", "--style", str(STYLES[0]), "--input",
                     str(sequence[0].parent), "--out", str(tmp_path / "out"), "--ray", "auto"])
    assert code == 2
    assert "pip install -r requirements-farm.txt" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
