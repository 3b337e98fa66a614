"""Content frames for training the style models: Cycles renders made here, plus CC0/public-domain photographs.

The style models stylize Blender renders, so most of their training content is
renders: random primitives (cubes, spheres, tori, monkeys, cylinders, cones)
with random procedural materials (noise, voronoi, wave, magic, brick, checker
textures through a colour ramp into a Principled BSDF with random roughness and
metallic), a textured ground plane, a sun and an area light, a random camera
and a random sky colour. Seeded, so the same command writes the same scenes.
Real photographs come from scikit-image's bundled data, only those whose
docstrings say CC0 or public domain (see PHOTOS and models/content_frames/SOURCES.md).

    .venv/bin/python tools/render_content_frames.py [--count 40] [--seed 0] [--out models/content_frames]
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "models" / "content_frames"
WIDTH, HEIGHT = 320, 240
SAMPLES = 16
JPEG_QUALITY = 92
PHOTO_MAX_SIDE = 512

# scikit-image data file -> (what it shows, licence as its docstring states it).
PHOTOS = {
    "astronaut.png": ("Eileen Collins, NASA Great Images", "public domain (NASA; 'no known copyright restrictions')"),
    "chelsea.png": ("Chelsea the cat, by Stefan van der Walt", "CC0"),
    "coffee.png": ("Coffee cup, by Rachel Michetti", "CC0"),
    "rocket.jpg": ("SpaceX Falcon 9 launch", "public domain (released by SpaceX)"),
    "hubble_deep_field.jpg": ("Hubble eXtreme Deep Field, NASA", "public domain (NASA media guidelines)"),
}
PRIMITIVES = ("cube", "uv_sphere", "torus", "monkey", "cylinder", "cone", "ico_sphere")
TEXTURES = ("noise", "voronoi", "wave", "magic", "brick", "checker")


def _random_colour(rng: random.Random) -> tuple[float, float, float, float]:
    import colorsys

    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.2, 0.95), rng.uniform(0.15, 0.95))
    return (r, g, b, 1.0)


def _texture_node(nodes, kind: str, rng: random.Random):
    """One procedural texture node with random parameters; returns (node, its float/colour output)."""
    if kind == "noise":
        node = nodes.new("ShaderNodeTexNoise")
        node.inputs["Scale"].default_value = rng.uniform(1.5, 18.0)
        node.inputs["Detail"].default_value = rng.uniform(0.0, 12.0)
        node.inputs["Roughness"].default_value = rng.uniform(0.3, 0.8)
        node.inputs["Distortion"].default_value = rng.uniform(0.0, 3.0)
        if hasattr(node, "noise_type"):  # Blender >= 4.1 folds the old Musgrave texture in here
            node.noise_type = rng.choice(("FBM", "MULTIFRACTAL", "RIDGED_MULTIFRACTAL", "HETERO_TERRAIN"))
        return node, node.outputs["Fac"]
    if kind == "voronoi":
        node = nodes.new("ShaderNodeTexVoronoi")
        node.inputs["Scale"].default_value = rng.uniform(2.0, 25.0)
        node.feature = rng.choice(("F1", "F2", "DISTANCE_TO_EDGE", "SMOOTH_F1"))
        return node, node.outputs["Distance"]
    if kind == "wave":
        node = nodes.new("ShaderNodeTexWave")
        node.wave_type = rng.choice(("BANDS", "RINGS"))
        node.inputs["Scale"].default_value = rng.uniform(1.0, 10.0)
        node.inputs["Distortion"].default_value = rng.uniform(0.0, 15.0)
        node.inputs["Detail"].default_value = rng.uniform(0.0, 6.0)
        return node, node.outputs["Fac"]
    if kind == "magic":
        node = nodes.new("ShaderNodeTexMagic")
        node.turbulence_depth = rng.randint(1, 5)
        node.inputs["Scale"].default_value = rng.uniform(1.0, 8.0)
        return node, node.outputs["Fac"]
    if kind == "brick":
        node = nodes.new("ShaderNodeTexBrick")
        node.inputs["Scale"].default_value = rng.uniform(2.0, 10.0)
        return node, node.outputs["Fac"]
    node = nodes.new("ShaderNodeTexChecker")
    node.inputs["Scale"].default_value = rng.uniform(2.0, 16.0)
    return node, node.outputs["Fac"]


def _material(bpy, name: str, rng: random.Random):
    """A Principled BSDF whose colour (and sometimes roughness) follows a random procedural texture."""
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    bsdf = nodes.get("Principled BSDF")
    tex, fac = _texture_node(nodes, rng.choice(TEXTURES), rng)
    ramp = nodes.new("ShaderNodeValToRGB")
    elements = ramp.color_ramp.elements
    elements[0].color, elements[1].color = _random_colour(rng), _random_colour(rng)
    if rng.random() < 0.5:
        middle = elements.new(rng.uniform(0.3, 0.7))
        middle.color = _random_colour(rng)
    links.new(fac, ramp.inputs["Fac"])
    links.new(ramp.outputs["Color"], bsdf.inputs["Base Color"])
    bsdf.inputs["Roughness"].default_value = rng.uniform(0.05, 0.95)
    bsdf.inputs["Metallic"].default_value = rng.choice((0.0, 0.0, 0.0, rng.uniform(0.3, 1.0)))
    if rng.random() < 0.3:  # texture-driven roughness: glossy and matte patches
        links.new(fac, bsdf.inputs["Roughness"])
    return mat


def _add_primitive(bpy, kind: str, location, size: float):
    ops = bpy.ops.mesh
    if kind == "cube":
        ops.primitive_cube_add(size=size, location=location)
    elif kind == "uv_sphere":
        ops.primitive_uv_sphere_add(radius=size / 2, location=location, segments=32, ring_count=16)
    elif kind == "torus":
        ops.primitive_torus_add(major_radius=size / 2, minor_radius=size / 6, location=location)
    elif kind == "monkey":
        ops.primitive_monkey_add(size=size, location=location)
    elif kind == "cylinder":
        ops.primitive_cylinder_add(radius=size / 2.5, depth=size * 1.3, location=location, vertices=32)
    elif kind == "cone":
        ops.primitive_cone_add(radius1=size / 2, depth=size * 1.2, location=location, vertices=32)
    else:
        ops.primitive_ico_sphere_add(radius=size / 2, subdivisions=rng_subdiv(size), location=location)
    return bpy.context.object


def rng_subdiv(size: float) -> int:
    return 1 if size < 1.0 else 2  # faceted, a look renders have and photos don't


def build_scene(bpy, rng: random.Random) -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    bpy.ops.mesh.primitive_plane_add(size=40, location=(0, 0, 0))
    bpy.context.object.data.materials.append(_material(bpy, "ground", rng))
    placed = []
    for i in range(rng.randint(3, 8)):
        size = rng.uniform(0.6, 2.2)
        for _ in range(20):  # avoid heavy overlaps so objects stay readable
            x, y = rng.uniform(-4, 4), rng.uniform(-3, 3)
            if all(math.hypot(x - px, y - py) > (size + ps) * 0.45 for px, py, ps in placed):
                break
        placed.append((x, y, size))
        obj = _add_primitive(bpy, rng.choice(PRIMITIVES), (x, y, size / 2 + rng.uniform(0, 0.6)), size)
        obj.rotation_euler = (rng.uniform(0, 0.6), rng.uniform(0, 0.6), rng.uniform(0, math.tau))
        if rng.random() < 0.7:
            bpy.ops.object.shade_smooth()
        obj.data.materials.append(_material(bpy, f"m{i}", rng))
    # Camera on a random orbit, aimed at the cluster through a track-to constraint.
    angle, dist, height = rng.uniform(0, math.tau), rng.uniform(7, 13), rng.uniform(1.2, 7.0)
    bpy.ops.object.camera_add(location=(dist * math.cos(angle), dist * math.sin(angle), height))
    camera = bpy.context.object
    camera.data.lens = rng.uniform(28, 60)
    bpy.ops.object.empty_add(location=(rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(0.3, 1.2)))
    target = bpy.context.object
    track = camera.constraints.new("TRACK_TO")
    track.target, track.track_axis, track.up_axis = target, "TRACK_NEGATIVE_Z", "UP_Y"
    scene.camera = camera
    bpy.ops.object.light_add(type="SUN", rotation=(rng.uniform(0.1, 1.2), 0.0, rng.uniform(0, math.tau)))
    bpy.context.object.data.energy = rng.uniform(1.5, 5.0)
    bpy.context.object.data.color = _random_colour(rng)[:3] if rng.random() < 0.3 else (1.0, 0.97, 0.92)
    bpy.ops.object.light_add(type="AREA", location=(rng.uniform(-5, 5), rng.uniform(-5, 5), rng.uniform(3, 7)))
    bpy.context.object.data.energy = rng.uniform(200, 900)
    bpy.context.object.data.size = rng.uniform(1, 4)
    bpy.context.object.constraints.new("TRACK_TO").target = target
    world = bpy.data.worlds.new("sky")
    world.use_nodes = True
    background = world.node_tree.nodes["Background"]
    background.inputs["Color"].default_value = _random_colour(rng)
    background.inputs["Strength"].default_value = rng.uniform(0.3, 1.2)
    scene.world = world
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = SAMPLES
    scene.cycles.use_denoising = False  # OIDN may be absent in the bpy module; 16 samples of grain is realistic
    scene.render.resolution_x, scene.render.resolution_y = WIDTH, HEIGHT
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "JPEG"
    scene.render.image_settings.quality = JPEG_QUALITY


def render_frames(out: Path, count: int, seed: int) -> list[Path]:
    import bpy

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i in range(count):
        start = time.perf_counter()
        build_scene(bpy, random.Random(seed * 100003 + i))
        path = out / f"render_{i:03d}.jpg"
        bpy.context.scene.render.filepath = str(path)
        bpy.ops.render.render(write_still=True)
        written.append(path)
        print(f"render_content_frames: {path.name} {time.perf_counter() - start:.1f}s", flush=True)
    return written


def copy_photos(out: Path) -> list[Path]:
    """The CC0 / public-domain photographs scikit-image ships, as JPEGs no longer than PHOTO_MAX_SIDE."""
    import skimage
    from PIL import Image

    data = Path(skimage.__file__).parent / "data"
    written = []
    for name in PHOTOS:
        img = Image.open(data / name).convert("RGB")
        img.thumbnail((PHOTO_MAX_SIDE, PHOTO_MAX_SIDE), Image.LANCZOS)
        path = out / f"photo_{Path(name).stem}.jpg"
        img.save(path, quality=JPEG_QUALITY)
        written.append(path)
    return written


def write_sources(out: Path, renders: list[Path], photos: list[Path], command: str) -> None:
    import skimage

    lines = ["# Content frames (training content for the style models)", "",
             f"Written by `{command}`.", "",
             "## Renders (`render_*.jpg`)", "",
             f"{len(renders)} Cycles renders ({WIDTH}x{HEIGHT}, {SAMPLES} samples, CPU) of random scenes made by this "
             "project: primitives with procedural materials, ground plane, sun + area light, random camera and sky. "
             "No third-party content; CC0.", "",
             f"## Photographs (`photo_*.jpg`), from scikit-image {skimage.__version__} `skimage/data`", "",
             "Resized to at most 512 px on the longer side. Licences as stated in scikit-image's docstrings "
             "(`skimage/data/_fetchers.py`); only CC0 / public-domain images are used.", "",
             "| file | source file | content | licence |", "|---|---|---|---|"]
    for path, (name, (what, licence)) in zip(photos, PHOTOS.items()):
        lines.append(f"| {path.name} | {name} | {what} | {licence} |")
    (out / "SOURCES.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if args.count < 0:
        parser.error("--count must be >= 0")
    renders = render_frames(args.out, args.count, args.seed)
    photos = copy_photos(args.out)
    command = f"python tools/render_content_frames.py --count {args.count} --seed {args.seed}"
    write_sources(args.out, renders, photos, command)
    total = sum(p.stat().st_size for p in args.out.iterdir())
    print(f"render_content_frames: {len(renders)} renders + {len(photos)} photos, {total / 1e6:.2f} MB in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
