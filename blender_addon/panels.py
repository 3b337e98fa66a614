"""Sidebar panels ("Neural Textures" tab) in the 3D Viewport, Image Editor and Shader Editor.

The same sections are drawn in each editor; the classes are made per editor
by ``_panels_for`` so their ids stay unique.
"""

from __future__ import annotations

import textwrap

import bpy

from . import image_bridge, job_queue, models, preview

CATEGORY = "Neural Textures"
STATE_ICONS = {"starting": "SORTTIME", "queued": "SORTTIME", "running": "PLAY", "done": "CHECKMARK",
               "error": "ERROR", "cancelled": "CANCEL"}


def _wrapped(layout, text: str, width: int = 42, icon: str = "NONE") -> None:
    for index, line in enumerate(textwrap.wrap(text, width) or [""]):
        layout.label(text=line, icon=icon if index == 0 else "BLANK1" if icon != "NONE" else "NONE")


def _split(layout):
    """Blender's property-split layout (labels left, values right) without animation decorators."""
    layout.use_property_split = True
    layout.use_property_decorate = False
    return layout


def _split_props(layout, settings, *names: str) -> None:
    """Rows of ``settings``' properties ``names`` in the property-split layout."""
    _split(layout)
    for name in names:
        layout.prop(settings, name)


def _model_picker(layout, settings, kind: str) -> None:
    row = layout.row(align=True)
    row.prop(settings, "model", text="")
    row.operator("neural.refresh_models", text="", icon="FILE_REFRESH")
    missing = models.missing_ref(settings)
    if missing:  # the .blend chose a model this computer does not have: say so, never swap it
        _wrapped(layout.box(), f"Model not found on this computer: {missing}. Add it to the model library "
                               "or pick another.", icon="ERROR")
        return
    chosen = models.resolve(settings.model_ref, kind)
    model = next((m for m in models.list_models(kind) if str(m.path) == chosen), None)
    if model is not None and model.thumbnail is not None:
        layout.template_icon(icon_value=models.icon_for(model), scale=4.0)


def _live_preview(layout, settings, kind: str) -> None:
    layout.prop(settings, "live_preview")
    path = preview.latest.get(kind, "")
    if settings.live_preview and path:
        icon = models.preview_icon(path)
        if icon:
            layout.template_icon(icon_value=icon, scale=6.0)


def _image_or_file(layout, settings, image: str, file: str, **file_options) -> None:
    """The Blender Image / File switch (``settings.source``) and the field of the chosen one."""
    layout.row().prop(settings, "source", expand=True)
    if settings.source == "IMAGE":
        layout.template_ID(settings, image, open="image.open")
    else:
        layout.prop(settings, file, **file_options)


def draw_generate(layout, context) -> None:
    settings = context.scene.neural_texture
    box = layout.box()
    box.label(text="From Image (no training)", icon="IMAGE_DATA")
    _image_or_file(box, settings, "exemplar", "exemplar_file", text="")
    box.operator("neural.generate_from_image", text="Generate from Image", icon="TEXTURE")
    box = layout.box()
    box.label(text="From Model", icon="ASSET_MANAGER")
    _model_picker(box, settings, "texture_gan")
    if models.materials_of(models.resolve(settings.model_ref, "texture_gan")):
        col = _split(box.column(align=True))
        col.prop(settings, "material")
        col.prop(settings, "material_mix")
        if settings.material_mix != "NONE":
            col.prop(settings, "material_mix_factor", slider=True)
    _live_preview(box, settings, preview.TEXTURE)
    box.operator("neural.generate_texture", text="Generate from Model", icon="TEXTURE")


def draw_generate_size(layout, context) -> None:
    settings = context.scene.neural_texture
    _split(layout)
    col = layout.column(align=True)
    col.prop(settings, "width")
    col.prop(settings, "height")
    row = layout.row(align=True)
    for size, text in ((512, "512"), (1024, "1K"), (2048, "2K"), (4096, "4K")):
        row.operator("neural.texture_size", text=text).size = size
    row = layout.row(align=True)
    row.prop(settings, "seed")
    row.operator("neural.random_seed", text="", icon="FILE_REFRESH")
    layout.prop(settings, "variation", slider=True)
    layout.prop(settings, "tileable")


