"""Stylize the Render Result or any image into a new image, stylize animation frames, train styles."""

from __future__ import annotations

import json
from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty

from .. import core_access, image_bridge, job_queue, models, preferences
from ..properties import STYLE_METHODS as METHOD_ITEMS
from ..image_bridge import BridgeError
from .common import (WAIT_PROPERTY, chosen_model_file, fail, file_output, finish, get_image, image_name, option,
                     scene_by_name, scene_has, workdir_inputs)


NO_STYLE_MODEL = "No style model: pick a bundled style or train one"

# Options of both stylize operators. Shared definitions rather than a mixin class: a mixin's properties would
# come first in the redo panel, and each operator lists them among its own.
STYLE_MODEL_PROPERTY = StringProperty(name="Style Model File",
                                      description="Style model (.safetensors); empty: the panel's choice")
METHOD_PROPERTY = EnumProperty(name="Style Source", description="Where the style comes from", items=METHOD_ITEMS)
PAINTING_PROPERTY = StringProperty(name="Painting", description="Blender image with the painting (Any Painting)")
STRENGTH_PROPERTY = FloatProperty(name="Strength", default=1.0, min=0.0, max=1.0,
                                  description="0 keeps the original, 1 is the full style")
DECODER_PROPERTY = StringProperty(name="AdaIN Decoder File",
                                  description="AdaIN decoder (.safetensors) for Any Painting (Fast), e.g. one trained "
                                              "with 'python -m core style adain-train'; empty: the bundled one")


def _chosen_style(op, settings) -> tuple[str, str, str]:
    """(method, style model path, painting image name) from the operator or the panel; BridgeError when the
    chosen method's model or painting is missing."""
    method = option(op, settings, "method")
    if method == "MODEL":
        model = chosen_model_file(op, settings, "style")
        if not model:
            raise BridgeError(NO_STYLE_MODEL)
        return method, model, ""
    painting = image_name(op, settings, "style_image")
    if not painting:
        raise BridgeError("Choose the painting (a Blender image) to take the style from")
    return method, "", painting


def stylize_render_or_image(scene, source: str, image: str, model: str, strength: float, render_colors: str,
                            wait: bool, label_prefix: str = "Stylize", painting: str = "", steps: int = 40,
                            max_side: int = 1024, method: str = "PAINTING", refine_steps: int = 0,
                            decoder: str = "", max_gain: float | None = None):
    """Submit a stylize job; the result is always a new image (the original is never touched).

    With ``painting`` (a Blender image name) the style comes from that image:
    in one pass (``method`` "ADAIN") or by optimisation ("PAINTING", best
    quality); else from the fast style ``model``. AdaIN takes ``refine_steps``
    optimisation steps from its one-pass result (0: none), its gain limit
    ``max_gain`` (None: the core's default) and its ``decoder`` file (empty:
    the bundled one).
    """
    painting_file = None
    if painting:
        painting_file = str(image_bridge.export_image(get_image(painting, "style painting"), workdir_inputs(),
                                                      keep_alpha=False))
    # Scene-linear pixels travel HDR-encoded (highlights above 1.0 survive) and are decoded on return.
    if source == "RENDER":
        hdr = render_colors == "LINEAR"
        path = image_bridge.render_result_to_file(scene, workdir_inputs(), linear=hdr)
        title = f"Render Stylized ({painting or Path(model).stem})"
        like_name = ""
    else:
        blender_image = get_image(image, "image to stylize")
        hdr = image_bridge.is_linear(blender_image)
        path = image_bridge.export_image(blender_image, workdir_inputs(), hdr=hdr)
        title = f"{blender_image.name} Stylized"
        like_name = blender_image.name
    scene_name = scene.name

    def on_done(job):
        if job.state == "done":
            like = bpy.data.images.get(like_name) if like_name else None
            result = image_bridge.load_result(job.result["image"], title, like=like, hdr=hdr)
            if result.is_float and source == "RENDER":
                result.use_view_as_render = True  # shown with the scene's view transform, like the render
            job.outputs.update(image=result.name, summary=f"created '{result.name}'")
            target = scene_by_name(scene_name)
            if target is not None:
                image_bridge.keep_as_latest(result, target.neural_style.last_image)
                target.neural_style.last_image = result.name

    label = f"{label_prefix} {'render' if source == 'RENDER' else image}"
    if painting_file and method == "ADAIN":
        params = {"image": str(path), "style": painting_file, "alpha": strength}
        # left out when unused: a decoder-only stylization also runs on a core without these parameters
        if refine_steps > 0:
            params["refine_steps"] = int(refine_steps)
        if max_gain is not None:
            params["max_gain"] = float(max_gain)
        if decoder:
            params["model"] = decoder
        return job_queue.submit("style.stylize_adain", file_output(params, "style.stylize_adain", as_file=not hdr),
                                label=f"{label} like '{painting}' (fast)", on_done=on_done, wait=wait)
    if painting_file:
        return job_queue.submit("style.stylize_optimize",
                                {"content": str(path), "style": painting_file, "steps": steps, "strength": strength,
                                 "max_side": max_side},
                                label=f"{label} like '{painting}'", on_done=on_done, wait=wait)
    return job_queue.submit("style.stylize", file_output({"model": model, "image": str(path), "strength": strength},
                                                         "style.stylize", as_file=not hdr),
                            label=label, on_done=on_done, wait=wait)


