"""Varied Cycles renders for data/content/: the domain the add-on stylizes (objects, interiors, landscapes).

Three kinds of seeded random scene, each cheap enough for a shared CPU (<= 480x320, 10 samples + denoising):
- objects: primitives, Suzanne, bevelled boxes and torus knots (curves) on a ground plane, with plain,
  metal, glass, emissive or procedural (noise/voronoi/wave/magic/brick/checker) Principled materials,
  lit by a sun + physical sky, area lights, or coloured point lights;
- interior: a room (floor, walls, optional ceiling, a window opening with daylight coming through it),
  furniture-like boxes (tables, cabinets, shelves), small objects on them, a warm lamp;
- landscape: a displaced terrain coloured by height (grass, rock, snow), an optional glossy water plane,
  rocks and simple trees, a physical sky with its sun, a low camera looking at the horizon.
Scene i of a run uses random.Random(seed * 100003 + i), so the same command writes the same files.
Renders made by this project are CC0.

    nice -n 10 .venv/bin/python tools/render_training_scenes.py --count 120 --seed 1 --out data/content
"""
from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from render_content_frames import PRIMITIVES, _add_primitive, _material, _random_colour  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = 10  # with OpenImageDenoise: clean at this size, and the shared 2-core CPU allows ~100 in 25 min
JPEG_QUALITY = 85
KINDS = ("objects", "objects", "interior", "landscape")  # objects twice: the add-on's commonest subject
SIZES = ((480, 320), (480, 320), (480, 320), (400, 320), (320, 480), (320, 320))


def _principled(bpy, name, colour, roughness=0.5, metallic=0.0, transmission=0.0, emission=0.0):
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    bsdf = mat.node_tree.nodes.get("Principled BSDF")
    bsdf.inputs["Base Color"].default_value = colour
    bsdf.inputs["Roughness"].default_value = roughness
    bsdf.inputs["Metallic"].default_value = metallic
    bsdf.inputs["Transmission Weight"].default_value = transmission
    if emission:
        bsdf.inputs["Emission Color"].default_value = colour
        bsdf.inputs["Emission Strength"].default_value = emission
    return mat


def _any_material(bpy, name, rng):
    """Plain, metal, glass, emissive or procedural: the spread of looks a Blender user's scene has."""
    kind = rng.choices(("procedural", "plain", "metal", "glass", "emit"), (5, 3, 2, 1.2, 0.4))[0]
    if kind == "procedural":
        return _material(bpy, name, rng)
    if kind == "plain":
        return _principled(bpy, name, _random_colour(rng), rng.uniform(0.05, 0.9))
    if kind == "metal":
        tint = rng.choice(((0.95, 0.75, 0.35, 1), (0.9, 0.9, 0.92, 1), (0.95, 0.6, 0.45, 1), _random_colour(rng)))
        return _principled(bpy, name, tint, rng.uniform(0.05, 0.45), metallic=1.0)
    if kind == "glass":
        return _principled(bpy, name, _random_colour(rng)[:3] + (1,) if rng.random() < 0.4 else (1, 1, 1, 1),
                           rng.uniform(0.0, 0.15), transmission=1.0)
    return _principled(bpy, name, _random_colour(rng), 0.5, emission=rng.uniform(2, 8))


def _box(bpy, location, dims, mat, bevel=0.0):
    bpy.ops.mesh.primitive_cube_add(size=1, location=location)
    obj = bpy.context.object
    obj.scale = dims
    bpy.ops.object.transform_apply(scale=True)
    if bevel:
        mod = obj.modifiers.new("bevel", "BEVEL")
        mod.width, mod.segments = bevel, 3
    obj.data.materials.append(mat)
    return obj


