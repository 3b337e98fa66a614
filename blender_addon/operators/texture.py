"""Generate textures (from a model, or from any image without training), make materials with PBR maps,
train texture models (GAN or VAE) from an image or file."""

from __future__ import annotations

import json
import random
from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty

from .. import core_access, image_bridge, job_queue, materials, models, preferences
from ..image_bridge import BridgeError
from ..properties import MAX_SIZE
from .common import (WAIT_PROPERTY, fail, file_output, finish, image_or_file, option, scene_by_name, texture_poll,
                     workdir_inputs)

SIZE_PROPERTIES = dict(min=16, max=1 << 16, soft_max=MAX_SIZE, subtype="PIXEL")
# The size, seed and tiling options of both new-texture operators (Generate, Generate from Image).
WIDTH_PROPERTY = IntProperty(name="Width", default=1024, description="Width of the new texture", **SIZE_PROPERTIES)
HEIGHT_PROPERTY = IntProperty(name="Height", default=1024, description="Height of the new texture", **SIZE_PROPERTIES)
SEED_PROPERTY = IntProperty(name="Seed", default=0, min=0, description="Same seed, same texture")
TILEABLE_PROPERTY = BoolProperty(name="Tileable", default=True, description="Seamless when repeated")


def check_size(width: int, height: int) -> str:
    """'' when the size is fine, else the one-line reason (never clamped silently)."""
    if max(width, height) > MAX_SIZE:
        return f"{width}x{height} is larger than {MAX_SIZE} px per side: generate at most {MAX_SIZE}x{MAX_SIZE}"
    return ""


def bring_in_texture(job, image_title: str, scene_name: str, make_mat: bool, object_names: list[str],
                     tile_scale: float, pbr: bool) -> None:
    """on_done for every texture job: open the result, keep it as the latest, make/update the material."""
    info = job.result["image"]
    image = image_bridge.load_result(info, image_title)
    job.outputs["image"] = image.name
    scene = scene_by_name(scene_name)
    if scene is not None:
        image_bridge.keep_as_latest(image, scene.neural_texture.last_image)
        scene.neural_texture.last_image = image.name
    # size from the result, not image.size: that would read the whole file on the main thread
    summary = f"created image '{image.name}' ({info.get('width', '?')}x{info.get('height', '?')})"
    if make_mat:
        objects = [bpy.data.objects[n] for n in object_names if n in bpy.data.objects]
        objects = [obj for obj in objects if materials.can_hold_material(obj)]
        if objects:
            material = materials.make_material(image, objects=objects, tile_scale=tile_scale)
            assigned = materials.assign_material(material, objects)
            job.outputs.update(material=material.name, objects=assigned)
            summary += f", material '{material.name}' on {len(assigned)} object(s)"
            if pbr and job_queue.core_has_job("texture.pbr"):
                submit_pbr(image, material.name, wait=False)
        else:
            summary += "; no material (select an object to get one)"
    job.outputs["summary"] = summary


def submit_pbr(image: bpy.types.Image, material_name: str, wait: bool | None = None):
    """Derive height/normal/roughness/AO maps from ``image`` in the worker and wire them into the material."""
    on_disk = bpy.path.abspath(image.filepath) if image.filepath and not image.is_dirty else ""
    if on_disk and Path(on_disk).is_file() and image.packed_file is None:
        source_file = on_disk  # a result the worker wrote: no pixel read on the main thread
    else:
        source_file = str(image_bridge.export_image(image, workdir_inputs(), keep_alpha=False))
    albedo_name = image.name

    def on_done(job):
        if job.state != "done":
            return
        albedo = bpy.data.images.get(albedo_name)
        material = bpy.data.materials.get(material_name)
        if albedo is None or material is None:
            return
        maps = {}
        for key, info in (job.result.get("maps") or {}).items():
            if key in materials.MAP_NODES:
                maps[key] = image_bridge.load_result(info, f"{albedo_name} {key.title()}",
                                                     colorspace=materials.MAP_NODES[key][1])
        materials.make_material(albedo, maps=maps, material=material,
                                tile_scale=material.node_tree.nodes["Neural Mapping"].inputs["Scale"].default_value[0])
        job.outputs.update(maps=sorted(maps), summary=f"PBR maps ({', '.join(sorted(maps))}) in '{material.name}'")

    return job_queue.submit("texture.pbr", {"image": source_file},
                            label=f"PBR maps of '{albedo_name}'", on_done=on_done, wait=wait)