def draw_generate_material(layout, context) -> None:
    settings = context.scene.neural_texture
    _split_props(layout, settings, "make_material", "pbr_maps", "tile_scale")
    if settings.last_image and settings.last_image in bpy.data.images:
        row = layout.row(align=True)
        row.label(text=settings.last_image, icon="IMAGE_DATA")
        row.operator("neural.make_material", text="", icon="MATERIAL").image = settings.last_image


def draw_train(layout, context) -> None:
    settings = context.scene.neural_train
    _split(layout)
    layout.prop(settings, "kind")
    _image_or_file(layout, settings, "image", "filepath")
    col = layout.column(align=True)
    col.prop(settings, "model_name")
    col.prop(settings, "steps")
    col.prop(settings, "seed")
    layout.prop(settings, "resume")
    layout.operator("neural.train_texture_model", text="Train Model", icon="EXPERIMENTAL")


def draw_vae(layout, context) -> None:
    settings = context.scene.neural_vae
    _model_picker(layout, settings, "texture_vae")
    layout.template_ID(settings, "image", open="image.open")
    _split(layout)
    col = layout.column(align=True)
    col.prop(settings, "strength")
    col.prop(settings, "count")
    col.prop(settings, "seed")
    col.prop(settings, "refine_steps")
    layout.operator("neural.vae_variations", text="Make Variations", icon="SHADERFX")
    if settings.image is not None:  # the family made from this texture: pick one to explore around it
        prefix = f"{settings.image.name} Variation "
        family = [i for i in bpy.data.images if i.name.startswith(prefix) and i.get(image_bridge.RESULT_TAG)]
        for image in family[-8:]:
            row = layout.row(align=True)
            row.label(text=image.name, icon="IMAGE_DATA")
            row.operator("neural.more_like_this", text="More Like This", icon="DUPLICATE").image = image.name


def draw_vae_blend(layout, context) -> None:
    settings = context.scene.neural_vae
    layout.template_ID(settings, "image_b", open="image.open")
    _split(layout)
    layout.prop(settings, "mask")
    layout.prop(settings, "t", slider=True)
    layout.prop(settings, "refine_steps")  # shared with the variations above
    layout.operator("neural.vae_blend", text="Blend Textures", icon="MOD_MASK")


def _renders_motion_vectors(scene) -> bool:
    settings = scene.render.image_settings
    multilayer = getattr(settings, "media_type", "") == "MULTI_LAYER_IMAGE" or \
        settings.file_format == "OPEN_EXR_MULTILAYER"
    return multilayer and _has_vector_pass(scene)


def _has_vector_pass(scene) -> bool:
    return any(layer.use_pass_vector for layer in scene.view_layers if layer.use)


def draw_style(layout, context) -> None:
    settings = context.scene.neural_style
    layout.prop(settings, "method")
    if settings.method == "MODEL":
        _model_picker(layout, settings, "style")
    else:
        layout.template_ID(settings, "style_image", open="image.open")
    layout.row().prop(settings, "source", expand=True)
    if settings.source == "IMAGE":
        layout.template_ID(settings, "image", open="image.open")
        if settings.method == "MODEL":
            _live_preview(layout, settings, preview.STYLE)
    _split(layout)
    if settings.method == "PAINTING":
        layout.prop(settings, "optimize_steps")
    elif settings.method == "ADAIN":
        layout.prop(settings, "adain_refine_steps")
        layout.prop(settings, "adain_max_gain")
    if settings.source == "RENDER":
        layout.prop(settings, "render_colors")
    layout.prop(settings, "strength", slider=True)
    layout.operator("neural.stylize_image", text="Stylize", icon="BRUSH_DATA")
    layout.prop(settings, "auto_stylize")


def draw_style_animation(layout, context) -> None:
    settings = context.scene.neural_style
    _split_props(layout, settings, "frames_dir", "output_dir")
    layout.prop(settings, "temporal_weight", slider=True)
    layout.prop(settings, "use_motion_vectors")
    if settings.use_motion_vectors and not _renders_motion_vectors(context.scene):
        col = layout.column(align=True)
        col.label(text="Flicker-free: render the Vector pass", icon="INFO")
        col.label(text="to OpenEXR MultiLayer frames")
        col.operator("neural.setup_motion_vectors", text="Set Up Motion Vectors", icon="ORIENTATION_VIEW")
    layout.operator("neural.stylize_animation", text="Stylize Frames", icon="SEQUENCE")
    col = layout.column(align=True)  # render farm: Ray through the same job, Flamenco through its add-on
    col.prop(settings, "farm_ray_address")
    col.prop(settings, "farm_chunk_size")
    from .operators.farm import flamenco_enabled
    if flamenco_enabled(context):
        layout.operator("neural.submit_flamenco", text="Submit to Flamenco", icon="NETWORK_DRIVE")