class _StylizeJob:
    """Mixin of the stylize operators: the chosen style (model or painting) is read here, ``submit_job`` does
    the rest. Methods only: see the note on the shared properties above."""

    def execute(self, context):
        settings = context.scene.neural_style
        try:
            return self.submit_job(context, settings, *_chosen_style(self, settings))
        except BridgeError as exc:
            return fail(self, str(exc))


def output_folder(chosen: str, frames_folder: Path) -> str:
    """An absolute output folder, always: the worker runs elsewhere and a relative path would land (and be
    deleted) in its temporary folder. '//' paths need a saved .blend; in an unsaved one they go beside the
    frames folder (``<frames>_stylized``, or the named subfolder)."""
    chosen = chosen or "//stylized/"
    if chosen.startswith("//") and not bpy.data.filepath:
        name = chosen[2:].strip("/\\") or "stylized"
        return str(frames_folder.parent / (f"{frames_folder.name}_{name}"))
    return str(Path(bpy.path.abspath(chosen)).resolve())


class NEURAL_OT_stylize_image(_StylizeJob, bpy.types.Operator):
    """Stylize the last render or an image into a new image with a style model"""
    bl_idname = "neural.stylize_image"
    bl_label = "Neural Textures: Stylize Image"
    bl_options = {"REGISTER", "UNDO"}

    source: EnumProperty(name="Source", description="What to stylize",
                         items=[("RENDER", "Render Result", "The last render"), ("IMAGE", "Image", "A Blender image")])
    image: StringProperty(name="Image", description="Image to stylize (source Image)")
    model: STYLE_MODEL_PROPERTY
    strength: STRENGTH_PROPERTY
    render_colors: EnumProperty(name="Render Colors", description="Which values of the render are stylized",
                                items=[("DISPLAY", "As Displayed", "With the scene's view transform"),
                                       ("LINEAR", "Scene Linear", "Scene-linear values, highlights above 1.0 kept")])
    method: METHOD_PROPERTY
    style_image: PAINTING_PROPERTY
    steps: IntProperty(name="Steps", default=40, min=1, max=5000,
                       description="Optimisation steps at the coarsest scale (Any Painting, Best)")
    max_side: IntProperty(name="Max Side", default=1024, min=32, max=4096,
                          description="Optimisation works at most at this size (the result is scaled back)")
    refine_steps: IntProperty(name="Refine Steps", default=0, min=0, max=200,
                              description="Any Painting (Fast): optimisation steps (at up to 512 px) from the one-pass "
                                          "result, closer to Any Painting (Best) and slower; 0: the one pass alone")
    max_gain: FloatProperty(name="Gain Limit", default=1.25, min=0.5, max=100.0, soft_max=8.0,
                            description="Any Painting (Fast): how much the painting may amplify the frame's own "
                                        "contrast; low keeps flat areas of renders clean (100: no limit)")
    decoder: DECODER_PROPERTY
    wait: WAIT_PROPERTY

    poll = classmethod(lambda cls, context: scene_has(context, "neural_style"))

    def submit_job(self, context, settings, method: str, model: str, painting: str) -> set[str]:
        source, image = option(self, settings, "source"), image_name(self, settings, "image")
        shown = getattr(context.space_data, "image", None) if context.space_data else None
        if shown is not None and source == "IMAGE" and not image:
            # Image Editor, no image chosen: stylize the one shown there
            source, image = ("RENDER", "") if shown.type == "RENDER_RESULT" else ("IMAGE", shown.name)
        job = stylize_render_or_image(context.scene, source, image, model, option(self, settings, "strength"),
                                      option(self, settings, "render_colors"), self.wait or None,
                                      painting=painting, steps=option(self, settings, "steps", "optimize_steps"),
                                      max_side=self.max_side, method=method,
                                      refine_steps=option(self, settings, "refine_steps", "adain_refine_steps"),
                                      max_gain=option(self, settings, "max_gain", "adain_max_gain"),
                                      decoder=bpy.path.abspath(self.decoder) if self.decoder else "")
        return finish(self, job)


