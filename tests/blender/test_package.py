"""The extension zip: built by build.py, installed into a clean Blender user folder, operators run."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytest.importorskip("bpy")


def test_package_installs_into_clean_blender_and_runs(tmp_path):
    sys.path.insert(0, str(ROOT))
    import build

    zip_path = build.build_package(tmp_path / "dist")
    names = zipfile.ZipFile(zip_path).namelist()
    assert "blender_manifest.toml" in names and "__init__.py" in names
    assert "core/__init__.py" in names and "core/worker/__main__.py" in names
    assert not any("__pycache__" in n or n.endswith(".train.safetensors") or n.startswith("models/training/")
                   for n in names)  # resume states and unfinished trainings stay out
    assert not any("/previous/" in n for n in names)  # retired models, kept as the bench's baselines
    assert "models/texture_gan/materials.safetensors" in names and "models/texture_vae/materials.safetensors" in names
    if (ROOT / "models" / "manifest.json").exists():
        assert "models/manifest.json" in names

    # A fresh process: BLENDER_USER_RESOURCES must be set before bpy starts, and the
    # repo must not be importable, so the add-on can only use the core inside the zip.
    script = textwrap.dedent(f"""
        import sys, bpy
        sys.path = [p for p in sys.path if p not in ("", {str(ROOT)!r})]
        result = bpy.ops.extensions.package_install_files(filepath={str(zip_path)!r}, repo="user_default",
                                                          enable_on_install=True)
        assert result == {{"FINISHED"}}, result
        enabled = [m for m in bpy.context.preferences.addons.keys() if m.startswith("bl_ext.user_default.")]
        assert enabled, "extension not enabled"
        import importlib
        addon = importlib.import_module(enabled[0])
        core = importlib.import_module(enabled[0] + ".core")
        assert str({str(ROOT)!r}) not in core.__file__
        ops = [name for name in dir(bpy.ops.neural) if not name.startswith("_")]
        assert len(ops) >= 5, ops
        print("INSTALLED", enabled[0], len(ops))

        # The bundled models ship inside the extension and its operators run them.
        from pathlib import Path
        models = Path(addon.__file__).parent / "models"
        gans = sorted((models / "texture_gan").glob("*.safetensors")) if models.is_dir() else []
        if gans:
            bpy.ops.mesh.primitive_cube_add()
            before = set(bpy.data.images.keys())
            result = bpy.ops.neural.generate_texture(model=str(gans[0]), width=48, height=40, seed=1,
                                                     make_material=True)
            assert result == {{"FINISHED"}}, result
            new = [bpy.data.images[n] for n in bpy.data.images.keys() if n not in before]
            assert new and tuple(new[0].size) == (48, 40), new
            assert bpy.context.object.active_material is not None
            print("GENERATED", gans[0].name)
        bpy.ops.preferences.addon_disable(module=enabled[0])  # stops its worker process
    """)
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "user"), PYTHONPATH="")
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "INSTALLED" in proc.stdout
    if list((ROOT / "models" / "texture_gan").glob("*.safetensors")):
        assert "GENERATED" in proc.stdout, proc.stdout[-2000:]