def draw_style_train(layout, context) -> None:
    settings = context.scene.neural_style
    _split_props(layout, settings, "style_image", "train_name", "train_steps")
    layout.operator("neural.train_style_model", text="Train Style", icon="EXPERIMENTAL")


def job_status_text(job) -> str:
    """One line for a job: progress when known, else its message and the time so far."""
    if job.state == "running" and job.total:
        return f"{job.step}/{job.total}  {job.elapsed:.0f} s"
    if job.state == "running":
        return f"{job.message or 'running'}  {job.elapsed:.0f} s"
    return job.message


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
            box.progress(factor=job.fraction, type="BAR", text=job_status_text(job))
        elif job_status_text(job):
            box.label(text=job_status_text(job))
        if job.device:
            box.label(text=f"Device: {job.device}", icon="MEMORY")
        for warning in job.warnings:
            _wrapped(box, warning, icon="ERROR")
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


def draw_status_bar(self, context) -> None:
    """Status-bar progress of the running job (Blender's own progress-bar idiom)."""
    if job_queue._manager is None:
        return
    running = [j for j in job_queue._manager.active_jobs if j.state == "running"]
    if not running:
        return
    job = running[0]
    more = f" (+{len(job_queue._manager.active_jobs) - 1})" if len(job_queue._manager.active_jobs) > 1 else ""
    self.layout.progress(factor=job.fraction, type="RING" if not job.total else "BAR",
                         text=f"{job.label}: {job_status_text(job)}{more}")


# (key, label, draw, options, parent key): top-level panels in artist order, then their subpanels
SECTIONS = (
    ("GENERATE", "Generate Texture", draw_generate, set(), ""),
    ("GENERATE_SIZE", "Size & Seed", draw_generate_size, set(), "GENERATE"),
    ("GENERATE_MATERIAL", "Material", draw_generate_material, set(), "GENERATE"),
    ("TRAIN", "Train From Image", draw_train, {"DEFAULT_CLOSED"}, ""),
    ("VAE", "Variations & Blend", draw_vae, {"DEFAULT_CLOSED"}, ""),
    ("VAE_BLEND", "Blend", draw_vae_blend, {"DEFAULT_CLOSED"}, "VAE"),
    ("STYLE", "Stylize Render", draw_style, set(), ""),
    ("STYLE_ANIMATION", "Animation", draw_style_animation, {"DEFAULT_CLOSED"}, "STYLE"),
    ("STYLE_TRAIN", "New Style", draw_style_train, {"DEFAULT_CLOSED"}, "STYLE"),
    ("JOBS", "Jobs", draw_jobs, set(), ""),
)
SPACES = (("VIEW_3D", "VIEW3D"), ("IMAGE_EDITOR", "IMAGE"), ("NODE_EDITOR", "NODE"))


def _draw_method(draw_fn):
    def draw(self, context):
        draw_fn(self.layout, context)
    return draw


def _panels_for(space: str, prefix: str) -> list[type]:
    panels = []
    for order, (key, label, draw_fn, options, parent) in enumerate(SECTIONS):
        attrs = {"bl_idname": f"NEURAL_PT_{prefix.lower()}_{key.lower()}", "bl_label": label,
                 "bl_space_type": space, "bl_region_type": "UI", "bl_category": CATEGORY,
                 "bl_options": set(options), "bl_order": order, "draw": _draw_method(draw_fn)}
        if parent:
            attrs["bl_parent_id"] = f"NEURAL_PT_{prefix.lower()}_{parent.lower()}"
        if space == "NODE_EDITOR":
            attrs["poll"] = classmethod(lambda cls, context: getattr(context.space_data, "tree_type", "")
                                        == "ShaderNodeTree")
        panels.append(type(attrs["bl_idname"], (bpy.types.Panel,), attrs))
    return panels


classes = tuple(panel for space, prefix in SPACES for panel in _panels_for(space, prefix))
_register_classes, _unregister_classes = bpy.utils.register_classes_factory(classes)


def register():
    _register_classes()
    bpy.types.STATUSBAR_HT_header.append(draw_status_bar)


def unregister():
    bpy.types.STATUSBAR_HT_header.remove(draw_status_bar)
    _unregister_classes()