def _farm_params(settings) -> dict:
    """Chunks over a Ray cluster when the panel names one (the worker says how to install Ray if missing)."""
    address = settings.farm_ray_address.strip()
    return {"ray_address": address, "chunk_size": settings.farm_chunk_size} if address else {}


class NEURAL_OT_stylize_animation(_StylizeJob, bpy.types.Operator):
    """Stylize every frame in a folder of rendered frames into an output folder (temporally smoothed)"""
    bl_idname = "neural.stylize_animation"
    bl_label = "Neural Textures: Stylize Frames"
    bl_options = {"REGISTER"}

    frames_dir: StringProperty(name="Frames", subtype="DIR_PATH", description="Folder with the rendered frames")
    output_dir: StringProperty(name="Output", subtype="DIR_PATH",
                               description="Folder for the stylized frames (in an unsaved file, '//' paths go "
                                           "beside the frames folder)")
    model: STYLE_MODEL_PROPERTY
    method: METHOD_PROPERTY
    style_image: PAINTING_PROPERTY
    strength: STRENGTH_PROPERTY
    temporal_weight: FloatProperty(name="Temporal Smoothing", default=0.7, min=0.0, max=0.95,
                                   description="How much each frame follows the previous one (less flicker)")
    use_motion_vectors: BoolProperty(
        name="Use Motion Vectors", default=True,
        description="Use the Vector pass of OpenEXR MultiLayer frames as exact motion (else motion is estimated)")
    decoder: DECODER_PROPERTY
    wait: WAIT_PROPERTY

    poll = classmethod(lambda cls, context: scene_has(context, "neural_style"))

    def submit_job(self, context, settings, method: str, model: str, painting: str) -> set[str]:
        # Refine Steps is a still-image knob: the sequence job's AdaIN frames are one pass each
        if method == "MODEL":
            style_params = {"method": "model", "model": model}
        else:
            # fast: one pass per frame; best: optimisation warm-started from the previous frame
            style_params = {"method": "adain" if method == "ADAIN" else "optimize",
                            "style": str(image_bridge.export_image(get_image(painting, "style painting"),
                                                                   workdir_inputs(), keep_alpha=False))}
            if method == "ADAIN":
                style_params["max_gain"] = settings.adain_max_gain  # the panel's Gain Limit
                if self.decoder:
                    style_params["model"] = bpy.path.abspath(self.decoder)
        frames_dir = option(self, settings, "frames_dir") or str(Path(bpy.path.abspath(context.scene.render.filepath)).parent)
        frames = image_bridge.image_files_in(frames_dir)
        output_dir = output_folder(option(self, settings, "output_dir"), frames[0].parent)
        if Path(output_dir).resolve() == frames[0].parent.resolve():
            return fail(self, "The output folder must differ from the frames folder (frames are never overwritten)")

        def on_done(job):
            if job.state == "done":
                # warnings show under the job in the Jobs panel (job.warnings)
                job.outputs["summary"] = f"{len(job.result.get('frames', []))} frames written to {output_dir}"

        job = job_queue.submit("style.stylize_sequence",
                               {**style_params, "frames": [str(f) for f in frames], "output_dir": output_dir,
                                "strength": option(self, settings, "strength"),
                                "temporal_weight": option(self, settings, "temporal_weight"),
                                "use_motion_vectors": bool(option(self, settings, "use_motion_vectors")),
                                # the output folder holds earlier stylized frames, never the inputs (checked above)
                                "overwrite": True, **_farm_params(settings)},
                               label=f"Stylize {len(frames)} frames", on_done=on_done, wait=self.wait or None)
        return finish(self, job)