def submit_texture_job(op, context, kind: str, params: dict, title: str, label: str):
    """Submit a texture job; its image comes in as ``title``, with a material on the selection if asked."""
    settings = context.scene.neural_texture
    make_mat = option(op, settings, "make_material")
    object_names = [obj.name for obj in context.selected_objects]
    scene_name = context.scene.name
    tile_scale, pbr = settings.tile_scale, settings.pbr_maps

    def on_done(job):
        if job.state == "done":
            bring_in_texture(job, title, scene_name, make_mat, object_names, tile_scale, pbr)

    return finish(op, job_queue.submit(kind, params, label=label, on_done=on_done, wait=op.wait or None))


def makes_new_texture(image_name_from: str):
    """Class decorator of the operators that make a new texture image: their Make Material, Image Name and
    Wait options and their poll, declared once.

    The options go after the class's own properties, where the redo panel has always listed them (a mixin
    class's properties would come first)."""
    def decorate(cls):
        cls.__annotations__ = {
            **cls.__dict__.get("__annotations__", {}),
            "make_material": BoolProperty(name="Make Material", default=True, description="Make or update a "
                                          "material with the texture on the selected objects"),
            "name": StringProperty(name="Image Name", description=f"Name of the new image (empty: from "
                                                                  f"{image_name_from})"),
            "wait": WAIT_PROPERTY}
        cls.poll = classmethod(lambda cls, context: texture_poll(context))
        return cls
    return decorate


@makes_new_texture(image_name_from="the model")
class NEURAL_OT_generate_texture(bpy.types.Operator):
    """Generate a new tileable texture image with a texture model (and a material for the selected objects)"""
    bl_idname = "neural.generate_texture"
    bl_label = "Neural Textures: Generate Texture"
    bl_options = {"REGISTER", "UNDO"}

    model: StringProperty(name="Model File", description="Texture model (.safetensors); empty: the panel's choice")
    width: WIDTH_PROPERTY
    height: HEIGHT_PROPERTY
    seed: SEED_PROPERTY
    tileable: TILEABLE_PROPERTY
    variation: FloatProperty(name="Variation", default=0.0, min=0.0, max=1.0,
                             description="How far the texture wanders from the exemplar's look")
    material: StringProperty(name="Material", description="Material of a materials model; empty: the panel's")
    mix: StringProperty(name="Mix", description="Materials to interpolate, NAME:W,NAME:W; empty: the panel's")

    def material_params(self) -> dict:
        return {"mix": self.mix} if self.mix else ({"material": self.material} if self.material else {})

    def execute(self, context):
        settings = context.scene.neural_texture
        model = self.model or models.resolve(settings.model_ref, "texture_gan")
        if not model:
            return fail(self, "No texture model: train one from an image (Train From Image) or add models "
                              "to the library folder")
        if not Path(bpy.path.abspath(model)).is_file():
            missing = "" if self.model else models.missing_ref(settings)
            return fail(self, f"Texture model not found: {missing or model}"
                              + (" (this file chose a model that is not on this computer)" if missing else ""))
        model = bpy.path.abspath(model)
        width, height = option(self, settings, "width"), option(self, settings, "height")
        if check_size(width, height):
            return fail(self, check_size(width, height))
        seed = option(self, settings, "seed")
        params = file_output({"model": model, "width": width, "height": height, "seed": seed,
                              "tileable": option(self, settings, "tileable"),
                              "variation": option(self, settings, "variation"),
                              **(self.material_params() or models.material_params(settings))},
                             "texture_gan.generate")
        title = self.name or f"{Path(model).stem.replace('_', ' ').title()} {seed}"
        return submit_texture_job(self, context, "texture_gan.generate", params, title, f"Generate {width}x{height}")


