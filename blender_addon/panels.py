"""Sidebar panels ("Neural Textures" tab) in the 3D Viewport, Image Editor and Shader Editor.

The same sections are drawn in each editor; the classes are made per editor
by ``_panels_for`` so their ids stay unique.
"""

from __future__ import annotations

import textwrap

import bpy

from . import job_queue, models

CATEGORY = "Neural Textures"
STATE_ICONS = {"starting": "SORTTIME", "queued": "SORTTIME", "running": "PLAY", "done": "CHECKMARK",
               "error": "ERROR", "cancelled": "CANCEL"}


def _wrapped(layout, text: str, width: int = 42, icon: str = "NONE") -> None:
    for index, line in enumerate(textwrap.wrap(text, width) or [""]):
        layout.label(text=line, icon=icon if index == 0 else "BLANK1" if icon != "NONE" else "NONE")


def _model_picker(layout, settings, kind: str) -> None:
    row = layout.row(align=True)
    row.prop(settings, "model", text="")
    row.operator("neural.refresh_models", text="", icon="FILE_REFRESH")
    chosen = models.resolve(settings.model, kind)
    model = next((m for m in models.list_models(kind) if str(m.path) == chosen), None)
    if model is not None and model.thumbnail is not None:
        layout.template_icon(icon_value=models.icon_for(model), scale=4.0)


def draw_generate(layout, context) -> None:
    settings = context.scene.neural_texture
    _model_picker(layout, settings, "texture_gan")
    col = layout.column(align=True)
    row = col.row(align=True)
    row.prop(settings, "width")
    row.prop(settings, "height")
    col.prop(settings, "seed")
    col.prop(settings, "variation", slider=True)
    row = layout.row()
    row.prop(settings, "tileable")
    row.prop(settings, "make_material")
    layout.operator("neural.generate_texture", icon="TEXTURE")
    if settings.last_image and settings.last_image in bpy.data.images:
        row = layout.row(align=True)
        row.label(text=settings.last_image, icon="IMAGE_DATA")
        row.operator("neural.make_material", text="", icon="MATERIAL").image = settings.last_image


def draw_train(layout, context) -> None:
    settings = context.scene.neural_train
    layout.prop(settings, "kind", text="")
    layout.row().prop(settings, "source", expand=True)
    if settings.source == "IMAGE":
        layout.template_ID(settings, "image", open="image.open")
    else:
        layout.prop(settings, "filepath", text="")
    col = layout.column(align=True)
    col.prop(settings, "model_name")
    col.prop(settings, "steps")
    col.prop(settings, "seed")
    layout.prop(settings, "resume")
    layout.operator("neural.train_texture_model", icon="EXPERIMENTAL")


def draw_vae(layout, context) -> None:
    settings = context.scene.neural_vae
    _model_picker(layout, settings, "texture_vae")
    layout.template_ID(settings, "image", open="image.open")
    col = layout.column(align=True)
    col.prop(settings, "strength")
    col.prop(settings, "count")
    col.prop(settings, "seed")
    layout.operator("neural.vae_variations", icon="SHADERFX")
    box = layout.box()
    box.label(text="Blend with")
    box.template_ID(settings, "image_b", open="image.open")
    box.prop(settings, "mask")
    box.prop(settings, "t", slider=True)
    box.operator("neural.vae_blend", icon="MOD_MASK")


def _renders_motion_vectors(scene) -> bool:
    settings = scene.render.image_settings
    multilayer = getattr(settings, "media_type", "") == "MULTI_LAYER_IMAGE" or \
        settings.file_format == "OPEN_EXR_MULTILAYER"
    return multilayer and _has_vector_pass(scene)


def _has_vector_pass(scene) -> bool:
    return any(layer.use_pass_vector for layer in scene.view_layers if layer.use)