class NEURAL_OT_setup_motion_vectors(bpy.types.Operator):
    """Render for flicker-free stylization: Vector pass on, motion blur off, OpenEXR MultiLayer output"""
    bl_idname = "neural.setup_motion_vectors"
    bl_label = "Neural Textures: Set Up Motion Vectors"
    bl_options = {"REGISTER", "UNDO"}

    poll = classmethod(lambda cls, context: scene_has(context, "neural_style"))

    def execute(self, context):
        scene = context.scene
        for layer in scene.view_layers:
            layer.use_pass_vector = True
        # motion blur smears the Vector pass (and Cycles then stores blurred vectors)
        scene.render.use_motion_blur = False
        image_settings = scene.render.image_settings
        if "media_type" in image_settings.bl_rna.properties:  # Blender 5: multilayer is a media type
            image_settings.media_type = "MULTI_LAYER_IMAGE"
        image_settings.file_format = "OPEN_EXR_MULTILAYER"
        self.report({"INFO"}, "Vector pass on, motion blur off, output OpenEXR MultiLayer: render the animation")
        return {"FINISHED"}


class NEURAL_OT_train_style_model(bpy.types.Operator):
    """Train a fast style model from a painting, on rendered frames; saved to the model library"""
    bl_idname = "neural.train_style_model"
    bl_label = "Neural Textures: Train Style Model"
    bl_options = {"REGISTER"}

    style_image: StringProperty(name="Style Image", description="Blender image with the painting to learn")
    frames_dir: StringProperty(name="Frames", subtype="DIR_PATH",
                               description="Rendered frames to train on (empty: frames the core makes itself)")
    name: StringProperty(name="Name", default="my_style", description="File name in the model library")
    steps: IntProperty(name="Steps", default=2000, min=1, description="Training steps (more is better and slower)")
    config: StringProperty(name="Config (JSON)", options={"HIDDEN"},
                           description="Advanced: StyleTransferConfig overrides as a JSON object")
    wait: WAIT_PROPERTY

    poll = classmethod(lambda cls, context: scene_has(context, "neural_style"))

    def execute(self, context):
        settings = context.scene.neural_style
        try:
            style = get_image(image_name(self, settings, "style_image"), "style image (a painting)")
            style_file = str(image_bridge.export_image(style, workdir_inputs(), keep_alpha=False))
            frames_dir = option(self, settings, "frames_dir")
            # no frames: the core trains on frames it generates itself
            frames = [str(f) for f in image_bridge.image_files_in(frames_dir)] if frames_dir else None
            config = json.loads(self.config) if self.config else None
        except BridgeError as exc:
            return fail(self, str(exc))
        except ValueError as exc:
            return fail(self, f"Config is not valid JSON: {exc}")
        library = core_access.library()
        out = preferences.library_dir(context) / library.model_file_name(option(self, settings, "name", "train_name"))
        config = dict(config or {})
        config.setdefault("name", out.stem)  # else the core names it after the temporary style file
        scene_name = context.scene.name

        def on_done(job):
            models.refresh()
            if job.result.get("model"):
                scene = scene_by_name(scene_name)
                if scene is not None:
                    models.choose(scene.neural_style, job.result["model"])
                job.outputs["summary"] = f"style saved to {job.result['model']}"

        job = job_queue.submit("style.train", {"style": style_file, "frames": frames,
                                               "out_path": str(out), "config": config,
                                               "steps": option(self, settings, "steps", "train_steps")},
                               label=f"Train style '{out.stem}'", on_done=on_done, wait=self.wait or None)
        return finish(self, job)


classes = (NEURAL_OT_stylize_image, NEURAL_OT_stylize_animation, NEURAL_OT_setup_motion_vectors,
           NEURAL_OT_train_style_model)
register, unregister = bpy.utils.register_classes_factory(classes)
