"""Render colour texture exemplars with Blender's own procedural shader nodes.

``python tools/render_exemplars.py [--out models/exemplars] [--size 512] [--samples 16] [NAME ...]``

Each material (bark, cobblestones, rusty metal, fabric) is built from Blender's
procedural texture nodes on a flat plane, lit by a low sun so its bump relief
shades like a photographed surface, and rendered from straight above with an
orthographic camera (Cycles, CPU, few samples: well under a minute each).
The PNGs are made by this project and are CC0 (see models/exemplars/SOURCES.md).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import bpy

ROOT = Path(__file__).resolve().parents[1]


class Nodes:
    """Small helper: create and link shader nodes of one material."""

    def __init__(self, material: bpy.types.Material):
        material.use_nodes = True
        self.tree = material.node_tree
        self.tree.nodes.clear()
        self.output = self.new("ShaderNodeOutputMaterial")
        self.bsdf = self.new("ShaderNodeBsdfPrincipled")
        self.link(self.bsdf.outputs["BSDF"], self.output.inputs["Surface"])
        coords = self.new("ShaderNodeTexCoord")
        self.uv = coords.outputs["Object"]

    def new(self, kind: str, **inputs):
        node = self.tree.nodes.new(kind)
        for name, value in inputs.items():
            if name in node.inputs:
                node.inputs[name].default_value = value
            else:
                setattr(node, name, value)
        return node

    def link(self, a, b) -> None:
        self.tree.links.new(a, b)

    def mapping(self, scale=(1.0, 1.0, 1.0), rotation=(0.0, 0.0, 0.0)):
        node = self.new("ShaderNodeMapping")
        node.inputs["Scale"].default_value = scale
        node.inputs["Rotation"].default_value = rotation
        self.link(self.uv, node.inputs["Vector"])
        return node.outputs["Vector"]

    def ramp(self, source, stops):
        node = self.new("ShaderNodeValToRGB")
        elements = node.color_ramp.elements
        while len(elements) < len(stops):
            elements.new(0.5)
        for element, (position, colour) in zip(elements, stops):
            element.position = position
            element.color = (*colour, 1.0)
        self.link(source, node.inputs["Fac"])
        return node.outputs["Color"]

    def math(self, operation: str, a, b=None, clamp: bool = False):
        node = self.new("ShaderNodeMath", operation=operation, use_clamp=clamp)
        for slot, value in ((0, a), (1, b)):
            if value is None:
                continue
            if isinstance(value, (int, float)):
                node.inputs[slot].default_value = value
            else:
                self.link(value, node.inputs[slot])
        return node.outputs["Value"]

    def mix(self, factor, a, b):
        node = self.new("ShaderNodeMix", data_type="RGBA")
        self.link(factor, node.inputs["Factor"])
        self.link(a, node.inputs["A"])
        self.link(b, node.inputs["B"])
        return node.outputs["Result"]

    def finish(self, colour, height, bump_strength: float, roughness: float | object = 0.7,
               metallic: float | object = 0.0) -> None:
        self.link(colour, self.bsdf.inputs["Base Color"])
        bump = self.new("ShaderNodeBump", Strength=bump_strength, Distance=0.02)
        self.link(height, bump.inputs["Height"])
        self.link(bump.outputs["Normal"], self.bsdf.inputs["Normal"])
        for name, value in (("Roughness", roughness), ("Metallic", metallic)):
            if isinstance(value, (int, float)):
                self.bsdf.inputs[name].default_value = value
            else:
                self.link(value, self.bsdf.inputs[name])


def bark(n: Nodes) -> None:
    """Vertical furrows: stretched Voronoi cracks over wavy fibres."""
    vec = n.mapping(scale=(2.2, 0.35, 1.0))
    warp = n.new("ShaderNodeTexNoise", Scale=3.0, Detail=6.0, Roughness=0.6)
    n.link(vec, warp.inputs["Vector"])
    warped = n.new("ShaderNodeMix", data_type="VECTOR")
    warped.inputs["Factor"].default_value = 0.35
    n.link(vec, warped.inputs["A"])
    n.link(warp.outputs["Color"], warped.inputs["B"])
    cells = n.new("ShaderNodeTexVoronoi", feature="DISTANCE_TO_EDGE", Scale=4.0)
    n.link(warped.outputs["Result"], cells.inputs["Vector"])
    ridges = n.math("POWER", n.math("MULTIPLY", cells.outputs["Distance"], 6.0, clamp=True), 0.5)
    fibres = n.new("ShaderNodeTexWave", wave_type="BANDS", bands_direction="X", Scale=18.0, Distortion=6.0,
                   Detail=4.0)
    n.link(warped.outputs["Result"], fibres.inputs["Vector"])
    height = n.math("ADD", n.math("MULTIPLY", ridges, 0.8), n.math("MULTIPLY", fibres.outputs["Fac"], 0.2))
    colour = n.ramp(height, [(0.0, (0.03, 0.018, 0.01)), (0.45, (0.16, 0.10, 0.06)), (1.0, (0.38, 0.30, 0.22))])
    n.finish(colour, height, bump_strength=0.9, roughness=0.85)


def cobblestones(n: Nodes) -> None:
    """Rounded stones of varied colour in dark mortar."""
    vec = n.mapping(scale=(1.0, 1.0, 1.0))
    jitter = n.new("ShaderNodeTexNoise", Scale=6.0, Detail=3.0)
    n.link(vec, jitter.inputs["Vector"])
    warped = n.new("ShaderNodeMix", data_type="VECTOR")
    warped.inputs["Factor"].default_value = 0.08
    n.link(vec, warped.inputs["A"])
    n.link(jitter.outputs["Color"], warped.inputs["B"])
    edges = n.new("ShaderNodeTexVoronoi", feature="DISTANCE_TO_EDGE", Scale=5.0, Randomness=0.85)
    n.link(warped.outputs["Result"], edges.inputs["Vector"])
    cells = n.new("ShaderNodeTexVoronoi", feature="F1", Scale=5.0, Randomness=0.85)
    n.link(warped.outputs["Result"], cells.inputs["Vector"])
    dome = n.math("POWER", n.math("MULTIPLY", edges.outputs["Distance"], 5.0, clamp=True), 0.45)
    grain = n.new("ShaderNodeTexNoise", Scale=60.0, Detail=8.0, Roughness=0.7)
    n.link(vec, grain.inputs["Vector"])
    height = n.math("ADD", n.math("MULTIPLY", dome, 0.85), n.math("MULTIPLY", grain.outputs["Fac"], 0.15))
    stone = n.ramp(cells.outputs["Color"], [(0.0, (0.20, 0.18, 0.16)), (0.5, (0.42, 0.38, 0.33)),
                                            (1.0, (0.55, 0.47, 0.36))])
    stone = n.mix(grain.outputs["Fac"], stone, n.ramp(grain.outputs["Fac"], [(0.0, (0.1, 0.1, 0.1)),
                                                                               (1.0, (0.6, 0.58, 0.55))]))
    mortar = n.math("GREATER_THAN", edges.outputs["Distance"], 0.04)
    colour = n.mix(mortar, n.ramp(grain.outputs["Fac"], [(0.0, (0.03, 0.03, 0.025)), (1.0, (0.09, 0.08, 0.07))]),
                   stone)
    n.finish(colour, height, bump_strength=1.0, roughness=0.8)


def rusty_metal(n: Nodes) -> None:
    """Grey steel with patches and streaks of orange-brown rust."""
    vec = n.mapping(scale=(1.0, 1.0, 1.0))
    patches = n.new("ShaderNodeTexNoise", Scale=3.5, Detail=10.0, Roughness=0.65)
    n.link(vec, patches.inputs["Vector"])
    speckle = n.new("ShaderNodeTexNoise", Scale=80.0, Detail=6.0, Roughness=0.8)
    n.link(vec, speckle.inputs["Vector"])
    rust_mask = n.math("SMOOTH_MAX", n.math("SUBTRACT", patches.outputs["Fac"], 0.56), 0.0)
    rust_mask = n.math("MULTIPLY", rust_mask, 9.0, clamp=True)
    metal = n.ramp(speckle.outputs["Fac"], [(0.3, (0.28, 0.29, 0.30)), (0.7, (0.52, 0.53, 0.54))])
    rust = n.ramp(speckle.outputs["Fac"], [(0.2, (0.16, 0.05, 0.015)), (0.5, (0.42, 0.15, 0.04)),
                                           (0.8, (0.62, 0.32, 0.10))])
    colour = n.mix(rust_mask, metal, rust)
    height = n.math("ADD", n.math("MULTIPLY", rust_mask, 0.6), n.math("MULTIPLY", speckle.outputs["Fac"], 0.4))
    roughness = n.math("ADD", 0.35, n.math("MULTIPLY", rust_mask, 0.55))
    metallic = n.math("SUBTRACT", 1.0, rust_mask)
    n.finish(colour, height, bump_strength=0.5, roughness=roughness, metallic=metallic)


def fabric(n: Nodes) -> None:
    """Plain weave: warp and weft threads alternating over and under."""
    vec = n.mapping(scale=(1.0, 1.0, 1.0))
    weave = n.new("ShaderNodeTexChecker", Scale=16.0)
    n.link(vec, weave.inputs["Vector"])
    warp = n.new("ShaderNodeTexWave", wave_type="BANDS", bands_direction="X", wave_profile="SIN", Scale=16.0 * 3.14159,
                 Distortion=0.3, Detail=1.0)
    weft = n.new("ShaderNodeTexWave", wave_type="BANDS", bands_direction="Y", wave_profile="SIN", Scale=16.0 * 3.14159,
                 Distortion=0.3, Detail=1.0)
    for wave in (warp, weft):
        n.link(vec, wave.inputs["Vector"])
    threads = n.new("ShaderNodeMix", data_type="FLOAT")
    n.link(weave.outputs["Fac"], threads.inputs["Factor"])
    n.link(warp.outputs["Fac"], threads.inputs["A"])
    n.link(weft.outputs["Fac"], threads.inputs["B"])
    fuzz = n.new("ShaderNodeTexNoise", Scale=150.0, Detail=4.0)
    n.link(vec, fuzz.inputs["Vector"])
    dye = n.new("ShaderNodeTexNoise", Scale=2.0, Detail=2.0)
    n.link(vec, dye.inputs["Vector"])
    height = n.math("ADD", n.math("MULTIPLY", threads.outputs["Result"], 0.8), n.math("MULTIPLY", fuzz.outputs["Fac"], 0.2))
    base = n.ramp(dye.outputs["Fac"], [(0.3, (0.05, 0.12, 0.28)), (0.7, (0.09, 0.18, 0.38))])
    colour = n.mix(height, n.ramp(height, [(0.0, (0.0, 0.0, 0.0)), (1.0, (0.5, 0.5, 0.5))]), base)
    n.finish(colour, height, bump_strength=0.7, roughness=0.95)


MATERIALS = {"bark": bark, "cobblestones": cobblestones, "rusty_metal": rusty_metal, "fabric": fabric}


def build_scene(size: int, samples: int) -> bpy.types.Object:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    bpy.ops.mesh.primitive_plane_add(size=2.0, location=(0, 0, 0))
    plane = bpy.context.object
    bpy.ops.object.camera_add(location=(0, 0, 5), rotation=(0, 0, 0))
    camera = bpy.context.object
    camera.data.type = "ORTHO"
    camera.data.ortho_scale = 2.0
    scene.camera = camera
    # A low sun from the upper left: relief casts soft shading like a photographed surface.
    bpy.ops.object.light_add(type="SUN", location=(0, 0, 5), rotation=(0.75, -0.35, 0.0))
    bpy.context.object.data.energy = 3.0
    bpy.context.object.data.angle = 0.2
    world = bpy.data.worlds.new("Exemplar sky")
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.35
    scene.world = world
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_denoising = False
    scene.render.resolution_x = scene.render.resolution_y = size
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    scene.view_settings.view_transform = "Standard"  # plain sRGB: the colours set in the nodes
    return plane


def render(name: str, out_dir: Path, size: int, samples: int) -> Path:
    plane = build_scene(size, samples)
    material = bpy.data.materials.new(name)
    MATERIALS[name](Nodes(material))
    plane.data.materials.append(material)
    path = out_dir / f"render_{name}.png"
    bpy.context.scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"materials to render (default all: {', '.join(MATERIALS)})")
    parser.add_argument("--out", default=str(ROOT / "models" / "exemplars"))
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--samples", type=int, default=16)
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in MATERIALS]
    if unknown:
        parser.error(f"unknown material(s) {', '.join(unknown)}; choose from {', '.join(MATERIALS)}")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in args.names or list(MATERIALS):
        start = time.perf_counter()
        path = render(name, out_dir, args.size, args.samples)
        print(f"render_exemplars: {path} ({time.perf_counter() - start:.1f}s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
