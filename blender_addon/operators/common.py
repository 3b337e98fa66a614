"""Helpers the operators share: settings fallback, image lookup, finishing a job with a report."""

from __future__ import annotations

from pathlib import Path

import bpy
from bpy.props import BoolProperty

from .. import image_bridge, job_queue, models
from ..image_bridge import BridgeError

# Every job operator has this: block until the job ends (always so without a UI).
WAIT_PROPERTY = BoolProperty(name="Wait", default=False, options={"HIDDEN", "SKIP_SAVE"},
                             description="Run to completion before returning (scripts); always on in background mode")


def scene_has(context, settings: str) -> bool:
    """Whether the scene has the add-on's ``settings`` (e.g. "neural_style"): the poll of most operators."""
    return getattr(getattr(context, "scene", None), settings, None) is not None


def texture_poll(context) -> bool:
    """Texture operators need the add-on's scene settings (a scene with the add-on enabled)."""
    return scene_has(context, "neural_texture")


def option(op, settings, name: str, settings_name: str | None = None):
    """The operator's value when the caller set it, else the scene setting shown in the panel."""
    if op.properties.is_property_set(name) or settings is None:
        return getattr(op, name)
    return getattr(settings, settings_name or name)


def get_image(name: str, what: str = "image") -> bpy.types.Image:
    if not name:
        raise BridgeError(f"choose a {what} first")
    image = bpy.data.images.get(name)
    if image is None:
        raise BridgeError(f"there is no image named '{name}' in this file")
    return image


def image_name(op, settings, name: str, settings_name: str | None = None) -> str:
    """Operator string property, or the name of the Image pointer in the scene settings."""
    if op.properties.is_property_set(name):
        return getattr(op, name)
    image = getattr(settings, settings_name or name, None) if settings is not None else None
    return image.name if image is not None else ""


def image_or_file(op, settings, image_setting: str, file_setting: str, purpose: str) -> tuple[str, str]:
    """(file the worker reads, name for its result) of an operator with ``image`` and ``filepath`` options:
    the one the caller set, else the panel's Blender Image / File choice (``settings.source``).
    ``purpose`` ends the message when no image is chosen ("to learn from")."""
    chosen = op.properties.is_property_set
    if chosen("filepath") or (not chosen("image") and settings.source == "FILE"):
        path = bpy.path.abspath(op.filepath if chosen("filepath") else getattr(settings, file_setting))
        if not path or not Path(path).is_file():
            raise BridgeError(f"Image file not found: {path or '(none chosen)'}")
        return path, Path(path).stem
    name = image_name(op, settings, "image", image_setting)
    if not name:
        raise BridgeError(f"Choose an image {purpose}")
    image = get_image(name)
    return str(image_bridge.export_image(image, workdir_inputs(), keep_alpha=False)), image.name


def chosen_model_file(op, settings, kind: str) -> str:
    """The operator's ``model`` file, else the panel's chosen ``kind`` model: an absolute path, or ''
    when there is none on disk. One style of a multi-style network is ``file.safetensors#style``."""
    model = op.model or models.resolve(settings.model_ref, kind)
    model = bpy.path.abspath(model) if model else ""
    return model if model and Path(models.model_file(model)).is_file() else ""


def scene_by_name(name: str):
    return bpy.data.scenes.get(name)


def finish(op, job) -> set[str]:
    """Operator return value for a submitted job; errors go through self.report too."""
    if job.active:
        op.report({"INFO"}, f"{job.label}: started in the background (see the Jobs panel)")
        return {"FINISHED"}
    if job.state == "done":
        op.report({"INFO"}, f"{job.label}: {job.outputs.get('summary', 'done')}")
        return {"FINISHED"}
    if job.state == "cancelled":
        op.report({"WARNING"}, f"{job.label}: cancelled{job.outputs.get('summary_suffix', '')}")
        return {"CANCELLED"}
    op.report({"ERROR"}, f"{job.label} failed: {job.error}")
    return {"CANCELLED"}


def fail(op, message: str) -> set[str]:
    op.report({"ERROR"}, message)
    return {"CANCELLED"}


def file_output(params: dict, kind: str, as_file: bool = True) -> dict:
    """Ask the worker for a PNG it writes into the results folder, opened without a main-thread copy.

    Only for display-referred results (``as_file``): float and HDR results come back as arrays.
    """
    from .. import preferences
    if as_file and job_queue.core_accepts(kind, "output"):
        import uuid
        params["output"] = str(preferences.results_dir() / f"{uuid.uuid4().hex}.png")
    return params


def workdir_inputs():
    folder = job_queue.workdir() / "inputs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def workdir_outputs():
    folder = job_queue.workdir() / "outputs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