def _torus_knot(bpy, location, size, rng, mat):
    p, q = rng.choice(((2, 3), (3, 2), (2, 5), (3, 4), (3, 5)))
    curve = bpy.data.curves.new("knot", "CURVE")
    curve.dimensions = "3D"
    curve.bevel_depth = size * rng.uniform(0.06, 0.14)
    curve.bevel_resolution = 4
    spline = curve.splines.new("POLY")
    n = 240
    spline.points.add(n - 1)
    for i in range(n):
        t = math.tau * i / n
        r = (2 + math.cos(q * t)) * size / 6
        spline.points[i].co = (r * math.cos(p * t), r * math.sin(p * t), -math.sin(q * t) * size / 6, 1)
    spline.use_cyclic_u = True
    obj = bpy.data.objects.new("knot", curve)
    bpy.context.scene.collection.objects.link(obj)
    obj.location = location
    obj.data.materials.append(mat)
    return obj


def _sky_world(bpy, rng, elevation=None):
    """A physical sky (Blender's Sky Texture) and a sun lamp at the same angle: HDR-like daylight."""
    world = bpy.data.worlds.new("sky")
    world.use_nodes = True
    nodes = world.node_tree.nodes
    sky = nodes.new("ShaderNodeTexSky")
    sky.sky_type = rng.choice(("MULTIPLE_SCATTERING", "SINGLE_SCATTERING", "HOSEK_WILKIE"))
    elevation = rng.uniform(0.05, 1.1) if elevation is None else elevation
    rotation = rng.uniform(0, math.tau)
    sky.sun_elevation, sky.sun_rotation = elevation, rotation
    sky.sun_disc = False  # the sun lamp below lights the scene; the sky's own disc would double it
    if sky.sky_type == "HOSEK_WILKIE":
        sky.turbidity = rng.uniform(2, 6)
        sky.sun_direction = (math.cos(elevation) * math.sin(rotation), -math.cos(elevation) * math.cos(rotation),
                             math.sin(elevation))
    else:
        sky.air_density = rng.uniform(0.5, 2.5)
        sky.aerosol_density = rng.uniform(0.2, 3.0)
    background = nodes["Background"]
    world.node_tree.links.new(sky.outputs["Color"], background.inputs["Color"])
    # Multiple/single scattering skies are in physical units: scale them to a sane exposure.
    background.inputs["Strength"].default_value = (rng.uniform(0.06, 0.16) if sky.sky_type != "HOSEK_WILKIE"
                                                   else rng.uniform(0.25, 0.5))
    bpy.context.scene.world = world
    bpy.ops.object.light_add(type="SUN", rotation=(math.pi / 2 - elevation, 0.0, rotation))
    sun = bpy.context.object.data
    sun.energy = rng.uniform(2.0, 5.0) * max(0.25, math.sin(elevation) + 0.2)
    sun.angle = rng.uniform(0.01, 0.1)
    sun.color = (1.0, 0.85 + 0.15 * min(1, elevation), 0.7 + 0.3 * min(1, elevation))
    return world


def _plain_world(bpy, rng):
    world = bpy.data.worlds.new("bg")
    world.use_nodes = True
    bg = world.node_tree.nodes["Background"]
    bg.inputs["Color"].default_value = _random_colour(rng)
    bg.inputs["Strength"].default_value = rng.uniform(0.2, 1.0)
    bpy.context.scene.world = world


def _camera(bpy, location, target, lens):
    bpy.ops.object.camera_add(location=location)
    cam = bpy.context.object
    cam.data.lens = lens
    cam.data.clip_end = 500
    bpy.ops.object.empty_add(location=target)
    track = cam.constraints.new("TRACK_TO")
    track.target, track.track_axis, track.up_axis = bpy.context.object, "TRACK_NEGATIVE_Z", "UP_Y"
    bpy.context.scene.camera = cam
    return cam


