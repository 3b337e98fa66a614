"""The materials (conditional) texture GAN in the panel: material choice, interpolation, PBR material,
and Train From Image with the distilled recipe. Real bpy, real worker, tiny CPU models."""

from __future__ import annotations

import json

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

TINY = {"g_channels": [16, 8, 4], "g_convs": [1, 1, 1], "d_channels": [8, 16], "local_dim": 4, "global_dim": 4,
        "periodic_dim": 2, "crop_size": 32, "batch_size": 2, "stats_loss_weight": 0.0, "adversarial_from": 1}


@pytest.fixture(scope="module")
def materials_model(tiny_models, user_dir):
    """A two-material tiny model in the user's library, chosen in the panel."""
    from blender_addon import models
    from core.common.procedural import make_exemplar
    from core.texture_gan.conditional import ConditionalGANConfig
    from core.texture_gan.distill import train_material_gan

    path = user_dir / "models" / "tiny_materials.safetensors"
    train_material_gan([make_exemplar("bricks", 64, 0), make_exemplar("wood", 64, 0)], ["bricks", "wood"], path,
                       steps=3, config=ConditionalGANConfig(n_materials=2, **{k: tuple(v) if isinstance(v, list)
                                                                               else v for k, v in TINY.items()}),
                       tiles=0)
    models.refresh()
    models.choose(bpy.context.scene.neural_texture, path)
    return path


def _generate(name: str, **settings_values):
    settings = bpy.context.scene.neural_texture
    for key, value in settings_values.items():
        setattr(settings, key, value)
    assert bpy.ops.neural.generate_texture(width=48, height=32, seed=2, make_material=False, name=name) == {"FINISHED"}
    image = bpy.data.images[name]
    return np.array(image.pixels[:], dtype=np.float32).reshape(image.size[1], image.size[0], 4)[..., :3]


def test_material_enum_lists_the_models_materials(materials_model):
    from blender_addon import models
    settings = bpy.context.scene.neural_texture
    assert [item[0] for item in models.material_items(settings)] == ["bricks", "wood"]
    assert [item[0] for item in models.material_items(settings, with_none=True)] == ["NONE", "bricks", "wood"]


def test_material_choice_and_interpolation_in_the_panel(materials_model):
    bricks = _generate("mat bricks", material="bricks", material_mix="NONE", material_mix_factor=0.0)
    wood = _generate("mat wood", material="wood", material_mix="NONE")
    assert np.abs(bricks - wood).mean() > 1e-3
    start = _generate("mix 0", material="bricks", material_mix="wood", material_mix_factor=0.0)
    np.testing.assert_allclose(start, bricks, atol=1 / 255)  # an endpoint is the pure material
    end = _generate("mix 1", material="bricks", material_mix="wood", material_mix_factor=1.0)
    np.testing.assert_allclose(end, wood, atol=1 / 255)
    half = _generate("mix half", material="bricks", material_mix="wood", material_mix_factor=0.5)
    assert np.abs(half - bricks).mean() > 1e-4 and np.abs(half - wood).mean() > 1e-4


def test_materials_model_makes_a_pbr_material(materials_model):
    bpy.context.scene.neural_texture.material = "wood"
    bpy.ops.object.select_all(action="DESELECT")
    bpy.ops.mesh.primitive_plane_add(size=1, location=(5, 5, 0))
    plane = bpy.context.active_object
    assert bpy.ops.neural.generate_texture(width=48, height=48, seed=1, make_material=True,
                                           name="Wood Material") == {"FINISHED"}
    assert plane.active_material.node_tree.nodes["Neural Texture"].image == bpy.data.images["Wood Material"]
    assert bpy.ops.neural.make_material(image="Wood Material", pbr=True) == {"FINISHED"}
    tree = plane.active_material.node_tree
    assert tree.nodes["Neural Normal"].image is not None and tree.nodes["Neural Roughness"].image is not None


def test_train_from_image_uses_the_distilled_recipe(tiny_models, user_dir, helpers):
    from blender_addon import models
    helpers.image("exemplar stones", "stones")
    assert bpy.ops.neural.train_texture_model(kind="texture_gan", image="exemplar stones", model_name="tiny distilled",
                                              steps=2, config=json.dumps(TINY), resume=False,
                                              recipe="DISTILLED") == {"FINISHED"}
    path = user_dir / "models" / "tiny_distilled.safetensors"
    assert path.is_file()
    assert len(models.materials_of(str(path))) == 1  # a one-material model
    assert models.resolve(bpy.context.scene.neural_texture.model_ref, "texture_gan") == str(path)
    image = _generate("from distilled", material_mix="NONE")
    assert image.std() > 0.0


def test_train_from_image_fine_tunes_the_bundled_materials_gan_by_default(tiny_models, user_dir, helpers):
    """The panel's default recipe starts from the bundled materials GAN: the new one-material model has its
    architecture (not the config's), and one step from its weights draws a texture."""
    from blender_addon import models
    from core.common.checkpoints import read_checkpoint_config
    from core.texture_gan.distill import bundled_materials_path

    helpers.image("exemplar cracks", "stones")
    small = {"crop_size": 64, "batch_size": 2, "exemplar_stats_weight": 0.0, "stats_loss_weight": 0.0}
    assert bpy.ops.neural.train_texture_model(kind="texture_gan", image="exemplar cracks", model_name="tuned",
                                              steps=1, config=json.dumps(small), resume=False) == {"FINISHED"}
    path = user_dir / "models" / "tuned.safetensors"
    assert path.is_file() and len(models.materials_of(str(path))) == 1
    bundled = read_checkpoint_config(bundled_materials_path())["architecture"]
    assert read_checkpoint_config(path)["architecture"]["g_channels"] == bundled["g_channels"]
    assert _generate("from fine-tuned", material_mix="NONE").std() > 0.0
