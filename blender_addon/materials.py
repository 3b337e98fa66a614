"""Materials from generated textures, built as artists build them.

Texture Coordinate -> Mapping (the tile scale) -> every image texture of the
material; Principled BSDF with Base Color (times AO when there is one),
Roughness, a Normal Map (OpenGL, as Blender expects) and a bump-only
Displacement from the height map. Objects without UVs get Object coordinates
with box projection, so nothing stretches. Materials the add-on makes carry
``MATERIAL_TAG``; making one again for the same image updates it instead of
adding a duplicate.
"""

from __future__ import annotations

import bpy

MATERIAL_TAG = "neural_textures_material"
NON_COLOR = "Non-Color"
# map name -> (node name, colour space of its image)
MAP_NODES = {"albedo": ("Neural Texture", "sRGB"), "roughness": ("Neural Roughness", NON_COLOR),
             "normal": ("Neural Normal", NON_COLOR), "height": ("Neural Height", NON_COLOR),
             "ao": ("Neural AO", NON_COLOR)}


def can_hold_material(obj) -> bool:
    data = getattr(obj, "data", None)
    return data is not None and hasattr(data, "materials")


def has_uvs(obj) -> bool:
    data = getattr(obj, "data", None)
    return bool(getattr(data, "uv_layers", None)) and len(data.uv_layers) > 0


def find_material(image: bpy.types.Image, objects=()) -> bpy.types.Material | None:
    """The add-on's material already showing ``image`` (or on the first object's active slot): to update."""
    for obj in objects:
        material = obj.active_material if can_hold_material(obj) else None
        if material is not None and material.get(MATERIAL_TAG):
            return material
    for material in bpy.data.materials:
        if material.get(MATERIAL_TAG) and material.node_tree is not None:
            node = material.node_tree.nodes.get(MAP_NODES["albedo"][0])
            if node is not None and node.image == image:
                return material
    return None


def make_material(image: bpy.types.Image, name: str | None = None, objects=(), tile_scale: float = 1.0,
                  maps: dict | None = None, material: bpy.types.Material | None = None) -> bpy.types.Material:
    """Build (or update) the add-on's material for ``image`` and optional PBR ``maps`` (name -> image)."""
    material = material or find_material(image, objects) or bpy.data.materials.new(name or image.name)
    material[MATERIAL_TAG] = True
    if material.node_tree is None:  # Blender < 5.0 creates materials without nodes
        material.use_nodes = True
    tree = material.node_tree
    nodes, links = tree.nodes, tree.links
    bsdf = next((n for n in nodes if n.type == "BSDF_PRINCIPLED"), None)
    output = next((n for n in nodes if n.type == "OUTPUT_MATERIAL"), None)
    if output is None:
        output = nodes.new("ShaderNodeOutputMaterial")
        output.location = (300, 0)
    if bsdf is None:
        bsdf = nodes.new("ShaderNodeBsdfPrincipled")
        links.new(bsdf.outputs["BSDF"], output.inputs["Surface"])
    x, y = bsdf.location.x, bsdf.location.y
    coords = _node(nodes, "ShaderNodeTexCoord", "Neural Coordinates", (x - 1100, y))
    mapping = _node(nodes, "ShaderNodeMapping", "Neural Mapping", (x - 900, y))
    mapping.inputs["Scale"].default_value = (tile_scale,) * 3
    box = any(not has_uvs(obj) for obj in objects if can_hold_material(obj))
    _link(links, coords.outputs["Object" if box else "UV"], mapping.inputs["Vector"])

    all_maps = {"albedo": image, **{k: v for k, v in (maps or {}).items() if v is not None}}
    textures = {}
    for index, (key, map_image) in enumerate(all_maps.items()):
        node_name, colorspace = MAP_NODES[key]
        texture = _node(nodes, "ShaderNodeTexImage", node_name, (x - 600, y - 300 * index))
        texture.image = map_image
        texture.extension = "REPEAT"  # generated textures tile
        texture.projection = "BOX" if box else "FLAT"
        texture.projection_blend = 0.2 if box else 0.0
        if key != "albedo" and map_image.colorspace_settings.name != colorspace:
            map_image.colorspace_settings.name = colorspace
        _link(links, mapping.outputs["Vector"], texture.inputs["Vector"])
        textures[key] = texture

    color = textures["albedo"].outputs["Color"]
    if "ao" in textures:
        mix = _node(nodes, "ShaderNodeMix", "Neural AO Multiply", (x - 250, y + 150))
        mix.data_type, mix.blend_type = "RGBA", "MULTIPLY"
        mix.inputs["Factor"].default_value = 1.0
        _link(links, color, mix.inputs[6])  # A (colour)
        _link(links, textures["ao"].outputs["Color"], mix.inputs[7])  # B (colour)
        color = mix.outputs[2]  # Result (colour)
    _link(links, color, bsdf.inputs["Base Color"])
    if "roughness" in textures:
        _link(links, textures["roughness"].outputs["Color"], bsdf.inputs["Roughness"])
    if "normal" in textures:
        normal_map = _node(nodes, "ShaderNodeNormalMap", "Neural Normal Map", (x - 250, y - 400))
        _link(links, textures["normal"].outputs["Color"], normal_map.inputs["Color"])
        _link(links, normal_map.outputs["Normal"], bsdf.inputs["Normal"])
    if "height" in textures:
        displacement = _node(nodes, "ShaderNodeDisplacement", "Neural Displacement", (x, y - 700))
        displacement.inputs["Scale"].default_value = 0.05
        _link(links, textures["height"].outputs["Color"], displacement.inputs["Height"])
        _link(links, displacement.outputs["Displacement"], output.inputs["Displacement"])
    nodes.active = textures["albedo"]
    return material


def _node(nodes, kind: str, name: str, location):
    node = nodes.get(name)
    if node is None or node.bl_idname != kind:
        node = nodes.new(kind)
        node.name = node.label = name
        node.location = location
    return node


def _link(links, from_socket, to_socket) -> None:
    if not any(link.from_socket == from_socket and link.to_socket == to_socket for link in links):
        links.new(from_socket, to_socket)


def assign_material(material: bpy.types.Material, objects) -> list[str]:
    """Put ``material`` in the active slot of each object that can hold materials; return their names."""
    assigned = []
    for obj in objects:
        if not can_hold_material(obj):
            continue
        if len(obj.material_slots) == 0:
            obj.data.materials.append(material)
        else:
            obj.material_slots[obj.active_material_index].material = material
        assigned.append(obj.name)
    return assigned


def set_tile_scale(context, scale: float) -> int:
    """Set the Mapping scale of the add-on's materials on the selected (or active) objects; how many changed."""
    objects = list(getattr(context, "selected_objects", None) or [])
    active = getattr(context, "active_object", None)
    if active is not None and active not in objects:
        objects.append(active)
    changed = set()
    for obj in objects:
        material = obj.active_material if can_hold_material(obj) else None
        if material is None or not material.get(MATERIAL_TAG) or material.node_tree is None:
            continue
        mapping = material.node_tree.nodes.get("Neural Mapping")
        if mapping is not None and material.name not in changed:
            mapping.inputs["Scale"].default_value = (scale,) * 3
            changed.add(material.name)
    return len(changed)
