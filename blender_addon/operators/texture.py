"""Generate textures, make materials, train texture models (GAN or VAE) from an image or file."""

from __future__ import annotations

import json
from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty

from .. import core_access, image_bridge, job_queue, materials, models, preferences
from ..image_bridge import BridgeError
from .common import WAIT_PROPERTY, fail, finish, image_name, option, scene_by_name, workdir_inputs


class NEURAL_OT_generate_texture(bpy.types.Operator):
    """Generate a new texture image with a texture model (and optionally a material for the selection)"""
    bl_idname = "neural.generate_texture"
    bl_label = "Generate Texture"
    bl_options = {"REGISTER"}

    model: StringProperty(name="Model File", description="Texture model (.safetensors); empty: the panel's choice")
    width: IntProperty(name="Width", default=1024, min=16, max=8192)
    height: IntProperty(name="Height", default=1024, min=16, max=8192)
    seed: IntProperty(name="Seed", default=0, min=0)
    tileable: BoolProperty(name="Tileable", default=True)
    variation: FloatProperty(name="Variation", default=0.0, min=0.0, max=1.0)
    make_material: BoolProperty(name="Make Material", default=True)
    name: StringProperty(name="Image Name", description="Name of the new image (empty: from the model)")
    wait: WAIT_PROPERTY

    def execute(self, context):
        settings = context.scene.neural_texture
        model = self.model or models.resolve(settings.model, "texture_gan")
        if not model:
            return fail(self, "No texture model: train one from an image (Train From Image) or add models "
                              "to the library folder")
        if not Path(bpy.path.abspath(model)).is_file():
            return fail(self, f"Texture model not found: {model}")
        model = bpy.path.abspath(model)
        width, height = option(self, settings, "width"), option(self, settings, "height")
        seed = option(self, settings, "seed")
        params = {"model": model, "width": width, "height": height, "seed": seed,
                  "tileable": option(self, settings, "tileable"), "variation": option(self, settings, "variation")}
        make_mat = option(self, settings, "make_material")
        object_names = [obj.name for obj in context.selected_objects]
        scene_name = context.scene.name
        image_title = self.name or f"{Path(model).stem.replace('_', ' ').title()} {seed}"

        def on_done(job):
            if job.state != "done":
                return
            image = image_bridge.load_result(job.result["image"], image_title)
            job.outputs["image"] = image.name
            scene = scene_by_name(scene_name)
            if scene is not None:
                scene.neural_texture.last_image = image.name
            summary = f"created image '{image.name}' ({image.size[0]}x{image.size[1]})"
            if make_mat:
                material = materials.make_material(image)
                objects = [bpy.data.objects[n] for n in object_names if n in bpy.data.objects]
                assigned = materials.assign_material(material, objects)
                job.outputs.update(material=material.name, objects=assigned)
                if assigned:
                    summary += f", material '{material.name}' on {len(assigned)} object(s)"
            job.outputs["summary"] = summary

        job = job_queue.submit("texture_gan.generate", params, label=f"Generate {width}x{height}",
                               on_done=on_done, wait=self.wait or None)
        return finish(self, job)


class NEURAL_OT_make_material(bpy.types.Operator):
    """Make a material from an image (Principled BSDF, image in Base Color) and assign it to the selected objects"""
    bl_idname = "neural.make_material"
    bl_label = "Make Material"
    bl_options = {"REGISTER", "UNDO"}

    image: StringProperty(name="Image", description="Image name; empty: the last generated texture")

    def execute(self, context):
        name = self.image or context.scene.neural_texture.last_image
        image = bpy.data.images.get(name) if name else None
        if image is None:
            return fail(self, "No image to make a material from: generate a texture first or name an image")
        material = materials.make_material(image)
        assigned = materials.assign_material(material, context.selected_objects)
        if not assigned:
            self.report({"WARNING"}, f"Material '{material.name}' created; no selected object can hold it")
        else:
            self.report({"INFO"}, f"Material '{material.name}' assigned to {', '.join(assigned)}")
        return {"FINISHED"}


class NEURAL_OT_train_texture_model(bpy.types.Operator):
    """Train a texture model from an image; it is saved to the model library and selected when done"""
    bl_idname = "neural.train_texture_model"
    bl_label = "Train Model"
    bl_options = {"REGISTER"}

    kind: EnumProperty(name="Model Type", items=[("texture_gan", "Texture Generator", ""),
                                                ("texture_vae", "Variation Model", "")])
    image: StringProperty(name="Image", description="Blender image to learn from")
    filepath: StringProperty(name="File", subtype="FILE_PATH", description="Or an image file")
    model_name: StringProperty(name="Name", default="my_texture")
    steps: IntProperty(name="Steps", default=2000, min=1)
    seed: IntProperty(name="Seed", default=0, min=0)
    resume: BoolProperty(name="Resume", default=True)
    config: StringProperty(name="Config (JSON)", options={"HIDDEN"},
                           description="Advanced: model/training config overrides as a JSON object")
    checkpoint_every: IntProperty(name="Checkpoint Every", default=200, min=1, options={"HIDDEN"})
    wait: WAIT_PROPERTY

    def execute(self, context):
        settings = context.scene.neural_train
        kind = option(self, settings, "kind")
        try:
            if self.properties.is_property_set("filepath") or (
                    not self.properties.is_property_set("image") and settings.source == "FILE"):
                path = bpy.path.abspath(self.filepath if self.properties.is_property_set("filepath")
                                        else settings.filepath)
                if not path or not Path(path).is_file():
                    return fail(self, f"Exemplar file not found: {path or '(none chosen)'}")
                exemplar = path
            else:
                image = bpy.data.images.get(image_name(self, settings, "image"))
                if image is None:
                    return fail(self, "Choose an exemplar image to learn from")
                exemplar = str(image_bridge.export_image(image, workdir_inputs(), keep_alpha=False))
            config = json.loads(self.config) if self.config else None
        except BridgeError as exc:
            return fail(self, str(exc))
        except ValueError as exc:
            return fail(self, f"Config is not valid JSON: {exc}")
        name = option(self, settings, "model_name") or "my_texture"
        library = core_access.library()
        out = preferences.library_dir(context) / library.model_file_name(name)
        resume = option(self, settings, "resume")
        if out.exists() and not resume:
            out = library.unique_model_path(out.parent, name)
        steps = option(self, settings, "steps")
        params = {"exemplars": [exemplar], "out_path": str(out), "steps": steps,
                  "seed": option(self, settings, "seed"), "resume": resume, "config": config,
                  "checkpoint_every": self.checkpoint_every}
        scene_name = context.scene.name

        def on_done(job):
            models.refresh()
            model_path = job.result.get("model")
            if not model_path:
                return
            job.outputs["model"] = model_path
            scene = scene_by_name(scene_name)
            if scene is not None:
                target = scene.neural_texture if kind == "texture_gan" else scene.neural_vae
                try:
                    target.model = model_path
                except TypeError:
                    pass  # not listed (library folder changed meanwhile)
            if job.state == "done":
                job.outputs["summary"] = f"model saved to {model_path}"
            else:
                job.outputs["summary_suffix"] = f"; the last checkpoint was kept in {model_path}"

        label = ("Train texture generator" if kind == "texture_gan" else "Train variation model") + f" '{out.stem}'"
        job = job_queue.submit(f"{kind}.train", params, label=label, on_done=on_done, wait=self.wait or None)
        return finish(self, job)


classes = (NEURAL_OT_generate_texture, NEURAL_OT_make_material, NEURAL_OT_train_texture_model)
register, unregister = bpy.utils.register_classes_factory(classes)
