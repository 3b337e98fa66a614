"""Model library listing: reads real checkpoints' headers without torch, manifest labels, thumbnails."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from core.common.checkpoints import save_checkpoint, save_training_state
from core.library import list_models, model_file_name, read_model_header, unique_model_path

ROOT = Path(__file__).resolve().parents[2]


def _model(folder: Path, stem: str, kind: str, **config) -> Path:
    return save_checkpoint(folder / f"{stem}.safetensors", {"w": torch.zeros(2)}, {"name": stem, **config}, kind)


def test_lists_models_with_kinds_labels_and_thumbnails(tmp_path):
    bundled, user = tmp_path / "bundled", tmp_path / "user"
    _model(bundled, "bricks", "texture_gan")
    _model(bundled, "wave", "style_transfer")
    (bundled / "bricks.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (bundled / "manifest.json").write_text(json.dumps({"models": [
        {"file": "bricks.safetensors", "name": "bricks", "label": "Red Bricks", "kind": "texture_gan",
         "description": "Old brick wall"}]}))
    _model(user, "my_wood", "texture_gan")
    save_training_state(user / "my_wood.train.safetensors", {"step": 3})  # not a model
    (user / "junk.safetensors").write_bytes(b"garbage that is not safetensors")
    (user / "foreign.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}              ")

    models = list_models([user], bundled_folders=[bundled])
    assert [(m.name, m.kind, m.bundled) for m in models] == [
        ("wave", "style", True), ("Red Bricks", "texture_gan", True), ("my_wood", "texture_gan", False)]
    bricks = models[1]
    assert bricks.description == "Old brick wall" and bricks.thumbnail == bundled / "bricks.png"
    assert models[2].thumbnail is None
    assert [m.name for m in list_models([user], kind="style", bundled_folders=[bundled])] == ["wave"]
    assert list_models([tmp_path / "missing"]) == []
    assert read_model_header(bundled / "bricks.safetensors")["kind"] == "texture_gan"


def test_listing_needs_no_torch(tmp_path):
    _model(tmp_path, "x", "texture_vae")
    code = ("import sys; sys.modules['torch'] = None; sys.modules['safetensors'] = None\n"
            "from core.library import list_models\n"
            f"print([m.kind for m in list_models([{str(tmp_path)!r}])])")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['texture_vae']"


def test_model_file_names_are_safe_and_unique(tmp_path):
    assert model_file_name("My Wall / v2") == "My_Wall_v2.safetensors"
    assert model_file_name("..") == "model.safetensors"
    first = unique_model_path(tmp_path, "wall")
    first.write_bytes(b"")
    assert unique_model_path(tmp_path, "wall").name == "wall_2.safetensors"


def test_the_shipped_manifest_lists_every_bundled_model_with_label_and_thumbnail():
    import json
    from pathlib import Path

    from core import library

    models_dir = Path(library.default_models_dir())
    manifest = json.loads((models_dir / "manifest.json").read_text())["models"]
    listed = {str(m.path): m for m in library.list_models([], bundled_folders=[models_dir])}
    for entry in manifest:
        path = str((models_dir / entry["file"]).resolve())  # subfolders come from the manifest
        if entry["kind"] == "style_multi":  # one entry per style, "file#style", each with its own thumbnail
            assert entry["styles"]
            for name in entry["styles"]:
                model = listed[f"{path}#{name}"]
                assert model.bundled and model.kind == "style" and model.thumbnail.name.endswith(f"_{name}.png")
            continue
        model = listed[path]
        assert model.bundled and model.name == entry["label"]
        assert model.kind in ("texture_gan", "texture_vae", "style", "style_adain")  # the decoder: never a style
        assert model.thumbnail is not None and model.thumbnail.is_file()
    # Every bundled file the add-on lists comes from the manifest (the retired per-style nets are not listed).
    assert {k.split("#")[0] for k in listed} == {str((models_dir / e["file"]).resolve()) for e in manifest}