def scene_objects(bpy, rng):
    bpy.ops.mesh.primitive_plane_add(size=60)
    ground = _material(bpy, "ground", rng) if rng.random() < 0.7 else _principled(
        bpy, "ground", _random_colour(rng), rng.uniform(0.1, 0.9))
    bpy.context.object.data.materials.append(ground)
    placed = []
    for i in range(rng.randint(2, 7)):
        size = rng.uniform(0.7, 2.4)
        for _ in range(30):
            x, y = rng.uniform(-4, 4), rng.uniform(-3, 3)
            if all(math.hypot(x - px, y - py) > (size + ps) * 0.5 for px, py, ps in placed):
                break
        placed.append((x, y, size))
        mat = _any_material(bpy, f"m{i}", rng)
        kind = rng.choices(("primitive", "monkey", "bevel", "knot"), (4, 1.5, 2, 1.2))[0]
        if kind == "knot":
            obj = _torus_knot(bpy, (x, y, size * 0.6), size, rng, mat)
            obj.rotation_euler = (rng.uniform(0, 1.2), rng.uniform(0, 1.2), rng.uniform(0, math.tau))
            continue
        if kind == "bevel":
            obj = _box(bpy, (x, y, 0), (size * rng.uniform(0.5, 1.3), size * rng.uniform(0.5, 1.3),
                                         size * rng.uniform(0.4, 1.5)), mat, bevel=rng.uniform(0.05, 0.3))
            obj.location.z = obj.dimensions.z / 2
            obj.rotation_euler.z = rng.uniform(0, math.tau)
            continue
        obj = _add_primitive(bpy, "monkey" if kind == "monkey" else rng.choice(PRIMITIVES),
                             (x, y, size / 2 + rng.uniform(0, 0.4)), size)
        obj.rotation_euler = (rng.uniform(0, 0.5), rng.uniform(0, 0.5), rng.uniform(0, math.tau))
        if rng.random() < 0.7:
            bpy.ops.object.shade_smooth()
        if kind == "monkey" and rng.random() < 0.6:
            obj.modifiers.new("subsurf", "SUBSURF").levels = 2
        obj.data.materials.append(mat)
    light = rng.choice(("sky", "sky", "area", "points"))
    if light == "sky":
        _sky_world(bpy, rng)
    else:
        _plain_world(bpy, rng)
        for _ in range(rng.randint(1, 3)):
            loc = (rng.uniform(-6, 6), rng.uniform(-6, 6), rng.uniform(2, 7))
            if light == "area":
                bpy.ops.object.light_add(type="AREA", location=loc)
                bpy.context.object.data.energy = rng.uniform(300, 1500)
                bpy.context.object.data.size = rng.uniform(1, 5)
                bpy.context.object.rotation_euler = (math.atan2(math.hypot(*loc[:2]), loc[2]), 0,
                                                     math.atan2(loc[1], loc[0]) + math.pi / 2)
            else:
                bpy.ops.object.light_add(type="POINT", location=loc)
                bpy.context.object.data.energy = rng.uniform(400, 2000)
                bpy.context.object.data.shadow_soft_size = rng.uniform(0.1, 1.0)
                bpy.context.object.data.color = _random_colour(rng)[:3] if rng.random() < 0.6 else (1, 0.9, 0.8)
    angle, dist, height = rng.uniform(0, math.tau), rng.uniform(6, 14), rng.uniform(0.6, 8.0)
    _camera(bpy, (dist * math.cos(angle), dist * math.sin(angle), height),
            (rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(0.3, 1.2)), rng.uniform(24, 85))


def _wood(bpy, name, rng):
    """Wave bands through a brown ramp: a floorboard / furniture wood look."""
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    wave = nodes.new("ShaderNodeTexWave")
    wave.inputs["Scale"].default_value = rng.uniform(1, 5)
    wave.inputs["Distortion"].default_value = rng.uniform(2, 10)
    wave.inputs["Detail"].default_value = 4
    ramp = nodes.new("ShaderNodeValToRGB")
    base = rng.uniform(0.05, 0.12)
    ramp.color_ramp.elements[0].color = (base * 3, base * 1.6, base * 0.8, 1)
    ramp.color_ramp.elements[1].color = (base * 6, base * 3.6, base * 2, 1)
    links.new(wave.outputs["Fac"], ramp.inputs["Fac"])
    bsdf = nodes["Principled BSDF"]
    links.new(ramp.outputs["Color"], bsdf.inputs["Base Color"])
    bsdf.inputs["Roughness"].default_value = rng.uniform(0.2, 0.7)
    return mat


