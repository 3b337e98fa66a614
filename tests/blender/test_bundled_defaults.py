"""A fresh scene works out of the box: with no model picked, operators use the bundled defaults."""

from __future__ import annotations

import json
from pathlib import Path

import bpy

ROOT = Path(__file__).resolve().parents[2]


def test_generate_without_a_chosen_model_uses_the_first_bundled_one(addon):
    bpy.context.scene.neural_texture.property_unset("model")  # as in a fresh scene: nothing picked
    bundled = [m for m in json.loads((ROOT / "models" / "manifest.json").read_text())["models"]
               if m["kind"] == "texture_gan"]
    assert bundled, "no bundled texture model"
    bpy.ops.mesh.primitive_cube_add(location=(5, 5, 5))
    before = set(bpy.data.images.keys())
    assert bpy.ops.neural.generate_texture(width=40, height=24, seed=2) == {"FINISHED"}
    created = [bpy.data.images[n] for n in bpy.data.images.keys() if n not in before]
    assert len(created) == 1 and tuple(created[0].size) == (40, 24)
    labels = sorted(m["label"] for m in bundled)
    # The list is sorted by name, so the first bundled label is the one used.
    assert bpy.context.object.active_material is not None
    from blender_addon import models
    assert Path(models.resolve("", "texture_gan")).name == Path(
        next(m["file"] for m in bundled if m["label"] == labels[0])).name