@makes_new_texture(image_name_from="the source")
class NEURAL_OT_generate_from_image(bpy.types.Operator):
    """Turn any image (a photo, a scan) into a new tileable texture of any size, no training needed"""
    bl_idname = "neural.generate_from_image"
    bl_label = "Neural Textures: Generate from Image"
    bl_options = {"REGISTER", "UNDO"}

    image: StringProperty(name="Image", description="Blender image to start from; empty: the panel's choice")
    filepath: StringProperty(name="File", subtype="FILE_PATH", description="Or an image file to start from")
    width: WIDTH_PROPERTY
    height: HEIGHT_PROPERTY
    seed: SEED_PROPERTY
    tileable: TILEABLE_PROPERTY

    def execute(self, context):
        if not job_queue.core_has_job("texture_synth.synthesize"):
            return fail(self, "Generate from Image needs a newer core (texture_synth.synthesize): update the add-on")
        settings = context.scene.neural_texture
        try:
            exemplar, source_name = image_or_file(self, settings, "exemplar", "exemplar_file",
                                                  "to make a tileable texture from")
        except BridgeError as exc:
            return fail(self, str(exc))
        width, height = option(self, settings, "width"), option(self, settings, "height")
        if check_size(width, height):
            return fail(self, check_size(width, height))
        seed = option(self, settings, "seed")
        params = file_output({"exemplars": [exemplar], "width": width, "height": height, "seed": seed,
                              "tileable": option(self, settings, "tileable")}, "texture_synth.synthesize")
        title = self.name or f"{source_name} Tileable {seed}"
        return submit_texture_job(self, context, "texture_synth.synthesize", params, title,
                                  f"Texture from '{source_name}'")


class NEURAL_OT_make_material(bpy.types.Operator):
    """Make or update a material from an image (Mapping with tile scale, PBR maps) on the selected objects"""
    bl_idname = "neural.make_material"
    bl_label = "Neural Textures: Make Material"
    bl_options = {"REGISTER", "UNDO"}

    image: StringProperty(name="Image", description="Image name; empty: the last generated texture")
    pbr: BoolProperty(name="PBR Maps", default=True,
                      description="Also derive height, normal, roughness and AO maps and wire them in")
    wait: WAIT_PROPERTY

    @classmethod
    def poll(cls, context):
        if not any(materials.can_hold_material(obj) for obj in context.selected_objects):
            cls.poll_message_set("Select an object that can hold a material")
            return False
        return True

    def execute(self, context):
        name = self.image or context.scene.neural_texture.last_image
        image = bpy.data.images.get(name) if name else None
        if image is None:
            return fail(self, "No image to make a material from: generate a texture first or name an image")
        objects = [obj for obj in context.selected_objects if materials.can_hold_material(obj)]
        if not objects:
            return fail(self, "Select an object that can hold a material")
        settings = context.scene.neural_texture
        material = materials.make_material(image, objects=objects, tile_scale=settings.tile_scale)
        assigned = materials.assign_material(material, objects)
        self.report({"INFO"}, f"Material '{material.name}' on {', '.join(assigned)}")
        pbr = self.pbr if self.properties.is_property_set("pbr") else settings.pbr_maps
        if pbr:
            if not job_queue.core_has_job("texture.pbr"):
                self.report({"WARNING"}, "PBR maps need a newer core (texture.pbr): only the colour map is wired")
                return {"FINISHED"}
            try:
                job = submit_pbr(image, material.name, wait=self.wait or None)
            except BridgeError as exc:
                return fail(self, str(exc))
            if job.state == "error":
                return finish(self, job)
        return {"FINISHED"}


class NEURAL_OT_random_seed(bpy.types.Operator):
    """Pick a new random seed for the texture"""
    bl_idname = "neural.random_seed"
    bl_label = "Neural Textures: Random Seed"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return getattr(context.scene, "neural_texture", None) is not None

    def execute(self, context):
        context.scene.neural_texture.seed = random.randrange(0, 1 << 31)
        return {"FINISHED"}


class NEURAL_OT_texture_size(bpy.types.Operator):
    """Set the texture size to a common square preset"""
    bl_idname = "neural.texture_size"
    bl_label = "Neural Textures: Texture Size"
    bl_options = {"REGISTER", "UNDO"}

    size: IntProperty(name="Size", default=1024, min=16, max=MAX_SIZE, description="Width and height in pixels")

    @classmethod
    def poll(cls, context):
        return getattr(context.scene, "neural_texture", None) is not None

    def execute(self, context):
        settings = context.scene.neural_texture
        settings.width = settings.height = self.size
        return {"FINISHED"}


