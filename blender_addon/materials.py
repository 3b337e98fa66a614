"""Materials from generated textures: Principled BSDF with the image wired into Base Color."""

from __future__ import annotations

import bpy


def make_material(image: bpy.types.Image, name: str | None = None) -> bpy.types.Material:
    material = bpy.data.materials.new(name or image.name)
    if material.node_tree is None:  # Blender < 5.0 creates materials without nodes
        material.use_nodes = True
    tree = material.node_tree
    bsdf = next((n for n in tree.nodes if n.type == "BSDF_PRINCIPLED"), None)
    output = next((n for n in tree.nodes if n.type == "OUTPUT_MATERIAL"), None)
    if output is None:
        output = tree.nodes.new("ShaderNodeOutputMaterial")
        output.location = (300, 0)
    if bsdf is None:
        bsdf = tree.nodes.new("ShaderNodeBsdfPrincipled")
        tree.links.new(bsdf.outputs["BSDF"], output.inputs["Surface"])
    texture = tree.nodes.new("ShaderNodeTexImage")
    texture.name = texture.label = "Neural Texture"
    texture.image = image
    texture.extension = "REPEAT"  # generated textures tile
    texture.location = (bsdf.location.x - 320, bsdf.location.y)
    tree.links.new(texture.outputs["Color"], bsdf.inputs["Base Color"])
    tree.nodes.active = texture
    return material


def assign_material(material: bpy.types.Material, objects) -> list[str]:
    """Put ``material`` in the active slot of each object that can hold materials; return their names."""
    assigned = []
    for obj in objects:
        data = getattr(obj, "data", None)
        if data is None or not hasattr(data, "materials"):
            continue
        if len(obj.material_slots) == 0:
            data.materials.append(material)
        else:
            obj.material_slots[obj.active_material_index].material = material
        assigned.append(obj.name)
    return assigned
