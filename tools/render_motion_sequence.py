"""A short Cycles animation with its Vector pass: the test and bench sequence of the render-farm path.

24 frames at 160x120, OpenEXR MultiLayer (half float, ZIP) with the Combined
and Vector passes, exactly as an artist's render with *Set Up Motion Vectors*
gives them: the camera pans and dollies over a textured ground while a cube
turns and a sphere rolls across, so the motion differs per pixel (no single
translation explains it). Emission-only materials keep the render free of
sampling noise, so flicker measured on it comes from the stylization alone.
Made by this project (CC0); rendered on demand, never committed. Seeded scene, so
the same command writes the same frames.

    .venv/bin/python tools/render_motion_sequence.py [--out build_cache/sequences/orbit] [--frames 24]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "build_cache" / "sequences" / "orbit"  # rendered on demand (7.7 MB: not committed)
WIDTH, HEIGHT = 160, 120
SAMPLES = 16


def _emissive(bpy, name: str, texture: str, scale: float, colours):
    """An emission material driven by a procedural texture through a two-colour ramp."""
    material = bpy.data.materials.new(name)
    material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    for node in list(nodes):
        if node.type != "OUTPUT_MATERIAL":
            nodes.remove(node)
    tex = nodes.new({"checker": "ShaderNodeTexChecker", "voronoi": "ShaderNodeTexVoronoi",
                     "wave": "ShaderNodeTexWave", "noise": "ShaderNodeTexNoise"}[texture])
    tex.inputs["Scale"].default_value = scale
    ramp = nodes.new("ShaderNodeValToRGB")
    ramp.color_ramp.elements[0].color = (*colours[0], 1.0)
    ramp.color_ramp.elements[1].color = (*colours[1], 1.0)
    fac = tex.outputs["Fac"] if "Fac" in tex.outputs else tex.outputs["Distance"]
    links.new(fac, ramp.inputs["Fac"])
    emission = nodes.new("ShaderNodeEmission")
    links.new(ramp.outputs["Color"], emission.inputs["Color"])
    out = next(n for n in nodes if n.type == "OUTPUT_MATERIAL")
    links.new(emission.outputs["Emission"], out.inputs["Surface"])
    return material


def build_scene(bpy, frames: int):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = SAMPLES
    scene.cycles.seed = 0
    scene.cycles.use_denoising = False
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = WIDTH, HEIGHT, 100
    scene.render.use_motion_blur = False  # the Vector pass is only written without motion blur
    scene.frame_start, scene.frame_end = 1, frames
    scene.view_layers[0].use_pass_vector = True
    settings = scene.render.image_settings
    if "media_type" in settings.bl_rna.properties:  # Blender 5: multilayer is a media type
        settings.media_type = "MULTI_LAYER_IMAGE"
    settings.file_format = "OPEN_EXR_MULTILAYER"
    settings.color_depth = "16"
    settings.exr_codec = "ZIP"
    world = bpy.data.worlds.new("sky")
    world.color = (0.35, 0.45, 0.6)
    scene.world = world

    bpy.ops.mesh.primitive_plane_add(size=30, location=(0, 0, 0))
    bpy.context.object.data.materials.append(_emissive(bpy, "ground", "checker", 18.0,
                                                       [(0.75, 0.68, 0.5), (0.25, 0.3, 0.22)]))
    bpy.ops.mesh.primitive_cube_add(size=2.0, location=(-1.5, 0.5, 1.0))
    cube = bpy.context.object
    cube.data.materials.append(_emissive(bpy, "cube", "voronoi", 4.0, [(0.9, 0.3, 0.1), (0.15, 0.1, 0.4)]))
    bpy.ops.mesh.primitive_uv_sphere_add(radius=0.9, location=(2.5, -1.5, 0.9))
    sphere = bpy.context.object
    sphere.data.materials.append(_emissive(bpy, "sphere", "wave", 3.0, [(0.95, 0.9, 0.3), (0.1, 0.45, 0.35)]))
    bpy.ops.object.camera_add(location=(0.0, -9.0, 5.0), rotation=(1.05, 0.0, 0.0))
    camera = bpy.context.object
    scene.camera = camera

    # keyframes with linear interpolation: steady motion of a few pixels per frame
    for frame, t in ((1, 0.0), (frames, 1.0)):
        cube.rotation_euler = (0.0, 0.0, 1.2 * t)
        cube.keyframe_insert("rotation_euler", frame=frame)
        sphere.location = (2.5 - 4.0 * t, -1.5 + 1.0 * t, 0.9)
        sphere.rotation_euler = (0.0, -4.0 * t, 0.0)
        sphere.keyframe_insert("location", frame=frame)
        sphere.keyframe_insert("rotation_euler", frame=frame)
        camera.location = (-1.0 + 2.0 * t, -9.0 + 1.5 * t, 5.0)
        camera.rotation_euler = (1.05, 0.0, 0.12 - 0.24 * t)
        camera.keyframe_insert("location", frame=frame)
        camera.keyframe_insert("rotation_euler", frame=frame)
    for obj in (cube, sphere, camera):
        action = obj.animation_data.action
        for curve in _fcurves(action):
            for point in curve.keyframe_points:
                point.interpolation = "LINEAR"
    return scene


def _fcurves(action):
    """F-curves of an action (Blender 5 keeps them in layered channelbags)."""
    if hasattr(action, "fcurves") and len(getattr(action, "fcurves", [])):
        return list(action.fcurves)
    curves = []
    for layer in getattr(action, "layers", []):
        for strip in layer.strips:
            for bag in strip.channelbags:
                curves.extend(bag.fcurves)
    return curves


def render(out: Path = OUT, frames: int = 24) -> list[Path]:
    import bpy

    out.mkdir(parents=True, exist_ok=True)
    scene = build_scene(bpy, frames)
    scene.render.filepath = str(out / "frame_")
    bpy.ops.render.render(animation=True)
    return sorted(out.glob("frame_*.exr"))


def cached_sequence(folder: Path = OUT, frames: int = 24) -> list[Path]:
    """The rendered frames, rendering them once (in a subprocess: bpy stays out of the caller) when missing."""
    import os
    import shutil
    import subprocess
    import tempfile

    paths = sorted(Path(folder).glob("frame_*.exr"))
    if len(paths) == frames:
        return paths
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, str(Path(__file__).resolve()), "--out", str(tmp), "--frames", str(frames)],
                   check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)  # whole folder at once: a reader never sees half a sequence
    return sorted(folder.glob("frame_*.exr"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--frames", type=int, default=24)
    args = parser.parse_args(argv)
    paths = render(Path(args.out), args.frames)
    total = sum(p.stat().st_size for p in paths)
    print(f"wrote {len(paths)} frames to {args.out} ({total / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