class NEURAL_OT_train_texture_model(bpy.types.Operator):
    """Train a texture model from an image; it is saved to the model library and selected when done"""
    bl_idname = "neural.train_texture_model"
    bl_label = "Neural Textures: Train Texture Model"
    bl_options = {"REGISTER"}

    kind: EnumProperty(name="Model Type", description="What kind of model to train",
                       items=[("texture_gan", "Texture Generator", "Learns to make new tileable texture (GAN)"),
                              ("texture_vae", "Variation Model", "Learns variations and blends (VAE)")])
    image: StringProperty(name="Image", description="Blender image to learn from")
    filepath: StringProperty(name="File", subtype="FILE_PATH", description="Or an image file")
    model_name: StringProperty(name="Name", default="my_texture", description="File name in the model library")
    steps: IntProperty(name="Steps", default=2000, min=1, description="Training steps (resumes where it stopped)")
    seed: IntProperty(name="Seed", default=0, min=0, description="Random seed of the training run")
    resume: BoolProperty(name="Resume", default=True,
                         description="Continue a model of the same name from its last checkpoint")
    config: StringProperty(name="Config (JSON)", options={"HIDDEN"},
                           description="Advanced: model/training config overrides as a JSON object")
    checkpoint_every: IntProperty(name="Checkpoint Every", default=200, min=1, options={"HIDDEN"})
    recipe: EnumProperty(name="Recipe", description="How a texture generator learns", default="FINETUNE",
                         items=[("FINETUNE", "Fine-tune Bundled", "Starts from the bundled materials generator "
                                 "(courses, cells, grain and cracks already learnt) and learns the image from "
                                 "instant-synthesis tiles of it: good in a few hundred steps on a CPU. From 300 "
                                 "steps on, it first tries 100 steps from each of the three bundled materials "
                                 "nearest the image and continues the best (200 steps more). A drawn or "
                                 "baked pattern that repeats exactly (a Brick Texture node, tiles on a grid) keeps "
                                 "its repeat: straight courses, bricks of one length"),
                                ("DISTILLED", "Distilled", "Learns from instant-synthesis tiles of the image, "
                                 "starting from scratch (the bundled materials' recipe; thousands of steps)"),
                                ("SPATIAL", "Spatial GAN", "Learns from the image alone (the original recipe)")])
    variation_recipe: EnumProperty(name="Variation Recipe", description="How a variation model learns",
                                   default="FINETUNE",
                                   items=[("FINETUNE", "Fine-tune Bundled", "The bundled materials generator "
                                           "fine-tuned to the image as the decoder (three quarters of the steps), "
                                           "then the bundled variation model's encoder onto it: sharp variations "
                                           "and blends in a few hundred steps on a CPU"),
                                          ("PLAIN", "Plain VAE", "Learns from the image alone: fast, but its "
                                           "variations are blurred")])
    wait: WAIT_PROPERTY

    @classmethod
    def poll(cls, context):
        return getattr(context.scene, "neural_train", None) is not None

    def execute(self, context):
        settings = context.scene.neural_train
        kind = option(self, settings, "kind")
        try:
            exemplar = image_or_file(self, settings, "image", "filepath", "to learn from")[0]
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
        params["recipe"] = (self.recipe if kind == "texture_gan" else self.variation_recipe).lower()
        scene_name = context.scene.name

        def on_done(job):
            models.refresh()
            model_path = job.result.get("model")
            if not model_path:
                return
            job.outputs["model"] = model_path
            scene = scene_by_name(scene_name)
            if scene is not None:
                models.choose(scene.neural_texture if kind == "texture_gan" else scene.neural_vae, model_path)
            if job.state == "done":
                job.outputs["summary"] = f"model saved to {model_path}"
            else:
                job.outputs["summary_suffix"] = f"; the last checkpoint was kept in {model_path}"

        label = ("Train texture generator" if kind == "texture_gan" else "Train variation model") + f" '{out.stem}'"
        job = job_queue.submit(f"{kind}.train", params, label=label, on_done=on_done, wait=self.wait or None)
        return finish(self, job)


classes = (NEURAL_OT_generate_texture, NEURAL_OT_generate_from_image, NEURAL_OT_make_material,
           NEURAL_OT_random_seed, NEURAL_OT_texture_size, NEURAL_OT_train_texture_model)
register, unregister = bpy.utils.register_classes_factory(classes)
