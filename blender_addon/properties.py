"""Scene settings, one PropertyGroup per concern (saved with the .blend), plus UI state on the WindowManager."""

from __future__ import annotations

import bpy
from bpy.props import (BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty,
                       StringProperty)

from . import models


def _gan_items(self, context):
    return models.enum_items("texture_gan")


def _vae_items(self, context):
    return models.enum_items("texture_vae")


def _style_items(self, context):
    return models.enum_items("style")


class NeuralTextureSettings(bpy.types.PropertyGroup):
    model: EnumProperty(name="Model", description="Texture model (bundled or trained)", items=_gan_items)
    width: IntProperty(name="Width", default=1024, min=16, max=8192, subtype="PIXEL")
    height: IntProperty(name="Height", default=1024, min=16, max=8192, subtype="PIXEL")
    seed: IntProperty(name="Seed", default=0, min=0, description="Same seed, same texture")
    tileable: BoolProperty(name="Tileable", default=True, description="Seamless when repeated")
    variation: FloatProperty(name="Variation", default=0.0, min=0.0, max=1.0, subtype="FACTOR",
                             description="How far the texture wanders from the exemplar's look across the image")
    make_material: BoolProperty(name="Make Material", default=True,
                                description="Also create a material with the texture and assign it to the "
                                            "selected objects")
    last_image: StringProperty(name="Last Image", description="The most recently generated image")


class NeuralTrainSettings(bpy.types.PropertyGroup):
    kind: EnumProperty(name="Model Type", items=[
        ("texture_gan", "Texture Generator", "Learns to make new tileable texture of any size (GAN)"),
        ("texture_vae", "Variation Model", "Learns variations and blends of textures (VAE)")],
        default="texture_gan")
    source: EnumProperty(name="Source", items=[("IMAGE", "Blender Image", ""), ("FILE", "File", "")],
                         default="IMAGE")
    image: PointerProperty(name="Exemplar", type=bpy.types.Image, description="Texture to learn from")
    filepath: StringProperty(name="Exemplar File", subtype="FILE_PATH")
    model_name: StringProperty(name="Name", default="my_texture", description="File name in the model library")
    steps: IntProperty(name="Steps", default=2000, min=1, max=1_000_000,
                       description="Training steps (more is better and slower; resumes where it stopped)")
    seed: IntProperty(name="Seed", default=0, min=0)
    resume: BoolProperty(name="Resume", default=True,
                         description="Continue a model of the same name from its last checkpoint")


class NeuralVAESettings(bpy.types.PropertyGroup):
    model: EnumProperty(name="Model", items=_vae_items)
    image: PointerProperty(name="Texture", type=bpy.types.Image)
    image_b: PointerProperty(name="Second Texture", type=bpy.types.Image)
    mask: PointerProperty(name="Mask", type=bpy.types.Image,
                          description="Optional: white takes the second texture, black the first")
    strength: FloatProperty(name="Strength", default=0.5, min=0.0, max=3.0)
    count: IntProperty(name="Count", default=4, min=1, max=16)
    seed: IntProperty(name="Seed", default=0, min=0)
    t: FloatProperty(name="Blend", default=0.5, min=0.0, max=1.0, subtype="FACTOR")


class NeuralStyleSettings(bpy.types.PropertyGroup):
    model: EnumProperty(name="Style", items=_style_items)
    source: EnumProperty(name="Source", items=[("RENDER", "Render Result", "The last render"),
                                               ("IMAGE", "Image", "Any Blender image")], default="RENDER")
    image: PointerProperty(name="Image", type=bpy.types.Image)
    strength: FloatProperty(name="Strength", default=1.0, min=0.0, max=1.0, subtype="FACTOR")
    render_colors: EnumProperty(name="Render Colors", items=[
        ("DISPLAY", "As Displayed", "Stylize the render as you see it (view transform applied)"),
        ("LINEAR", "Scene Linear", "Stylize the scene-linear (HDR) values; the result is a float image")],
        default="DISPLAY")
    method: EnumProperty(name="Method", items=[
        ("MODEL", "Style Model", "Fast: a trained style model"),
        ("PAINTING", "Any Painting", "Slow: match any painting by optimisation (no training)")], default="MODEL")
    optimize_steps: IntProperty(name="Steps", default=100, min=1, max=5000,
                                description="Optimisation steps for Any Painting")
    auto_stylize: BoolProperty(name="Stylize After Render", default=False,
                               description="Stylize every still render into a new image automatically")
    frames_dir: StringProperty(name="Frames", subtype="DIR_PATH", description="Folder with the rendered frames")
    output_dir: StringProperty(name="Output", subtype="DIR_PATH", default="//stylized/")
    temporal_weight: FloatProperty(name="Temporal Smoothing", default=0.7, min=0.0, max=0.95, subtype="FACTOR")
    use_motion_vectors: BoolProperty(
        name="Use Motion Vectors", default=True,
        description="Use the Vector pass of OpenEXR MultiLayer frames as exact motion (else motion is estimated)")
    style_image: PointerProperty(name="Painting", type=bpy.types.Image,
                                 description="Painting to stylize with (Any Painting) or to train a style model from")
    train_name: StringProperty(name="Name", default="my_style")
    train_steps: IntProperty(name="Steps", default=2000, min=1)
    last_image: StringProperty()


class NeuralUIState(bpy.types.PropertyGroup):
    show_finished: BoolProperty(name="Show Finished", default=True)


classes = (NeuralTextureSettings, NeuralTrainSettings, NeuralVAESettings, NeuralStyleSettings, NeuralUIState)
_register_classes, _unregister_classes = bpy.utils.register_classes_factory(classes)

SCENE_PROPERTIES = {
    "neural_texture": NeuralTextureSettings,
    "neural_train": NeuralTrainSettings,
    "neural_vae": NeuralVAESettings,
    "neural_style": NeuralStyleSettings,
}
WM_PROPERTIES = {"neural_ui": NeuralUIState}


def register():
    _register_classes()
    for name, cls in SCENE_PROPERTIES.items():
        setattr(bpy.types.Scene, name, PointerProperty(type=cls))
    for name, cls in WM_PROPERTIES.items():
        setattr(bpy.types.WindowManager, name, PointerProperty(type=cls))


def unregister():
    for name in WM_PROPERTIES:
        delattr(bpy.types.WindowManager, name)
    for name in SCENE_PROPERTIES:
        delattr(bpy.types.Scene, name)
    _unregister_classes()