def scene_interior(bpy, rng):
    w, d, h = rng.uniform(5, 9), rng.uniform(5, 9), rng.uniform(2.6, 3.6)
    t = 0.15
    wall = (_principled(bpy, "wall", _random_colour(rng)[:3] + (1,) if rng.random() < 0.5 else
                        (0.8, 0.78, 0.72, 1), rng.uniform(0.4, 0.9)) if rng.random() < 0.7
            else _material(bpy, "wall", rng))
    floor = _wood(bpy, "floor", rng) if rng.random() < 0.5 else _material(bpy, "floor", rng)
    _box(bpy, (0, 0, -t / 2), (w, d, t), floor)
    if rng.random() < 0.6:
        _box(bpy, (0, 0, h + t / 2), (w, d, t), wall)
    _box(bpy, (-w / 2 - t / 2, 0, h / 2), (t, d, h), wall)  # left
    _box(bpy, (0, -d / 2 - t / 2, h / 2), (w, t, h), wall)  # behind the camera
    # Right wall with a window opening: four pieces around the hole.
    ww, wh, wz = rng.uniform(1.2, 2.8), rng.uniform(1.0, 1.8), rng.uniform(0.7, 1.1)
    wy = rng.uniform(-d / 2 + ww / 2 + 0.3, d / 2 - ww / 2 - 0.3)
    x = w / 2 + t / 2
    _box(bpy, (x, 0, wz / 2), (t, d, wz), wall)
    _box(bpy, (x, 0, (wz + wh + h) / 2), (t, d, h - wz - wh), wall)
    _box(bpy, (x, (-d / 2 + wy - ww / 2) / 2, wz + wh / 2), (t, wy - ww / 2 + d / 2, wh), wall)
    _box(bpy, (x, (d / 2 + wy + ww / 2) / 2, wz + wh / 2), (t, d / 2 - wy - ww / 2, wh), wall)
    back = _box(bpy, (0, d / 2 + t / 2, h / 2), (w, t, h), wall)  # noqa: F841 (the wall the camera faces)
    # Daylight through the window: a sun/sky outside plus an area light filling the opening.
    _sky_world(bpy, rng, elevation=rng.uniform(0.15, 0.7))
    bpy.ops.object.light_add(type="AREA", location=(x + 0.3, wy, wz + wh / 2), rotation=(0, -math.pi / 2, 0))
    win = bpy.context.object.data
    win.shape, win.size, win.size_y = "RECTANGLE", wh, ww
    win.energy = rng.uniform(200, 800)
    win.color = (0.85, 0.92, 1.0)
    # Furniture: a table with things on it, cabinets / shelves along the walls.
    wood = _wood(bpy, "furniture", rng)
    tx, ty = rng.uniform(-w / 4, w / 4), rng.uniform(-d / 6, d / 4)
    tw, td, th = rng.uniform(1.0, 2.0), rng.uniform(0.7, 1.2), rng.uniform(0.7, 0.8)
    _box(bpy, (tx, ty, th - 0.03), (tw, td, 0.06), wood, bevel=0.01)
    for sx in (-1, 1):
        for sy in (-1, 1):
            _box(bpy, (tx + sx * (tw / 2 - 0.08), ty + sy * (td / 2 - 0.08), (th - 0.06) / 2), (0.06, 0.06, th - 0.06), wood)
    for i in range(rng.randint(1, 4)):
        size = rng.uniform(0.15, 0.35)
        obj = _add_primitive(bpy, rng.choice(("uv_sphere", "cylinder", "cone", "monkey", "cube", "torus")),
                             (tx + rng.uniform(-tw / 3, tw / 3), ty + rng.uniform(-td / 3, td / 3), th + size / 2), size)
        bpy.ops.object.shade_smooth()
        obj.data.materials.append(_any_material(bpy, f"o{i}", rng))
    for i in range(rng.randint(1, 4)):
        cw, cd, ch = rng.uniform(0.6, 2.0), rng.uniform(0.35, 0.6), rng.uniform(0.5, 2.0)
        side = rng.choice(("left", "back"))
        if side == "left":
            loc = (-w / 2 + cd / 2, rng.uniform(-d / 2 + cw / 2, d / 2 - cw / 2), ch / 2)
            dims = (cd, cw, ch)
        else:
            loc = (rng.uniform(-w / 2 + cw / 2, w / 2 - cw / 2), d / 2 - cd / 2, ch / 2)
            dims = (cw, cd, ch)
        mat = wood if rng.random() < 0.5 else _any_material(bpy, f"c{i}", rng)
        _box(bpy, loc, dims, mat, bevel=rng.choice((0.0, 0.02, 0.05)))
    # A warm lamp inside.
    bpy.ops.object.light_add(type="POINT", location=(rng.uniform(-w / 3, w / 3), rng.uniform(-d / 3, d / 3), h - 0.4))
    lamp = bpy.context.object.data
    lamp.energy, lamp.color, lamp.shadow_soft_size = rng.uniform(50, 400), (1.0, 0.8, 0.55), rng.uniform(0.1, 0.4)
    cam = (rng.uniform(-w / 3, w / 3), -d / 2 + rng.uniform(0.4, 1.2), rng.uniform(1.1, 1.8))
    _camera(bpy, cam, (rng.uniform(-w / 4, w / 3), d / 2, rng.uniform(0.6, 1.5)), rng.uniform(16, 30))