def draw_style(layout, context) -> None:
    settings = context.scene.neural_style
    layout.row().prop(settings, "method", expand=True)
    if settings.method == "MODEL":
        _model_picker(layout, settings, "style")
    else:
        layout.template_ID(settings, "style_image", open="image.open")
        layout.prop(settings, "optimize_steps")
    layout.row().prop(settings, "source", expand=True)
    if settings.source == "IMAGE":
        layout.template_ID(settings, "image", open="image.open")
    else:
        layout.prop(settings, "render_colors")
    layout.prop(settings, "strength", slider=True)
    layout.operator("neural.stylize_image", icon="BRUSH_DATA")
    layout.prop(settings, "auto_stylize")
    box = layout.box()
    box.label(text="Animation", icon="RENDER_ANIMATION")
    box.prop(settings, "frames_dir")
    box.prop(settings, "output_dir")
    box.prop(settings, "temporal_weight", slider=True)
    box.prop(settings, "use_motion_vectors")
    if settings.use_motion_vectors and not _renders_motion_vectors(context.scene):
        col = box.column(align=True)
        col.label(text="Flicker-free: render the Vector pass", icon="INFO")
        col.label(text="to OpenEXR MultiLayer frames")
        col.operator("neural.setup_motion_vectors", icon="ORIENTATION_VIEW")
    box.operator("neural.stylize_animation", icon="SEQUENCE")
    box = layout.box()
    box.label(text="New Style", icon="EXPERIMENTAL")
    box.prop(settings, "style_image")
    box.prop(settings, "train_name")
    box.prop(settings, "train_steps")
    box.operator("neural.train_style_model")


def draw_jobs(layout, context) -> None:
    manager = job_queue.manager()
    ui = context.window_manager.neural_ui
    jobs = list(manager.jobs.values())[::-1]
    if not ui.show_finished:
        jobs = [j for j in jobs if j.active]
    if not jobs:
        layout.label(text="No jobs", icon="INFO")
    for job in jobs:
        box = layout.box()
        row = box.row(align=True)
        row.label(text=job.label, icon=STATE_ICONS.get(job.state, "DOT"))
        if job.active:
            row.operator("neural.cancel_job", text="", icon="X").job_id = job.id
        if job.state == "running" and job.total:
            text = f"{job.step}/{job.total}  {job.elapsed:.0f} s"
            box.progress(factor=job.fraction, type="BAR", text=text)
        elif job.message:
            box.label(text=job.message)
        if job.losses and job.active:
            box.label(text="  ".join(f"{k} {v:.3g}" for k, v in list(job.losses.items())[:3]))
        if job.preview and job.active:
            icon = models.preview_icon(job.preview)
            if icon:
                box.template_icon(icon_value=icon, scale=6.0)
        if job.state == "error":
            _wrapped(box, job.error, icon="ERROR")
        elif job.outputs.get("summary"):
            _wrapped(box, job.outputs["summary"])
    row = layout.row(align=True)
    row.prop(ui, "show_finished", text="Finished", toggle=True)
    row.operator("neural.clear_jobs", text="Clear", icon="TRASH")
    row = layout.row()
    row.enabled = manager.worker_running
    row.operator("neural.stop_worker", text="Stop Worker (free GPU)", icon="CANCEL")


SECTIONS = (
    ("GENERATE", "Generate Texture", draw_generate, set()),
    ("TRAIN", "Train From Image", draw_train, {"DEFAULT_CLOSED"}),
    ("VAE", "Variations & Blend", draw_vae, {"DEFAULT_CLOSED"}),
    ("STYLE", "Stylize Render", draw_style, set()),
    ("JOBS", "Jobs", draw_jobs, set()),
)
SPACES = (("VIEW_3D", "VIEW3D"), ("IMAGE_EDITOR", "IMAGE"), ("NODE_EDITOR", "NODE"))


def _draw_method(draw_fn):
    def draw(self, context):
        draw_fn(self.layout, context)
    return draw


def _panels_for(space: str, prefix: str) -> list[type]:
    panels = []
    for order, (key, label, draw_fn, options) in enumerate(SECTIONS):
        attrs = {"bl_idname": f"NEURAL_PT_{prefix.lower()}_{key.lower()}", "bl_label": label,
                 "bl_space_type": space, "bl_region_type": "UI", "bl_category": CATEGORY,
                 "bl_options": set(options), "bl_order": order, "draw": _draw_method(draw_fn)}
        if space == "NODE_EDITOR":
            attrs["poll"] = classmethod(lambda cls, context: getattr(context.space_data, "tree_type", "")
                                        == "ShaderNodeTree")
        panels.append(type(attrs["bl_idname"], (bpy.types.Panel,), attrs))
    return panels


classes = tuple(panel for space, prefix in SPACES for panel in _panels_for(space, prefix))
register, unregister = bpy.utils.register_classes_factory(classes)
