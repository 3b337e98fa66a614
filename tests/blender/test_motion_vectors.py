"""Real Cycles render: the Vector pass, read from an OpenEXR MultiLayer file, warps frame 1 onto frame 2.

This pins the sign convention of ``flow_from_blender_vector`` to what Blender
actually writes, and exercises the add-on's "Set Up Motion Vectors" operator.
"""

from __future__ import annotations

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")
pytest.importorskip("OpenEXR")

from core.style import flicker, warp  # noqa: E402
from core.style.blender_passes import load_render_passes  # noqa: E402


def _moving_checker_scene(name: str):
    """64x48 orthographic view (0.1 units per pixel) of an emissive checker plane moving 3 px right, 2 px up."""
    scene = bpy.data.scenes.new(name)
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 2
    scene.cycles.use_denoising = False
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 64, 48, 100
    scene.frame_start, scene.frame_end = 1, 2
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata([(-10, -10, 0), (10, -10, 0), (10, 10, 0), (-10, 10, 0)], [], [(0, 1, 2, 3)])
    plane = bpy.data.objects.new(name, mesh)
    material = bpy.data.materials.new(name)
    material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    checker, emission = nodes.new("ShaderNodeTexChecker"), nodes.new("ShaderNodeEmission")
    checker.inputs["Scale"].default_value = 8.0
    links.new(checker.outputs["Color"], emission.inputs["Color"])
    output = next(n for n in nodes if n.type == "OUTPUT_MATERIAL")
    links.new(emission.outputs["Emission"], output.inputs["Surface"])
    mesh.materials.append(material)
    scene.collection.objects.link(plane)
    camera_data = bpy.data.cameras.new(name)
    camera_data.type, camera_data.ortho_scale = "ORTHO", 6.4
    camera = bpy.data.objects.new(name + "_camera", camera_data)
    camera.location = (0.0, 0.0, 10.0)
    scene.collection.objects.link(camera)
    scene.camera = camera
    plane.location = (0.0, 0.0, 0.0)
    plane.keyframe_insert("location", frame=1)
    plane.location = (0.3, 0.2, 0.0)
    plane.keyframe_insert("location", frame=2)
    return scene


def test_real_vector_pass_warps_previous_frame_onto_current(addon, tmp_path):
    scene = _moving_checker_scene("motion_vector_test")
    scene.render.use_motion_blur = True  # the operator must turn it off
    try:
        with bpy.context.temp_override(scene=scene):
            assert bpy.ops.neural.setup_motion_vectors() == {"FINISHED"}
        assert scene.view_layers[0].use_pass_vector and not scene.render.use_motion_blur
        assert scene.render.image_settings.file_format == "OPEN_EXR_MULTILAYER"
        scene.render.filepath = str(tmp_path / "frame_")
        with bpy.context.temp_override(scene=scene):
            bpy.ops.render.render(animation=True, scene=scene.name)
        paths = [tmp_path / f"frame_{frame:04d}.exr" for frame in (1, 2)]
        (first, _), (second, flow) = load_render_passes(paths[0]), load_render_passes(paths[1])
    finally:
        bpy.data.scenes.remove(scene)
    assert flow is not None and flow.shape == (48, 64, 2)
    # the plane moved 3 px right and 2 px up (rows decrease): each pixel came from 3 px left, 2 rows down
    assert np.allclose(np.median(flow.reshape(-1, 2), axis=0), [-3.0, 2.0], atol=0.05)
    a, b = first.rgb, second.rgb
    with_vectors = flicker([a, b], [None, flow])
    zero = flicker([a, b], None)
    mirrored = flicker([a, b], [None, -flow])  # the opposite sign convention
    assert with_vectors < 0.25 * zero and with_vectors < 0.25 * mirrored, (with_vectors, zero, mirrored)
    warped, valid = warp(a, flow)
    assert valid.mean() > 0.85


def test_stylize_animation_reads_multilayer_exr_frames(addon, tmp_path):
    """The add-on job stylizes OpenEXR MultiLayer renders (Combined + Vector) into linear EXR frames."""
    import torch

    from core.common.checkpoints import save_checkpoint
    from core.common.images import load_image
    from core.style.apply import MODEL_KIND
    from core.style.blender_passes import is_multilayer_render
    from core.style.transformer import TransformerConfig, TransformerNet

    config = TransformerConfig(base_channels=4, residual_blocks=1)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = TransformerNet(config)
    model = save_checkpoint(tmp_path / "random_style.safetensors", net.state_dict(),
                            {"transformer": config.as_dict(), "name": "random"}, MODEL_KIND)
    scene = _moving_checker_scene("motion_vector_job")
    frames_dir = tmp_path / "frames"
    try:
        with bpy.context.temp_override(scene=scene):
            bpy.ops.neural.setup_motion_vectors()
            scene.render.filepath = str(frames_dir / "frame_")
            bpy.ops.render.render(animation=True, scene=scene.name)
    finally:
        bpy.data.scenes.remove(scene)
    out = tmp_path / "stylized"
    assert bpy.ops.neural.stylize_animation(frames_dir=str(frames_dir), output_dir=str(out), model=str(model),
                                            use_motion_vectors=True, wait=True) == {"FINISHED"}
    written = sorted(out.glob("*.exr"))
    assert [p.name for p in written] == ["frame_0001.exr", "frame_0002.exr"]
    result = load_image(written[1])
    assert result.colorspace == "linear" and result.rgb.shape == (48, 64, 3)
    assert not is_multilayer_render(written[1])