def scene_landscape(bpy, rng):
    size = 120
    bpy.ops.mesh.primitive_grid_add(x_subdivisions=110, y_subdivisions=110, size=size)
    terrain = bpy.context.object
    tex = bpy.data.textures.new("hills", "CLOUDS")
    tex.noise_scale = rng.uniform(15, 45)
    tex.noise_depth = rng.randint(2, 6)
    disp = terrain.modifiers.new("displace", "DISPLACE")
    disp.texture, disp.strength = tex, rng.uniform(4, 18)
    disp.mid_level = 0.5
    bpy.ops.object.shade_smooth()
    # Colour by height: grass / earth low, rock higher, snow at the top (sometimes).
    mat = bpy.data.materials.new("terrain")
    mat.use_nodes = True
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    geo = nodes.new("ShaderNodeNewGeometry")
    sep = nodes.new("ShaderNodeSeparateXYZ")
    mr = nodes.new("ShaderNodeMapRange")
    mr.inputs["From Min"].default_value = -disp.strength * 0.5
    mr.inputs["From Max"].default_value = disp.strength * 0.5
    mr.inputs["To Max"].default_value = 0.85
    noise = nodes.new("ShaderNodeTexNoise")
    noise.inputs["Scale"].default_value = rng.uniform(0.2, 2)
    mix = nodes.new("ShaderNodeMath")
    mix.operation = "MULTIPLY_ADD"
    mix.inputs[1].default_value = 0.2
    ramp = nodes.new("ShaderNodeValToRGB")
    el = ramp.color_ramp.elements
    palette = rng.choice((
        [(0.05, 0.14, 0.03), (0.12, 0.2, 0.05), (0.25, 0.22, 0.18), (0.9, 0.9, 0.95)],  # alpine
        [(0.35, 0.25, 0.12), (0.55, 0.38, 0.2), (0.6, 0.45, 0.3), (0.7, 0.55, 0.4)],    # desert
        [(0.06, 0.12, 0.03), (0.15, 0.25, 0.06), (0.3, 0.3, 0.1), (0.35, 0.3, 0.25)],   # hills
        [(0.25, 0.24, 0.22), (0.35, 0.33, 0.3), (0.6, 0.6, 0.62), (0.95, 0.95, 1.0)],   # rock and snow
    ))
    el[0].color, el[1].color = palette[0] + (1,), palette[3] + (1,)
    el[1].position = rng.uniform(0.75, 0.95)
    for pos, col in ((0.35, palette[1]), (0.6, palette[2])):
        e = el.new(pos)
        e.color = col + (1,)
    links.new(geo.outputs["Position"], sep.inputs["Vector"])
    links.new(sep.outputs["Z"], mr.inputs["Value"])
    links.new(noise.outputs["Fac"], mix.inputs[0])
    links.new(mr.outputs["Result"], mix.inputs[2])
    links.new(mix.outputs["Value"], ramp.inputs["Fac"])
    bsdf = nodes["Principled BSDF"]
    links.new(ramp.outputs["Color"], bsdf.inputs["Base Color"])
    bsdf.inputs["Roughness"].default_value = 0.9
    bsdf.inputs["Specular IOR Level"].default_value = 0.15  # no grazing-angle sheen washing the hills out
    terrain.data.materials.append(mat)
    water_z = None
    if rng.random() < 0.6:
        water_z = rng.uniform(-disp.strength * 0.25, disp.strength * 0.05)
        bpy.ops.mesh.primitive_plane_add(size=size, location=(0, 0, water_z))
        water = _principled(bpy, "water", (0.02, 0.06 + rng.uniform(0, 0.06), 0.08 + rng.uniform(0, 0.08), 1),
                            rng.uniform(0.02, 0.12))
        bump_noise = water.node_tree.nodes.new("ShaderNodeTexNoise")
        bump_noise.inputs["Scale"].default_value = rng.uniform(20, 80)
        bump = water.node_tree.nodes.new("ShaderNodeBump")
        bump.inputs["Strength"].default_value = rng.uniform(0.05, 0.3)
        water.node_tree.links.new(bump_noise.outputs["Fac"], bump.inputs["Height"])
        water.node_tree.links.new(bump.outputs["Normal"], water.node_tree.nodes["Principled BSDF"].inputs["Normal"])
        bpy.context.object.data.materials.append(water)
    _sky_world(bpy, rng, elevation=rng.uniform(0.03, 0.9))
    # Camera above the terrain near one edge, looking across it toward the horizon.
    ang = rng.uniform(0, math.tau)
    cx, cy = 30 * math.cos(ang), 30 * math.sin(ang)
    cz = disp.strength * 0.55 + rng.uniform(1.0, 8.0)
    tx, ty = -cx * rng.uniform(0.5, 1.5), -cy * rng.uniform(0.5, 1.5)
    _camera(bpy, (cx, cy, cz), (tx, ty, cz - rng.uniform(2, 10)), rng.uniform(20, 55))
    # A few rocks and trees near the camera, in front of it.
    for i in range(rng.randint(0, 8)):
        f = rng.uniform(0.15, 0.6)
        px = cx + (tx - cx) * f + rng.uniform(-8, 8)
        py = cy + (ty - cy) * f + rng.uniform(-8, 8)
        if rng.random() < 0.5:
            bpy.ops.mesh.primitive_ico_sphere_add(radius=rng.uniform(0.5, 2.5), subdivisions=3,
                                                  location=(px, py, disp.strength * 0.1))
            rock = bpy.context.object
            rock.scale = (1, rng.uniform(0.6, 1.2), rng.uniform(0.4, 0.8))
            rock.modifiers.new("d", "DISPLACE").texture = tex
            rock.data.materials.append(_principled(bpy, "rock", (0.3, 0.29, 0.27, 1), 0.85))
        else:
            hgt = rng.uniform(3, 8)
            bpy.ops.mesh.primitive_cone_add(radius1=hgt / 4, depth=hgt, location=(px, py, disp.strength * 0.1 + hgt / 2 + 1))
            bpy.context.object.data.materials.append(_principled(bpy, "leaves", (0.03, 0.12 + rng.uniform(0, 0.08), 0.03, 1), 0.8))
            bpy.ops.mesh.primitive_cylinder_add(radius=0.2, depth=2, location=(px, py, disp.strength * 0.1))
            bpy.context.object.data.materials.append(_principled(bpy, "bark", (0.12, 0.07, 0.04, 1), 0.9))


