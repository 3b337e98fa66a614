"""Render farm in the add-on: Submit to Flamenco (against an emulated Flamenco add-on) and the Ray field.

The real Flamenco add-on is not installed here. ``FAKE_FLAMENCO`` emulates the part of its interface the
operator uses, as read in Flamenco 3's add-on source (addon/flamenco: job_types.py registers
``Scene.flamenco_job_type``, an enum of the Manager's job types, and ``Scene.flamenco_job_settings``, a
PropertyGroup generated from the chosen job type's settings; operators.py has ``flamenco.submit_job``,
started with INVOKE_DEFAULT). It records what would be submitted.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

bpy = pytest.importorskip("bpy")
import addon_utils  # noqa: E402

from core.common.images import save_image  # noqa: E402
from core.common.procedural import make_exemplar  # noqa: E402

FAKE_FLAMENCO = '''
import json, os
import bpy

bl_info = {"name": "Flamenco 3 (test double)", "blender": (4, 0, 0), "category": "System"}
JOB_TYPES = [("", "Select a Job Type", ""), ("simple_blender_render", "Simple Blender Render", "")]
if os.environ.get("FAKE_FLAMENCO_HAS_JOB_TYPE") == "1":
    JOB_TYPES.append(("neural_textures_stylize", "Neural Textures: Stylize Frames", ""))


class FakeJobSettings(bpy.types.PropertyGroup):
    style: bpy.props.StringProperty()
    method: bpy.props.StringProperty(default="auto")
    input_dir: bpy.props.StringProperty()
    output_dir: bpy.props.StringProperty()
    frames: bpy.props.StringProperty()
    chunk_size: bpy.props.IntProperty(default=24)
    warmup: bpy.props.IntProperty(default=6)
    strength: bpy.props.FloatProperty(default=1.0)
    temporal_weight: bpy.props.FloatProperty(default=0.7)


class FLAMENCO_OT_submit_job(bpy.types.Operator):
    bl_idname = "flamenco.submit_job"
    bl_label = "Flamenco: Submit Job"

    def invoke(self, context, event):
        return self.execute(context)

    def execute(self, context):  # background Blender (no window) runs INVOKE_DEFAULT calls through execute
        scene = context.scene
        job = scene.flamenco_job_settings
        record = {"job_type": scene.flamenco_job_type,
                  **{k: getattr(job, k) for k in FakeJobSettings.__annotations__}}
        with open(os.environ["FAKE_FLAMENCO_RECORD"], "w") as fh:
            json.dump(record, fh)
        return {"FINISHED"}


def register():
    bpy.utils.register_class(FakeJobSettings)
    bpy.utils.register_class(FLAMENCO_OT_submit_job)
    bpy.types.Scene.flamenco_job_type = bpy.props.EnumProperty(items=JOB_TYPES, name="Job Type")
    bpy.types.Scene.flamenco_job_settings = bpy.props.PointerProperty(type=FakeJobSettings)


def unregister():
    del bpy.types.Scene.flamenco_job_settings
    del bpy.types.Scene.flamenco_job_type
    bpy.utils.unregister_class(FLAMENCO_OT_submit_job)
    bpy.utils.unregister_class(FakeJobSettings)
'''


@pytest.fixture
def fake_flamenco(addon, tmp_path, monkeypatch):
    folder = tmp_path / "addons"
    folder.mkdir()
    (folder / "flamenco.py").write_text(FAKE_FLAMENCO)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("FAKE_FLAMENCO_RECORD", str(tmp_path / "submitted.json"))

    def enable(with_job_type: bool):
        monkeypatch.setenv("FAKE_FLAMENCO_HAS_JOB_TYPE", "1" if with_job_type else "0")
        sys.modules.pop("flamenco", None)
        assert addon_utils.enable("flamenco", default_set=True) is not None
        return tmp_path / "submitted.json"

    yield enable
    addon_utils.disable("flamenco", default_set=True)
    sys.modules.pop("flamenco", None)


def _frames(folder: Path, count: int = 3) -> Path:
    big = make_exemplar("stones", 64, 1)
    for i in range(count):
        save_image(folder / f"frame_{i + 1:04d}.png", big[:32, i * 3: i * 3 + 32].copy())
    return folder


def test_submit_to_flamenco_fills_the_job_type_and_starts_flamencos_submission(fake_flamenco, tmp_path):
    assert not bpy.ops.neural.submit_flamenco.poll()  # hidden without the Flamenco add-on
    record = fake_flamenco(with_job_type=True)
    assert bpy.ops.neural.submit_flamenco.poll()
    scene = bpy.context.scene
    settings = scene.neural_style
    settings.method = "MODEL"
    settings.frames_dir = str(_frames(tmp_path / "shot 01"))
    settings.output_dir = str(tmp_path / "styled")
    settings.farm_chunk_size = 12
    scene.frame_start, scene.frame_end = 1, 3
    assert bpy.ops.neural.submit_flamenco() == {"FINISHED"}
    submitted = json.loads(record.read_text())
    assert submitted["job_type"] == "neural_textures_stylize"
    assert submitted["input_dir"] == str((tmp_path / "shot 01").resolve())
    assert submitted["output_dir"] == str((tmp_path / "styled").resolve())
    assert submitted["frames"] == "1-3" and submitted["chunk_size"] == 12 and submitted["method"] == "model"
    assert submitted["style"].endswith(".safetensors") and Path(submitted["style"]).is_file()


def test_submit_to_flamenco_says_how_to_install_the_job_type(fake_flamenco, tmp_path):
    record = fake_flamenco(with_job_type=False)  # the Manager does not have the job type yet
    settings = bpy.context.scene.neural_style
    settings.method = "MODEL"
    settings.frames_dir = str(_frames(tmp_path / "frames"))
    with pytest.raises(RuntimeError, match="scripts' folder next to flamenco-manager"):
        bpy.ops.neural.submit_flamenco()
    assert not record.exists()


def test_ray_cluster_field_sends_the_farm_parameters(addon, monkeypatch, tmp_path):
    from blender_addon import job_queue
    sent = {}

    def fake_submit(kind, params, **kwargs):
        sent.update(kind=kind, params=params)
        raise RuntimeError("stop here: the parameters are what this test checks")

    monkeypatch.setattr(job_queue, "submit", fake_submit)
    settings = bpy.context.scene.neural_style
    settings.method = "MODEL"
    settings.farm_ray_address = "auto"
    settings.farm_chunk_size = 8
    try:
        with pytest.raises(RuntimeError, match="stop here"):
            bpy.ops.neural.stylize_animation(frames_dir=str(_frames(tmp_path / "frames")),
                                             output_dir=str(tmp_path / "out"))
    finally:
        settings.farm_ray_address = ""
    assert sent["kind"] == "style.stylize_sequence"
    assert sent["params"]["ray_address"] == "auto" and sent["params"]["chunk_size"] == 8
