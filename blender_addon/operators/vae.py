"""Variations of a texture and blends between textures with a texture VAE."""

from __future__ import annotations

import bpy
from bpy.props import FloatProperty, IntProperty, StringProperty

from .. import image_bridge, job_queue
from ..image_bridge import BridgeError
from .common import (WAIT_PROPERTY, chosen_model_file, fail, file_output, finish, get_image, image_name, option,
                     scene_has, workdir_inputs)


NO_MODEL = "No variation model: train one (Train From Image, type Variation Model)"
MODEL_PROPERTY = StringProperty(name="Model File",
                                description="Variation model (.safetensors); empty: the panel's choice")


class _VAEJob:
    """Mixin of the variation operators that submit a job with the chosen model (``submit_job`` does the rest).
    Methods and class values only: a mixin's properties would come first in the redo panel."""
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        settings = context.scene.neural_vae
        model = chosen_model_file(self, settings, "texture_vae")
        if not model:
            return fail(self, NO_MODEL)
        try:
            return self.submit_job(settings, model)
        except BridgeError as exc:
            return fail(self, str(exc))


class NEURAL_OT_vae_variations(_VAEJob, bpy.types.Operator):
    """Make new variations of a texture image (each a new image)"""
    bl_idname = "neural.vae_variations"
    bl_label = "Neural Textures: Make Variations"

    image: StringProperty(name="Image", description="Image to make variations of; empty: the panel's choice")
    model: MODEL_PROPERTY
    strength: FloatProperty(name="Strength", default=0.5, min=0.0, max=3.0,
                            description="How far variations may wander from the texture")
    count: IntProperty(name="Count", default=4, min=1, max=16, description="How many variations to make")
    seed: IntProperty(name="Seed", default=0, min=0, description="Same seed, same variations")
    refine_steps: IntProperty(name="Refine Steps", default=30, min=0, max=200,
                              description="Fit the model's reading of the texture to it before varying: more "
                                          "faithful variations, slower (0: the one-pass reading, instant). Unset: "
                                          "the panel's value")
    wait: WAIT_PROPERTY

    poll = classmethod(lambda cls, context: scene_has(context, "neural_vae"))

    def submit_job(self, settings, model: str) -> set[str]:
        source = get_image(image_name(self, settings, "image"), "texture to vary")
        source_file = str(image_bridge.export_image(source, workdir_inputs()))
        count, seed = option(self, settings, "count"), option(self, settings, "seed")
        strength, refine_steps = option(self, settings, "strength"), option(self, settings, "refine_steps")
        source_name, source_is_float = source.name, source.is_float
        jobs = []
        for index in range(count):
            def on_done(job, index=index):
                if job.state == "done":
                    image = image_bridge.load_result(job.result["image"], f"{source_name} Variation {index + 1}",
                                                     like=bpy.data.images.get(source_name))
                    job.outputs.update(image=image.name, summary=f"created '{image.name}'")
            jobs.append(job_queue.submit("texture_vae.vary",
                                         file_output({"model": model, "image": source_file, "strength": strength,
                                                      "seed": seed + index,
                                                      "refine_steps": refine_steps},
                                                     "texture_vae.vary",
                                                     as_file=not source_is_float),
                                         label=f"Variation {index + 1}/{count} of '{source_name}'",
                                         on_done=on_done, wait=False))
        if job_queue.should_wait(self.wait or None):
            for job in jobs:  # all queued first: they share the exported source file
                job_queue.wait_for(job)
        failed = [j for j in jobs if j.state == "error"]
        if failed:
            return finish(self, failed[0])
        return finish(self, jobs[-1])


class NEURAL_OT_vae_blend(_VAEJob, bpy.types.Operator):
    """Blend two textures through the model's latent space, evenly or through a mask image"""
    bl_idname = "neural.vae_blend"
    bl_label = "Neural Textures: Blend Textures"

    image: StringProperty(name="First Image", description="First texture; empty: the panel's choice")
    image_b: StringProperty(name="Second Image", description="Second texture; empty: the panel's choice")
    mask: StringProperty(name="Mask Image", description="Optional; white takes the second texture")
    model: MODEL_PROPERTY
    t: FloatProperty(name="Blend", default=0.5, min=0.0, max=1.0, description="0 is the first texture, 1 the second")
    refine_steps: IntProperty(name="Refine Steps", default=30, min=0, max=200,
                              description="Fit the model's reading of each texture to it before blending: each "
                                          "side keeps its layout and look, slower (0: the one-pass reading, "
                                          "instant). Unset: the panel's value")
    wait: WAIT_PROPERTY

    poll = classmethod(lambda cls, context: scene_has(context, "neural_vae"))

    def submit_job(self, settings, model: str) -> set[str]:
        first = get_image(image_name(self, settings, "image"), "first texture")
        second = get_image(image_name(self, settings, "image_b"), "second texture")
        inputs = [str(image_bridge.export_image(i, workdir_inputs(), keep_alpha=False)) for i in (first, second)]
        mask_name = image_name(self, settings, "mask")
        mask = str(image_bridge.export_image(get_image(mask_name), workdir_inputs(), keep_alpha=False)) \
            if mask_name else None
        title, first_name = f"Blend {first.name} + {second.name}", first.name
        refine_steps = option(self, settings, "refine_steps")
        width, height = first.size[:]

        def on_done(job):
            if job.state == "done":
                image = image_bridge.load_result(job.result["image"], title, like=bpy.data.images.get(first_name))
                job.outputs.update(image=image.name, summary=f"created '{image.name}'")

        job = job_queue.submit("texture_vae.blend",
                               file_output({"model": model, "images": inputs, "mask": mask,
                                            "t": option(self, settings, "t"), "width": width, "height": height,
                                            "refine_steps": refine_steps},
                                           "texture_vae.blend", as_file=not first.is_float),
                               label=title, on_done=on_done, wait=self.wait or None)
        return finish(self, job)


class NEURAL_OT_more_like_this(bpy.types.Operator):
    """Make a new family of variations around this one: it becomes the texture the next variations start from"""
    bl_idname = "neural.more_like_this"
    bl_label = "Neural Textures: More Like This"
    bl_options = {"REGISTER", "UNDO"}

    image: StringProperty(name="Variation", description="The variation to centre the next family on")
    wait: WAIT_PROPERTY

    poll = classmethod(lambda cls, context: scene_has(context, "neural_vae"))

    def execute(self, context):
        settings = context.scene.neural_vae
        image = bpy.data.images.get(self.image)
        if image is None:
            return fail(self, f"there is no image named '{self.image}' in this file")
        settings.image = image  # the panel follows: the chosen variation is the new centre
        settings.seed += settings.count  # new seeds: a new family, not the same variations again
        return bpy.ops.neural.vae_variations(image=image.name, seed=settings.seed, wait=self.wait)


classes = (NEURAL_OT_vae_variations, NEURAL_OT_vae_blend, NEURAL_OT_more_like_this)
register, unregister = bpy.utils.register_classes_factory(classes)