def build(bpy, rng, kind, size):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    {"objects": scene_objects, "interior": scene_interior, "landscape": scene_landscape}[kind](bpy, rng)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = SAMPLES
    scene.cycles.use_denoising = True
    scene.cycles.denoising_prefilter = "FAST"  # the accurate prefilter tripled the time of a render here
    scene.cycles.denoising_quality = "FAST"
    scene.cycles.max_bounces = 6
    scene.render.threads_mode = "FIXED"
    scene.render.threads = 2
    scene.view_settings.view_transform = "AgX" if rng.random() < 0.7 else "Standard"
    scene.view_settings.exposure = rng.uniform(-0.3, 0.5)
    scene.render.resolution_x, scene.render.resolution_y = size
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "JPEG"
    scene.render.image_settings.quality = JPEG_QUALITY


def render(out: Path, count: int, seed: int, start: int = 0, prefix: str = "render") -> list[tuple[str, str, int]]:
    import bpy

    out.mkdir(parents=True, exist_ok=True)
    done = []
    for i in range(start, start + count):
        scene_seed = seed * 100003 + i
        rng = random.Random(scene_seed)
        kind, size = KINDS[i % len(KINDS)], rng.choice(SIZES)
        t0 = time.perf_counter()
        build(bpy, rng, kind, size)
        t1 = time.perf_counter()
        name = f"{prefix}_{kind}_{i:03d}.jpg"
        bpy.context.scene.render.filepath = str(out / name)
        bpy.ops.render.render(write_still=True)
        done.append((name, kind, scene_seed))
        print(f"render_training_scenes: {name} {size[0]}x{size[1]} build {t1 - t0:.1f}s render {time.perf_counter() - t1:.1f}s", flush=True)
    return done


