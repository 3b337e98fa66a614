"""PBR maps from an albedo: ranges, tiling, the OpenGL normal convention, knobs, errors, CLI."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.common.images import ImageError, save_image
from core.common.procedural import make_exemplar
from core.texture_pbr import PBRSettings, ao_map, height_map, normal_map, pbr_maps

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def stones() -> np.ndarray:
    return np.clip(make_exemplar("stones", 64, seed=0), 0, 1)


def _shift(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    return np.roll(np.roll(a, dy, axis=0), dx, axis=1)


def test_maps_have_the_right_shapes_and_ranges(stones):
    maps = pbr_maps(stones)
    h, w = stones.shape[:2]
    for name in ("height", "roughness", "ao"):
        m = getattr(maps, name)
        assert m.shape == (h, w) and m.dtype == np.float32, name
        assert 0.0 <= m.min() and m.max() <= 1.0 and m.std() > 0.01, name
    assert maps.normal.shape == (h, w, 3) and maps.normal.dtype == np.float32
    assert 0.0 <= maps.normal.min() and maps.normal.max() <= 1.0
    n = maps.normal * 2 - 1
    assert np.allclose(np.linalg.norm(n, axis=-1), 1.0, atol=0.01)  # unit normals, encoded 0.5 + 0.5 n
    assert (n[..., 2] > 0).all()  # all face out of the surface


def test_maps_tile_every_filter_wraps_around(stones):
    """Shifting the albedo on the torus shifts every map the same way: no border is special."""
    maps = pbr_maps(stones)
    shifted = pbr_maps(_shift(stones, 17, 29))
    for name in ("height", "normal", "roughness", "ao"):
        assert np.allclose(_shift(getattr(maps, name), 17, 29), getattr(shifted, name), atol=2e-3), name


def test_normal_map_follows_the_opengl_convention():
    x = np.arange(32, dtype=np.float32)
    rises_right = np.tile(x / 32, (32, 1))
    n = normal_map(rises_right, PBRSettings())[8:24, 8:24]  # inside: away from the ramp's wrap
    assert (n[..., 0] < 0.45).all() and np.allclose(n[..., 1], 0.5, atol=1e-6)  # faces left
    rises_up = np.tile((31 - x)[:, None] / 32, (1, 32))  # row 0 is the top of the image
    n = normal_map(rises_up, PBRSettings())[8:24, 8:24]
    assert (n[..., 1] < 0.45).all() and np.allclose(n[..., 0], 0.5, atol=1e-6)  # faces down (-Y)
    # A bump: its upper side faces up (+Y, green above 0.5), its right side faces right.
    yy, xx = np.mgrid[0:32, 0:32]
    bump = np.exp(-((yy - 16) ** 2 + (xx - 16) ** 2) / 40.0).astype(np.float32)
    n = normal_map(bump, PBRSettings())
    assert n[12, 16, 1] > 0.55 and n[20, 16, 1] < 0.45
    assert n[16, 20, 0] > 0.55 and n[16, 12, 0] < 0.45


def test_flat_albedo_gives_flat_maps():
    maps = pbr_maps(np.full((24, 40, 3), 0.4, np.float32))
    assert np.allclose(maps.normal, [0.5, 0.5, 1.0], atol=1e-4)
    assert np.allclose(maps.ao, 1.0) and np.allclose(maps.roughness, PBRSettings().roughness_base, atol=1e-4)


def test_height_is_relief_not_brightness():
    """A broad brightness change (one period across the image) is high-passed away; fine detail stays."""
    yy, xx = np.mgrid[0:128, 0:128].astype(np.float32)
    broad = 0.5 + 0.3 * np.sin(2 * np.pi * xx / 128)
    fine = 0.15 * np.sign(np.sin(2 * np.pi * xx / 8) * np.sin(2 * np.pi * yy / 8))
    h_both = height_map(np.clip(np.repeat((broad + fine)[..., None], 3, 2), 0, 1), PBRSettings())
    assert abs(np.corrcoef(h_both.ravel(), fine.ravel())[0, 1]) > 0.8
    assert abs(np.corrcoef(h_both.ravel(), broad.ravel())[0, 1]) < 0.2


def test_knobs_move_the_maps_the_documented_way(stones):
    base = pbr_maps(stones)
    inverted = pbr_maps(stones, invert_height=True)
    assert np.corrcoef(base.height.ravel(), inverted.height.ravel())[0, 1] < -0.95
    steep = pbr_maps(stones, normal_strength=4.0)

    def slope(normal):  # |tangent of the tilt|: linear in the strength, unlike the encoded values
        n = normal * 2 - 1
        return np.linalg.norm(n[..., :2], axis=-1) / n[..., 2]

    assert np.allclose(slope(steep.normal), 4 * slope(base.normal), rtol=0.02, atol=0.01)
    assert pbr_maps(stones, ao_strength=2.0).ao.mean() < base.ao.mean() < pbr_maps(stones, ao_strength=0.0).ao.mean()
    assert pbr_maps(stones, roughness_base=0.2).roughness.mean() < base.roughness.mean()


def test_ao_darkens_pits_not_the_open_surface():
    height = np.full((64, 64), 0.6, np.float32)
    height[30:34, 30:34] = 0.0  # a pit
    ao = ao_map(height, PBRSettings())
    assert ao[31, 31] < 0.8 and np.allclose(ao[0:10, 0:10], 1.0)


def test_bad_inputs_give_clear_errors(stones, tmp_path):
    with pytest.raises(ValueError, match="normal_strength must be between 0 and 20"):
        pbr_maps(stones, normal_strength=50)
    with pytest.raises(ValueError, match="roughness_base must be a number"):
        pbr_maps(stones, roughness_base="shiny")
    with pytest.raises(ValueError, match="unknown PBR setting"):
        pbr_maps(stones, glossiness=1.0)
    with pytest.raises(ImageError, match="NaN"):
        pbr_maps(np.full((16, 16, 3), np.nan, np.float32))
    with pytest.raises(ImageError, match="expected an HxW or HxWxC"):
        pbr_maps(np.zeros(16, np.float32))
    with pytest.raises(ImageError, match="not found"):
        pbr_maps(tmp_path / "missing.png")


def _png_bit_depth(path: Path) -> int:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">B", data[24:25])[0]


def test_cli_writes_the_five_maps(stones, tmp_path):
    albedo = save_image(tmp_path / "stones.png", stones)
    out = tmp_path / "maps"
    proc = subprocess.run([sys.executable, "-m", "core", "texture", "pbr", "--input", str(albedo), "--out-dir",
                           str(out), "--normal-strength", "2", "--invert-height"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    depths = {name: _png_bit_depth(out / f"{name}.png") for name in ("albedo", "height", "normal", "roughness", "ao")}
    assert depths == {"albedo": 8, "height": 16, "normal": 16, "roughness": 8, "ao": 8}
    bad = subprocess.run([sys.executable, "-m", "core", "texture", "pbr", "--input", str(albedo), "--out-dir",
                          str(out), "--ao-strength", "9"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert bad.returncode != 0 and "ao_strength must be between 0 and 4" in bad.stderr


def test_worker_job_writes_the_four_maps(stones, tmp_path):
    import io

    from core.common.jobs import CancelToken
    from core.worker import JOB_KINDS, JobContext, _Channel, _ModelCache

    albedo = save_image(tmp_path / "stones.png", stones)
    params = {"image": str(albedo), "normal_strength": 2.0, "height_scale": 4.0, "roughness_base": 0.5}
    ctx = JobContext("p1", params, tmp_path, _Channel(io.StringIO()), CancelToken(), "cpu", _ModelCache())
    maps = JOB_KINDS["texture.pbr"](ctx)["maps"]
    assert sorted(maps) == ["ao", "height", "normal", "roughness"]
    expected = pbr_maps(stones, normal_strength=2.0, height_scale=4.0, roughness_base=0.5)
    for name, info in maps.items():
        data = np.load(info["path"])
        assert data.shape == (64, 64, 3) and Path(info["path"]).name == f"p1_{name}.npy"
        reference = getattr(expected, name)
        assert np.allclose(data, reference if reference.ndim == 3 else reference[..., None], atol=1e-2), name
