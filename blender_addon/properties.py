"""Scene settings, one PropertyGroup per concern (saved with the .blend), plus UI state on the WindowManager."""

from __future__ import annotations

import bpy
from bpy.props import (BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty,
                       StringProperty)

from . import models, preview

# The largest texture side the panel offers; bigger ones are refused with a message, never clamped.
MAX_SIZE = 8192


# Where the style comes from; the ids are stored in .blend files ("PAINTING" predates the fast path).
STYLE_METHODS = [
    ("MODEL", "Bundled Style", "Fast: a bundled or trained style model"),
    ("ADAIN", "Any Painting (Fast)", "Any painting in one pass (AdaIN): about a second, no training"),
    ("PAINTING", "Any Painting (Best)", "Any painting by optimisation: best quality, a minute or more per frame"),
]


def _model_enum(kind: str, description: str) -> EnumProperty:
    """The model picker: a view of the portable ``model_ref`` string (see ``models``)."""
    return EnumProperty(name="Model", description=description,
                        items=lambda self, context: models.enum_items(kind, self.model_ref),
                        get=lambda self: models.enum_get(self, kind),
                        set=lambda self, value: models.enum_set(self, kind, value))


MODEL_REF = dict(name="Model Reference", options={"HIDDEN"},
                 description="The chosen model as saved in the .blend: bundled:<file>, library:<file> or a path")


def _update_preview(self, context):
    preview.on_texture_setting_changed(self, context)


def _update_style_preview(self, context):
    preview.on_style_setting_changed(self, context)


def _update_tile_scale(self, context):
    from . import materials
    materials.set_tile_scale(context, self.tile_scale)
    preview.on_texture_setting_changed(self, context)


def _materials(self, context):
    return models.material_items(self)


def _mix_materials(self, context):
    return models.material_items(self, with_none=True)


class NeuralTextureSettings(bpy.types.PropertyGroup):
    model: _model_enum("texture_gan", "Texture model (bundled or trained)")
    model_ref: StringProperty(**MODEL_REF)
    material: EnumProperty(name="Material", items=_materials, update=_update_preview,
                           description="Which of the model's materials to generate (models trained on several)")
    material_mix: EnumProperty(name="Mix With", items=_mix_materials, update=_update_preview,
                               description="A second material to interpolate towards")
    material_mix_factor: FloatProperty(name="Mix", default=0.0, min=0.0, max=1.0, subtype="FACTOR",
                                       update=_update_preview,
                                       description="0: the first material, 1: the second, between: an interpolation")
    source: EnumProperty(name="From", description="What Generate from Image starts from", items=[
        ("IMAGE", "Blender Image", "Any image loaded in this file"),
        ("FILE", "File", "An image file on disk")], default="IMAGE")
    exemplar: PointerProperty(name="Exemplar", type=bpy.types.Image,
                              description="Image to turn into a tileable texture (no training)")
    exemplar_file: StringProperty(name="Exemplar File", subtype="FILE_PATH",
                                  description="Image file to turn into a tileable texture (no training)")
    width: IntProperty(name="Width", default=1024, min=16, max=MAX_SIZE, subtype="PIXEL",
                       description="Width of the new texture in pixels")
    height: IntProperty(name="Height", default=1024, min=16, max=MAX_SIZE, subtype="PIXEL",
                        description="Height of the new texture in pixels")
    seed: IntProperty(name="Seed", default=0, min=0, description="Same seed, same texture",
                      update=_update_preview)
    live_preview: BoolProperty(name="Live Preview", default=False,
                               description="Show a small preview that follows seed, variation and tile scale "
                                           "as you change them",
                               update=_update_preview)
    tile_scale: FloatProperty(name="Tile Scale", default=1.0, min=0.01, soft_max=20.0,
                              description="How often the texture repeats across the surface (Mapping node "
                                          "scale of the material on the active object)",
                              update=_update_tile_scale)
    tileable: BoolProperty(name="Tileable", default=True, description="Seamless when repeated")
    variation: FloatProperty(name="Variation", default=0.0, min=0.0, max=1.0, subtype="FACTOR",
                             description="How far the texture wanders from the exemplar's look across the image",
                             update=_update_preview)
    make_material: BoolProperty(name="Make Material", default=True,
                                description="Also make (or update) a material with the texture on the "
                                            "selected objects")
    pbr_maps: BoolProperty(name="PBR Maps", default=True,
                           description="Derive height, normal, roughness and AO maps for the material")
    last_image: StringProperty(name="Last Image", description="The most recently generated image")


class NeuralTrainSettings(bpy.types.PropertyGroup):
    kind: EnumProperty(name="Model Type", items=[
        ("texture_gan", "Texture Generator", "Learns to make new tileable texture of any size (GAN)"),
        ("texture_vae", "Variation Model", "Learns variations and blends of textures (VAE)")],
        default="texture_gan", description="What kind of model to train")
    source: EnumProperty(name="Source", description="Where the exemplar comes from",
                         items=[("IMAGE", "Blender Image", "An image loaded in this file"),
                                ("FILE", "File", "An image file on disk")], default="IMAGE")
    image: PointerProperty(name="Exemplar", type=bpy.types.Image, description="Texture to learn from")
    filepath: StringProperty(name="Exemplar File", subtype="FILE_PATH", description="Image file to learn from")
    model_name: StringProperty(name="Name", default="my_texture", description="File name in the model library")
    steps: IntProperty(name="Steps", default=2000, min=1, max=1_000_000,
                       description="Training steps (more is better and slower; resumes where it stopped). A texture "
                                   "generator fine-tuned from the bundled one is usable after a few hundred")
    seed: IntProperty(name="Seed", default=0, min=0, description="Random seed of the training run")
    resume: BoolProperty(name="Resume", default=True,
                         description="Continue a model of the same name from its last checkpoint")