# Rendered by the seed-1 run, then deleted after looking at the contact sheet.
REMOVED_NOTE = ("Scenes 46 (an interior lit almost black) and 88 (an empty horizon) were rendered and then "
                "removed after looking at the contact sheet.")


def write_sources(out: Path, seed: int, prefix: str = "render") -> int:
    """Replace the "## Renders" section of out/SOURCES.md with one row per render file found in out."""
    from PIL import Image

    files = sorted(out.glob(f"{prefix}_*.jpg"))
    rows = ["## Renders", "",
            f"{len(files)} Cycles renders made by this project with `bpy` {_bpy_version()}: "
            "`nice -n 10 python tools/render_training_scenes.py --count 104 --seed "
            f"{seed} --out data/content` (CPU, {SAMPLES} samples, OpenImageDenoise, JPEG quality {JPEG_QUALITY}). "
            "Scene i is built from `random.Random(seed * 100003 + i)`. No third-party content: CC0 (public-domain "
            "dedication by the project). " + REMOVED_NOTE, "",
            "| file | generator | scene kind | scene seed | size | licence |", "|---|---|---|---|---|---|"]
    for f in files:
        i = int(f.stem.rsplit("_", 1)[1])
        kind = f.stem.split("_")[1]
        w, h = Image.open(f).size
        rows.append(f"| {f.name} | tools/render_training_scenes.py --seed {seed} (scene index {i}) | {kind} | "
                    f"{seed * 100003 + i} | {w}x{h} | CC0-1.0 (made by this project) |")
    path = out / "SOURCES.md"
    old = path.read_text() if path.exists() else ""
    head = old[:old.index("\n## Renders")] if "\n## Renders" in old else old
    path.write_text(head.rstrip("\n") + "\n\n" + "\n".join(rows) + "\n")
    return len(files)


def _bpy_version() -> str:
    try:
        import bpy
        return bpy.app.version_string
    except ImportError:
        return "(not importable here)"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=120)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--start", type=int, default=0, help="index of the first scene (to continue a run)")
    ap.add_argument("--out", type=Path, default=ROOT / "data" / "content")
    ap.add_argument("--prefix", default="render")
    ap.add_argument("--sources-only", action="store_true",
                    help="only rewrite the Renders section of OUT/SOURCES.md from the render files present")
    a = ap.parse_args(argv)
    if not a.sources_only:
        render(a.out, a.count, a.seed, a.start, a.prefix)
    print(f"render_training_scenes: {write_sources(a.out, a.seed, a.prefix)} renders listed in {a.out / 'SOURCES.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
