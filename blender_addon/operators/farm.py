"""Render farm: hand an animation's stylization to Flamenco 3 (the job type shipped in core/farm/flamenco/).

Kept thin on purpose: the Flamenco add-on owns submission (it saves the file,
talks to the Manager and shows the job). This operator selects the Neural
Textures job type among the Manager's job types, fills its settings from the
Animation panel, and starts Flamenco's own *Submit Job*. It appears only when
the Flamenco add-on is enabled. Ray runs go through the ordinary Stylize
Frames job (the panel's Ray Cluster field).
"""

from __future__ import annotations

from pathlib import Path

import bpy

from .. import image_bridge
from ..image_bridge import BridgeError
from .common import fail, get_image

JOB_TYPE = "neural_textures_stylize"  # the job type's file name in the Manager's scripts/ folder, without .js
NOT_ON_MANAGER = ("The Flamenco Manager has no '{job}' job type: copy core/farm/flamenco/{job}.js (inside this "
                  "extension's folder) into the 'scripts' folder next to flamenco-manager, restart the Manager, "
                  "then refresh Flamenco's job types (Output Properties > Flamenco)")


def flamenco_enabled(context) -> bool:
    """The Flamenco add-on is enabled (a legacy add-on 'flamenco', or an extension 'bl_ext.<repo>.flamenco')."""
    return any(name == "flamenco" or name.endswith(".flamenco") for name in context.preferences.addons.keys())


def style_file(settings) -> str:
    """The style as a file every farm worker can read: the model file, or the painting's image file."""
    from .. import models
    if settings.method == "MODEL":
        model = models.resolve(settings.model_ref, "style")
        model = bpy.path.abspath(model) if model else ""
        if not model or not Path(model).is_file():
            raise BridgeError("Choose a style model first")
        return str(Path(model).resolve())
    image = get_image(settings.style_image.name if settings.style_image else "", "style painting")
    path = bpy.path.abspath(image.filepath) if image.filepath else ""
    if not path or image.packed_file is not None or not Path(path).is_file():
        raise BridgeError(f"The painting '{image.name}' must be an image file on shared storage for the farm "
                          "(Image > Save As, then open that file)")
    return str(Path(path).resolve())


def job_settings(context) -> dict:
    """The job type's settings from the Animation panel (keys as in neural_textures_stylize.js)."""
    from .style import output_folder
    settings = context.scene.neural_style
    frames_dir = settings.frames_dir or str(Path(bpy.path.abspath(context.scene.render.filepath)).parent)
    frames = image_bridge.image_files_in(frames_dir)
    return {
        "style": style_file(settings),
        "input_dir": str(frames[0].parent.resolve()),
        "output_dir": output_folder(settings.output_dir, frames[0].parent),
        "frames": f"{context.scene.frame_start}-{context.scene.frame_end}",
        "method": {"MODEL": "model", "ADAIN": "adain"}.get(settings.method, "optimize"),
        "chunk_size": settings.farm_chunk_size,
        "strength": settings.strength,
        "temporal_weight": settings.temporal_weight,
    }


class NEURAL_OT_submit_flamenco(bpy.types.Operator):
    """Stylize the frames on a Flamenco 3 farm: chunks that any worker can take (needs the job type on the Manager)"""
    bl_idname = "neural.submit_flamenco"
    bl_label = "Neural Textures: Submit to Flamenco"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        return flamenco_enabled(context)

    def execute(self, context):
        scene = context.scene
        try:
            values = job_settings(context)
        except BridgeError as exc:
            return fail(self, str(exc))
        if not hasattr(scene, "flamenco_job_type"):
            return fail(self, "The Flamenco add-on is not ready: open Output Properties > Flamenco once")
        try:
            scene.flamenco_job_type = JOB_TYPE
        except TypeError:  # not among the job types the Manager sent
            return fail(self, NOT_ON_MANAGER.format(job=JOB_TYPE))
        job = getattr(scene, "flamenco_job_settings", None)
        if job is None:
            return fail(self, NOT_ON_MANAGER.format(job=JOB_TYPE))
        for key, value in values.items():
            if hasattr(job, key):
                setattr(job, key, value)
        if not hasattr(bpy.ops.flamenco, "submit_job"):
            return fail(self, "This Flamenco add-on has no 'Submit Job' operator; submit from Output Properties")
        return bpy.ops.flamenco.submit_job("INVOKE_DEFAULT")


classes = (NEURAL_OT_submit_flamenco,)
register, unregister = bpy.utils.register_classes_factory(classes)