class NeuralVAESettings(bpy.types.PropertyGroup):
    model: _model_enum("texture_vae", "Variation model (bundled or trained)")
    model_ref: StringProperty(**MODEL_REF)
    image: PointerProperty(name="Texture", type=bpy.types.Image, description="Texture to make variations of")
    image_b: PointerProperty(name="Second Texture", type=bpy.types.Image, description="Texture to blend with")
    mask: PointerProperty(name="Mask", type=bpy.types.Image,
                          description="Optional: white takes the second texture, black the first")
    strength: FloatProperty(name="Strength", default=0.5, min=0.0, max=3.0,
                            description="How far variations may wander from the texture")
    count: IntProperty(name="Count", default=4, min=1, max=16, description="How many variations to make")
    seed: IntProperty(name="Seed", default=0, min=0, description="Same seed, same variations")
    # The default is core.texture_vae.jobs.DEFAULT_REFINE_STEPS (the add-on imports no core module; a test checks).
    refine_steps: IntProperty(name="Refine Steps", default=30, min=0, max=200,
                              description="Fit the model's reading of each texture to it before varying or "
                                          "blending: more faithful results (layout and look). Each step runs the "
                                          "model and VGG19 forward and backward: on a CPU about 0.3 s per step "
                                          "at 256 px, on a GPU a fraction. 0: the model's one-pass reading, "
                                          "instant, but it draws another layout")
    t: FloatProperty(name="Blend", default=0.5, min=0.0, max=1.0, subtype="FACTOR",
                     description="0 is the first texture, 1 the second")


class NeuralStyleSettings(bpy.types.PropertyGroup):
    model: _model_enum("style", "Style model (bundled or trained)")
    model_ref: StringProperty(**MODEL_REF)
    source: EnumProperty(name="Source", description="What to stylize",
                         items=[("RENDER", "Render Result", "The last render"),
                                ("IMAGE", "Image", "Any Blender image")], default="RENDER")
    image: PointerProperty(name="Image", type=bpy.types.Image, description="Image to stylize")
    strength: FloatProperty(name="Strength", default=1.0, min=0.0, max=1.0, subtype="FACTOR",
                            description="0 keeps the original, 1 is the full style", update=_update_style_preview)
    live_preview: BoolProperty(name="Live Preview", default=False, update=_update_style_preview,
                               description="Show a small stylized preview of the image that follows the strength")
    render_colors: EnumProperty(name="Render Colors", description="Which values of the render are stylized", items=[
        ("DISPLAY", "As Displayed", "Stylize the render as you see it (view transform applied)"),
        ("LINEAR", "Scene Linear", "Stylize the scene-linear values; highlights above 1.0 are kept (HDR float "
                                   "result shown with the scene's view transform)")],
        default="DISPLAY")
    method: EnumProperty(name="Style Source", description="Where the style comes from",
                         items=STYLE_METHODS, default="MODEL")
    optimize_steps: IntProperty(name="Steps", default=40, min=1, max=5000,
                                description="Optimisation steps at the coarsest scale (Any Painting, Best); finer "
                                            "scales take a third of them each")
    adain_refine_steps: IntProperty(
        name="Refine Steps", default=0, min=0, max=200,
        description="Any Painting (Fast): optimisation steps (at up to 512 px) that start from the one-pass result; "
                    "more come closer to Any Painting (Best) and take longer. 0 is the one pass alone (fastest)")
    adain_max_gain: FloatProperty(
        name="Gain Limit", default=1.25, min=0.5, max=100.0, soft_max=8.0,
        description="Any Painting (Fast): how much the painting may amplify the frame's own contrast. Low keeps "
                    "flat floors, skies and backdrops of renders clean; higher paints more texture everywhere "
                    "(100: no limit)")
    auto_stylize: BoolProperty(name="Stylize After Render", default=False,
                               description="Stylize every still render into a new image automatically")
    frames_dir: StringProperty(name="Frames", subtype="DIR_PATH", description="Folder with the rendered frames")
    output_dir: StringProperty(name="Output", subtype="DIR_PATH", default="//stylized/",
                               description="Folder for the stylized frames (relative to the .blend; in an unsaved "
                                           "file, beside the frames folder)")
    temporal_weight: FloatProperty(name="Temporal Smoothing", default=0.7, min=0.0, max=0.95, subtype="FACTOR",
                                   description="How much each frame follows the previous one (less flicker)")
    use_motion_vectors: BoolProperty(
        name="Use Motion Vectors", default=True,
        description="Use the Vector pass of OpenEXR MultiLayer frames as exact motion (else motion is estimated)")
    style_image: PointerProperty(name="Painting", type=bpy.types.Image,
                                 description="Painting to stylize with (Any Painting) or to train a style model from")
    farm_ray_address: StringProperty(
        name="Ray Cluster", default="",
        description="Stylize Frames on a Ray cluster: 'auto' (a running cluster, else one started on this computer) "
                    "or the cluster's address; empty runs here. Needs Ray in the worker's Python "
                    "(pip install -r requirements-farm.txt)")
    farm_chunk_size: IntProperty(name="Chunk Size", default=24, min=1, max=100000,
                                 description="Frames per farm task (Ray or Flamenco); each starts a few frames early "
                                             "so chunk borders do not flicker")
    train_name: StringProperty(name="Name", default="my_style", description="File name in the model library")
    train_steps: IntProperty(name="Steps", default=2000, min=1,
                             description="Training steps (more is better and slower)")
    last_image: StringProperty(name="Last Image", description="The most recently stylized image")


class NeuralUIState(bpy.types.PropertyGroup):
    show_finished: BoolProperty(name="Show Finished", default=True, description="List finished jobs too")


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
