"""Every operator end to end through bpy.ops with tiny CPU models, Cycles included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")


def _tiny_cycles(scene, width=48, height=32):
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 2
    scene.cycles.use_denoising = False
    scene.render.resolution_x, scene.render.resolution_y = width, height
    scene.render.resolution_percentage = 100


def test_models_are_listed_and_selected_after_training(tiny_models, helpers):
    scene = bpy.context.scene
    # training selected the new models in the panels' enums, by library-relative reference
    from blender_addon import models
    assert scene.neural_texture.model == "library:tiny_gan.safetensors"
    for settings, kind in ((scene.neural_texture, "texture_gan"), (scene.neural_vae, "texture_vae"),
                           (scene.neural_style, "style")):
        assert models.resolve(settings.model, kind) == str(tiny_models[kind])
    names = [m.name for m in models.list_models("texture_gan")]
    assert "tiny_gan" in [Path(m.path).stem for m in models.list_models("texture_gan")] and names
    gan = next(m for m in models.list_models("texture_gan") if m.path == tiny_models["texture_gan"])
    vae = next(m for m in models.list_models("texture_vae") if m.path == tiny_models["texture_vae"])
    assert gan.thumbnail is not None and vae.thumbnail is not None  # written by the worker after training
    assert isinstance(models.icon_for(gan), int)
    items = models.enum_items("style")
    assert items[0][0] != "NONE" and all(isinstance(i[4], int) for i in items)


def test_the_bench_names_the_panels_train_from_image_default(addon):
    # The bench's Train From Image row says how many of the panel's default steps it measures.
    from benchmarks.bench_texture_gan import FINE_TUNE_STEPS, PANEL_STEPS
    settings = bpy.context.scene.neural_train
    assert settings.steps == PANEL_STEPS and FINE_TUNE_STEPS <= PANEL_STEPS
    properties = bpy.ops.neural.train_texture_model.get_rna_type().properties
    assert properties["recipe"].default == "FINETUNE"
    assert properties["variation_recipe"].default == "FINETUNE"  # a Variation Model fine-tunes the bundled pair
    from benchmarks.bench_texture_vae import FROM_IMAGE_STEPS
    assert FROM_IMAGE_STEPS <= PANEL_STEPS


def test_generate_material_render_and_stylize(tiny_models, helpers):
    scene = bpy.context.scene
    bpy.ops.object.select_all(action="DESELECT") if bpy.context.view_layer.objects else None
    bpy.ops.mesh.primitive_plane_add(size=2)
    plane = bpy.context.active_object
    bpy.ops.mesh.primitive_cube_add(size=0.5, location=(0, 0, 0.3))
    cube = bpy.context.active_object
    plane.select_set(True)
    result = bpy.ops.neural.generate_texture(width=64, height=48, seed=7, tileable=True, make_material=True,
                                             name="Generated Bricks")
    assert result == {"FINISHED"}
    image = bpy.data.images["Generated Bricks"]
    assert tuple(image.size) == (64, 48)
    assert image.colorspace_settings.name == "sRGB" and not image.is_float
    assert image.packed_file is None  # opened from the worker's file: packed when the .blend is saved
    data = helpers.pixels(image)
    assert data[..., :3].std() > 0.01  # a texture, not a flat colour
    for obj in (plane, cube):
        material = obj.active_material
        assert material is not None and material.name.startswith("Generated Bricks")
        tex = [n for n in material.node_tree.nodes if n.type == "TEX_IMAGE"][0]
        bsdf = [n for n in material.node_tree.nodes if n.type == "BSDF_PRINCIPLED"][0]
        assert tex.image == image
        assert any(link.from_node == tex and link.to_socket == bsdf.inputs["Base Color"]
                   for link in material.node_tree.links)

    # the temporary result array went away once packed into the image
    from blender_addon import job_queue
    assert not list(job_queue.workdir().rglob("*_output.npy"))

    # same seed, same texture (through the worker's model cache or not)
    assert bpy.ops.neural.generate_texture(width=64, height=48, seed=7, make_material=False,
                                           name="Again") == {"FINISHED"}
    np.testing.assert_allclose(helpers.pixels(bpy.data.images["Again"]), data, atol=1 / 255)

    # render with Cycles, camera and light
    bpy.ops.object.camera_add(location=(0, -3, 2.5), rotation=(0.9, 0, 0))
    scene.camera = bpy.context.active_object
    bpy.ops.object.light_add(type="SUN", location=(0, 0, 5))
    _tiny_cycles(scene)
    bpy.ops.render.render()
    render = bpy.data.images["Render Result"]
    images_before = set(bpy.data.images.keys())

    assert bpy.ops.neural.stylize_image(source="RENDER", strength=1.0) == {"FINISHED"}
    new = set(bpy.data.images.keys()) - images_before
    assert len(new) == 1
    stylized = bpy.data.images[new.pop()]
    assert tuple(stylized.size) == (48, 32)
    assert scene.neural_style.last_image == stylized.name
    assert bpy.data.images["Render Result"] == render and render.type == "RENDER_RESULT"  # untouched

    # scene-linear variant gives a float image
    assert bpy.ops.neural.stylize_image(source="RENDER", render_colors="LINEAR") == {"FINISHED"}
    linear = bpy.data.images[scene.neural_style.last_image]
    assert linear.is_float and tuple(linear.size) == (48, 32)

    # any image into a new image, the original untouched
    original = helpers.pixels(image).copy()
    assert bpy.ops.neural.stylize_image(source="IMAGE", image=image.name, strength=0.5) == {"FINISHED"}
    out = bpy.data.images[scene.neural_style.last_image]
    assert out != image and tuple(out.size) == (64, 48)
    np.testing.assert_array_equal(helpers.pixels(image), original)


def test_stylize_image_like_any_painting(tiny_models, helpers):
    content = helpers.image("content for painting", "stones", 48)
    painting = helpers.image("a painting", "rust", 64, seed=2)
    before = set(bpy.data.images.keys())
    assert bpy.ops.neural.stylize_image(source="IMAGE", image=content.name, method="PAINTING",
                                        style_image=painting.name, steps=2, max_side=32) == {"FINISHED"}
    (name,) = set(bpy.data.images.keys()) - before
    result = bpy.data.images[name]
    assert tuple(result.size) == (48, 48)  # optimised at 32 px, brought back to the content's size
    assert not np.array_equal(helpers.pixels(result)[..., :3], helpers.pixels(content)[..., :3])


def test_stylize_image_like_any_painting_fast_and_frames_with_a_painting(tiny_models, helpers, tmp_path):
    from blender_addon.properties import STYLE_METHODS
    from core.style.adain import default_decoder_path

    assert [m[0] for m in STYLE_METHODS] == ["MODEL", "ADAIN", "PAINTING"]
    if not default_decoder_path().exists():
        pytest.skip("the bundled AdaIN decoder is missing")
    content = helpers.image("content for fast painting", "stones", 48)
    painting = helpers.image("a fast painting", "rust", 64, seed=2)
    before = set(bpy.data.images.keys())
    assert bpy.ops.neural.stylize_image(source="IMAGE", image=content.name, method="ADAIN",
                                        style_image=painting.name, strength=1.0) == {"FINISHED"}
    (name,) = set(bpy.data.images.keys()) - before
    result = bpy.data.images[name]
    assert tuple(result.size) == (48, 48)
    assert np.abs(helpers.pixels(result)[..., :3] - helpers.pixels(content)[..., :3]).mean() > 0.01
    # an animation with a painting: AdaIN per frame, temporally smoothed, written beside the frames
    frames = tmp_path / "frames"
    frames.mkdir()
    from core.common.images import save_image
    from core.common.procedural import make_exemplar
    big = make_exemplar("stones", 64, 1)
    for i in range(3):
        save_image(frames / f"frame_{i:04d}.png", np.ascontiguousarray(big[:40, i * 4: i * 4 + 40]))
    out = tmp_path / "styled"
    assert bpy.ops.neural.stylize_animation(frames_dir=str(frames), output_dir=str(out), method="ADAIN",
                                            style_image=painting.name) == {"FINISHED"}
    assert sorted(p.name for p in out.iterdir()) == [f"frame_{i:04d}.png" for i in range(3)]


def test_make_material_operator_assigns_to_selection(tiny_models, helpers):
    image = helpers.image("for material", "stones", 32)
    bpy.ops.mesh.primitive_uv_sphere_add(segments=8, ring_count=4)
    sphere = bpy.context.active_object
    assert bpy.ops.neural.make_material(image=image.name) == {"FINISHED"}
    tex = [n for n in sphere.active_material.node_tree.nodes if n.type == "TEX_IMAGE"][0]
    assert tex.image == image


def test_vae_variations_and_masked_blend(tiny_models, helpers):
    a = helpers.image("vae a", "bricks", 64)
    b = helpers.image("vae b", "wood", 64, seed=1)
    mask = helpers.image("vae mask", "fabric", 64)
    before = set(bpy.data.images.keys())
    assert bpy.ops.neural.vae_variations(image=a.name, count=2, strength=0.8, seed=3) == {"FINISHED"}
    made = sorted(set(bpy.data.images.keys()) - before)
    assert made == ["vae a Variation 1", "vae a Variation 2"]
    v1, v2 = (helpers.pixels(bpy.data.images[n]) for n in made)
    assert v1.shape == v2.shape == (64, 64, 4)
    assert all(bpy.data.images[n].get("neural_textures_result") for n in made)
    # seeded: asking again for the first seed reproduces the first variation exactly
    # (how much seeds differ is the core's business; a 2-step model barely varies)
    assert bpy.ops.neural.vae_variations(image=a.name, count=1, strength=0.8, seed=3) == {"FINISHED"}
    np.testing.assert_array_equal(helpers.pixels(bpy.data.images["vae a Variation 1.001"]), v1)
    # Refine Steps reach the worker and run there: the panel's value (by default the core's), or the operator's
    # when a script sets it; 0 (the one-pass reading) is sent too, since the job's own default refines
    from blender_addon import job_queue
    from core.texture_vae.jobs import DEFAULT_REFINE_STEPS
    settings = bpy.context.scene.neural_vae
    assert settings.refine_steps == DEFAULT_REFINE_STEPS == 30
    assert list(job_queue.manager().jobs.values())[-1].params["refine_steps"] == DEFAULT_REFINE_STEPS
    settings.refine_steps = 2
    try:
        for overrides in ({}, {"refine_steps": 3}, {"refine_steps": 0}):
            assert bpy.ops.neural.vae_variations(image=a.name, count=1, strength=0.8, seed=3, **overrides) \
                == {"FINISHED"}
            job = list(job_queue.manager().jobs.values())[-1]
            assert job.state == "done" and job.params["refine_steps"] == overrides.get("refine_steps", 2)
    finally:
        settings.refine_steps = DEFAULT_REFINE_STEPS
    assert bpy.ops.neural.vae_blend(image=a.name, image_b=b.name, mask=mask.name, t=0.5) == {"FINISHED"}
    blend = bpy.data.images["Blend vae a + vae b"]
    assert tuple(blend.size) == (64, 64)
    assert bpy.ops.neural.vae_blend(image=a.name, image_b=b.name, mask=mask.name, refine_steps=2) == {"FINISHED"}
    job = list(job_queue.manager().jobs.values())[-1]
    assert job.kind == "texture_vae.blend" and job.state == "done" and job.params["refine_steps"] == 2


def test_stylize_animation_frames_to_folder(tiny_models, helpers, tmp_path):
    scene = bpy.context.scene
    _tiny_cycles(scene, 32, 24)
    frames_dir = tmp_path / "frames"
    scene.render.filepath = str(frames_dir / "frame_")
    scene.render.image_settings.file_format = "PNG"
    scene.frame_start, scene.frame_end = 1, 2
    bpy.ops.render.render(animation=True)
    rendered = sorted(frames_dir.glob("*.png"))
    assert len(rendered) == 2
    out = tmp_path / "stylized"
    assert bpy.ops.neural.stylize_animation(frames_dir=str(frames_dir), output_dir=str(out),
                                            temporal_weight=0.5) == {"FINISHED"}
    written = sorted(out.glob("*.png"))
    assert [p.name for p in written] == [p.name for p in rendered]
    from core.common.images import load_image
    assert load_image(written[0]).rgb.shape == (24, 32, 3)


def test_auto_stylize_after_render(tiny_models, helpers):
    scene = bpy.context.scene
    _tiny_cycles(scene, 24, 16)
    scene.neural_style.auto_stylize = True
    try:
        before = set(bpy.data.images.keys())
        bpy.ops.render.render()
        new = set(bpy.data.images.keys()) - before
        assert len(new) == 1 and tuple(bpy.data.images[new.pop()].size) == (24, 16)
    finally:
        scene.neural_style.auto_stylize = False
    before = set(bpy.data.images.keys())
    bpy.ops.render.render()
    assert set(bpy.data.images.keys()) == before  # off again: nothing happens


def test_generated_images_survive_save_and_reopen(tiny_models, helpers, tmp_path):
    """Results are packed on save; only the latest unused experiment is kept (not every one, forever)."""
    assert bpy.ops.neural.generate_texture(width=40, height=24, seed=10, make_material=False,
                                           name="Old Experiment") == {"FINISHED"}
    assert bpy.ops.neural.generate_texture(width=40, height=24, seed=11, make_material=False,
                                           name="Keep Me") == {"FINISHED"}
    assert bpy.data.images["Keep Me"].packed_file is None  # nothing packed while working
    helpers.image("keep float", "rust", 32)
    from blender_addon import image_bridge
    linear = image_bridge.image_from_array(np.random.default_rng(0).random((16, 24, 3), np.float32) * 4,
                                           "keep linear", linear=True)
    linear.use_fake_user = True  # kept by the artist
    expected = {name: helpers.pixels(bpy.data.images[name]).copy() for name in ("Keep Me", "keep linear")}
    assert linear.is_float
    path = tmp_path / "saved.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    bpy.ops.wm.open_mainfile(filepath=str(path))
    assert "Old Experiment" not in bpy.data.images  # replaced by a newer result and unused
    for name, data in expected.items():
        image = bpy.data.images[name]
        assert image.packed_file is not None
        np.testing.assert_array_equal(helpers.pixels(image), data)
    # the scene settings came back too
    assert bpy.context.scene.neural_texture.model == "library:tiny_gan.safetensors"


def test_the_gan_prior_vae_varies_and_blends_from_the_panel(tiny_models, helpers, user_dir, tmp_path):
    """The materials VAE whose decoder is the GAN (core/texture_vae/gan_prior.py) is an ordinary texture VAE to the
    add-on: listed from the library, then Variations and Blend through its worker jobs."""
    import shutil

    from blender_addon import models
    from tools.zoo import gan_vae

    entry = gan_vae.train(1.0, profile="tiny", out_dir=tmp_path, max_steps=2)
    shutil.copyfile(tmp_path / entry["file"], user_dir / "models" / "tiny_gan_vae.safetensors")
    models.refresh()  # the panel's Refresh: the lists are cached, and another test may have listed them already
    listed = {Path(m.path).name: m for m in models.list_models("texture_vae")}
    assert "tiny_gan_vae.safetensors" in listed
    scene = bpy.context.scene
    previous = scene.neural_vae.model
    scene.neural_vae.model = "library:tiny_gan_vae.safetensors"
    try:
        a = helpers.image("prior a", "bricks", 48)
        b = helpers.image("prior b", "wood", 48, seed=1)
        mask = helpers.image("prior mask", "fabric", 48)
        before = set(bpy.data.images.keys())
        assert bpy.ops.neural.vae_variations(image=a.name, count=1, strength=1.0, seed=2) == {"FINISHED"}
        made = sorted(set(bpy.data.images.keys()) - before)
        assert made == ["prior a Variation 1"]
        pixels = helpers.pixels(bpy.data.images[made[0]])
        assert pixels.shape == (48, 48, 4) and np.isfinite(pixels).all()
        assert bpy.ops.neural.vae_blend(image=a.name, image_b=b.name, mask=mask.name, t=0.5) == {"FINISHED"}
        assert tuple(bpy.data.images["Blend prior a + prior b"].size) == (48, 48)
    finally:
        scene.neural_vae.model = previous


def test_train_from_image_makes_a_variation_model_from_the_bundled_pair(tiny_models, helpers, user_dir):
    """The panel's *Train From Image* with Model Type *Variation Model* (its default recipe: the bundled materials GAN
    fine-tuned to the image, the bundled VAE's encoder onto it) gives a library model the panel selects, one material
    named after the image, whose generator working file is not listed; Make Variations runs on it."""
    from blender_addon import models

    image = helpers.image("my stones", "stones", 96)
    scene = bpy.context.scene
    previous = scene.neural_vae.model
    try:
        assert bpy.ops.neural.train_texture_model(kind="texture_vae", image=image.name, model_name="stones var",
                                                  steps=2, resume=False) == {"FINISHED"}
        path = user_dir / "models" / "stones_var.safetensors"
        assert path.is_file() and (user_dir / "models" / "stones_var.generator.safetensors").is_file()
        from core.common.checkpoints import read_checkpoint_config
        config = read_checkpoint_config(path)["config"]
        assert config["decoder"] == "materials_gan" and len(config["materials"]) == 1
        listed = [Path(m.path).name for m in models.list_models("texture_vae")]
        assert "stones_var.safetensors" in listed and not any("generator" in n for n in listed)
        assert scene.neural_vae.model == "library:stones_var.safetensors"
        before = set(bpy.data.images.keys())
        assert bpy.ops.neural.vae_variations(image=image.name, count=1, strength=0.5, seed=1) == {"FINISHED"}
        made = sorted(set(bpy.data.images.keys()) - before)
        assert len(made) == 1 and np.isfinite(helpers.pixels(bpy.data.images[made[0]])).all()
    finally:
        scene.neural_vae.model = previous
