"""Bad input gives a reported error (ERROR report, operator cancelled) and Blender carries on."""

from __future__ import annotations

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")


def _reported_error(call) -> str:
    """bpy.ops raises RuntimeError carrying the operator's ERROR report; return that text."""
    with pytest.raises(RuntimeError) as info:
        call()
    text = str(info.value)
    assert text.startswith("Error: ") and "Traceback" not in text, text
    return text


def test_corrupt_image_file_is_reported(tiny_models, tmp_path):
    corrupt = tmp_path / "broken.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 8)
    image = bpy.data.images.load(str(corrupt), check_existing=False)
    count = len(bpy.data.images)
    text = _reported_error(lambda: bpy.ops.neural.train_texture_model(kind="texture_gan", image=image.name,
                                                                       model_name="never", steps=1))
    assert "has no pixels" in text and "broken.png" in text
    text = _reported_error(lambda: bpy.ops.neural.stylize_image(source="IMAGE", image=image.name))
    assert "corrupt" in text
    assert len(bpy.data.images) == count  # nothing half-made


def test_tiny_image_is_rejected_by_the_core_and_worker_keeps_going(tiny_models, helpers):
    from blender_addon import image_bridge
    tiny = image_bridge.image_from_array(np.full((4, 4, 3), 0.5, np.float32), "four pixels", linear=False)
    text = _reported_error(lambda: bpy.ops.neural.vae_variations(image=tiny.name, count=1))
    assert "4x4" in text and "8x8" in text
    text = _reported_error(lambda: bpy.ops.neural.stylize_image(source="IMAGE", image=tiny.name))
    assert "4x4" in text
    # the same worker serves the next job
    assert bpy.ops.neural.generate_texture(width=32, height=32, make_material=False, name="still fine") \
        == {"FINISHED"}
    from blender_addon import job_queue
    errors = [j for j in job_queue.manager().jobs.values() if j.state == "error"]
    assert errors and errors[-1].error_type == "ImageError"  # shown in the Jobs panel too


def test_missing_model_and_bad_worker_python_are_reported(tiny_models, tmp_path):
    text = _reported_error(lambda: bpy.ops.neural.generate_texture(model=str(tmp_path / "nope.safetensors")))
    assert "not found" in text
    from blender_addon import job_queue
    prefs = bpy.context.preferences.addons["blender_addon"].preferences
    job_queue.stop_worker()
    prefs.worker_python = str(tmp_path / "no-python-here")
    try:
        text = _reported_error(lambda: bpy.ops.neural.generate_texture(width=32, height=32, make_material=False))
        assert "could not start the worker" in text and "Worker Python" in text
    finally:
        prefs.worker_python = ""
    assert bpy.ops.neural.generate_texture(width=32, height=32, make_material=False, name="ok again") \
        == {"FINISHED"}


def test_an_exemplar_that_is_not_there_is_reported_by_generate_and_train_alike(addon, tmp_path):
    """Both operators take their exemplar the same way: the file or image the caller names, else the panel's
    Blender Image / File choice."""
    scene = bpy.context.scene
    operators = ((bpy.ops.neural.generate_from_image, scene.neural_texture, "exemplar", "exemplar_file",
                  "to make a tileable texture from"),
                 (bpy.ops.neural.train_texture_model, scene.neural_train, "image", "filepath", "to learn from"))
    for operator, settings, image_setting, file_setting, purpose in operators:
        missing = tmp_path / "nowhere.png"
        text = _reported_error(lambda: operator(filepath=str(missing)))
        assert text == f"Error: Image file not found: {missing}\n", text
        text = _reported_error(lambda: operator(image="no such image"))
        assert "there is no image named 'no such image'" in text
        settings.source = "FILE"
        setattr(settings, file_setting, "")
        assert _reported_error(operator) == "Error: Image file not found: (none chosen)\n"
        settings.source = "IMAGE"
        setattr(settings, image_setting, None)
        assert _reported_error(operator) == f"Error: Choose an image {purpose}\n"


def test_a_style_that_is_not_there_is_reported_by_both_stylize_operators(addon, tmp_path):
    for operator in (bpy.ops.neural.stylize_image, bpy.ops.neural.stylize_animation):
        for method in ("PAINTING", "ADAIN"):
            text = _reported_error(lambda: operator(method=method, style_image=""))
            assert text == "Error: Choose the painting (a Blender image) to take the style from\n", text
        text = _reported_error(lambda: operator(method="MODEL", model=str(tmp_path / "gone.safetensors")))
        assert text == "Error: No style model: pick a bundled style or train one\n", text


def test_stylize_without_a_render_is_reported(tiny_models):
    render = bpy.data.images.get("Render Result")
    if render is not None:
        bpy.data.images.remove(render)
    text = _reported_error(lambda: bpy.ops.neural.stylize_image(source="RENDER"))
    assert "render" in text.lower()


def test_installer_refuses_without_online_access(addon):
    assert bpy.app.online_access is False  # the bpy module runs offline, like --offline-mode
    text = _reported_error(lambda: bpy.ops.neural.install_dependencies())
    assert "Online access is disabled" in text
