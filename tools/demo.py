"""The demo: the main job, headless, in real Blender, on the bundled default models.

Run by ``python build.py demo`` inside the venv (``bpy`` module). It builds a
small scene, makes tileable textures from real photographs (instant synthesis,
with PBR maps) and with the bundled materials GAN (a material by name and a
mix of two), makes materials for several objects, renders with Cycles, stylizes the render with every bundled style,
with AdaIN (any painting in one pass) and by optimisation, makes a VAE blend
and variation, and writes every result plus a
labelled contact sheet to ``demo_output/``. Everything goes through the
add-on's operators (``bpy.ops.neural.*``), exactly as an artist's clicks would.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bpy  # noqa: E402

import blender_addon  # noqa: E402
from core.common.checkpoints import read_checkpoint_config  # noqa: E402
from core.common.images import linear_to_srgb, save_image  # noqa: E402
from tools.contact_sheet import contact_sheet  # noqa: E402

MODELS = ROOT / "models"


def _manifest() -> dict[str, dict]:
    path = MODELS / "manifest.json"
    if not path.exists():
        raise SystemExit("demo: models/manifest.json is missing; run 'python build.py models' first")
    return {m["name"]: m for m in json.loads(path.read_text())["models"]}


def _model(entries: dict, kind: str, name: str | None = None) -> tuple[str, str]:
    for entry in entries.values():
        if entry["kind"] == kind and (name is None or entry["name"] == name):
            return str(MODELS / entry["file"]), entry["label"]
    raise SystemExit(f"demo: no bundled {kind} model {name or ''}")


def _bundled_styles(entries: dict) -> list[tuple[str, str, str]]:
    """(name, model path, label) of every bundled fast style: single-style files, and each style of a
    multi-style network as ``file.safetensors#style`` (how the panel names it)."""
    out = []
    for entry in entries.values():
        if entry["kind"] == "style_transfer":
            out.append((entry["name"], str(MODELS / entry["file"]), entry["label"]))
        elif entry["kind"] == "style_multi":
            from core.common.checkpoints import read_checkpoint_config
            for style in read_checkpoint_config(MODELS / entry["file"]).get("styles", []):
                out.append((style["name"], f"{MODELS / entry['file']}#{style['name']}",
                            style.get("label") or style["name"]))
    return out


def _new_images(before: set[str]) -> list[bpy.types.Image]:
    return [img for img in bpy.data.images if img.name not in before]


PBR_SUFFIXES = (" Height", " Normal", " Roughness", " Ao")


def _run(op, **kwargs) -> bpy.types.Image:
    """Run an add-on operator and return the image it created (fails loudly)."""
    before = {img.name for img in bpy.data.images}
    result = op(**kwargs)
    if result != {"FINISHED"}:
        raise SystemExit(f"demo: {op.idname()} returned {result}")
    if kwargs.get("name") and kwargs["name"] in bpy.data.images:  # named results: PBR maps of earlier ones may land meanwhile
        return bpy.data.images[kwargs["name"]]
    created = [img for img in _new_images(before) if not img.name.endswith(PBR_SUFFIXES)]
    if not created:
        raise SystemExit(f"demo: {op.idname()} created no image")
    return created[-1]


def _save(image: bpy.types.Image, path: Path) -> Path:
    from blender_addon.image_bridge import image_pixels, is_linear

    pixels = image_pixels(image)[..., :3]
    if is_linear(image):
        pixels = linear_to_srgb(pixels)
    return save_image(path, np.clip(pixels, 0, 1))


def build_scene() -> dict[str, bpy.types.Object]:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    objects = {}
    bpy.ops.mesh.primitive_plane_add(size=8, location=(0, 0, 0))
    objects["floor"] = bpy.context.object
    bpy.ops.mesh.primitive_cube_add(size=1.6, location=(-1.8, 0.4, 0.8))
    objects["cube"] = bpy.context.object
    bpy.ops.mesh.primitive_uv_sphere_add(radius=0.9, location=(0.3, -0.6, 0.9), segments=48, ring_count=24)
    objects["sphere"] = bpy.context.object
    bpy.ops.object.shade_smooth()
    bpy.ops.mesh.primitive_cylinder_add(radius=0.6, depth=2.2, location=(2.1, 0.9, 1.1), vertices=48)
    objects["pillar"] = bpy.context.object
    for obj in objects.values():  # UVs scaled so textures repeat a few times: tiling is visible
        for loop in obj.data.uv_layers.active.data:
            loop.uv = loop.uv * (3.0 if obj.name.startswith("Plane") else 1.5)
    bpy.ops.object.camera_add(location=(0.0, -7.5, 4.2), rotation=(1.12, 0.0, 0.0))
    scene.camera = bpy.context.object
    bpy.ops.object.light_add(type="SUN", location=(3, -3, 6), rotation=(0.7, 0.2, 0.6))
    bpy.context.object.data.energy = 3.5
    world = bpy.data.worlds.new("Demo World")
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.55, 0.65, 0.85, 1.0)
    world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.8
    scene.world = world
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 24
    scene.cycles.use_denoising = False
    scene.render.resolution_x, scene.render.resolution_y = 480, 320
    scene.render.resolution_percentage = 100
    return objects


def main(out_dir: Path) -> int:
    start = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = _manifest()
    blender_addon.register()
    try:
        objects = build_scene()
        sheet: list[tuple[str, Path]] = []
        textures: dict[str, str] = {}  # image names
        # Instant synthesis from real photographs (no training), with PBR maps wired into the material.
        bpy.context.scene.neural_texture.pbr_maps = True
        for photo, obj_name in (("photo_brick", "cube"), ("photo_gravel", "floor")):
            exemplar = ROOT / "models" / "exemplars" / f"{photo}.png"
            if not exemplar.is_file():
                continue
            bpy.ops.object.select_all(action="DESELECT")
            objects[obj_name].select_set(True)
            bpy.context.view_layer.objects.active = objects[obj_name]
            image = _run(bpy.ops.neural.generate_from_image, filepath=str(exemplar), width=384, height=384,
                         seed=7, tileable=True, make_material=True, name=f"{photo} texture")
            textures[photo] = image.name  # names: Image references go stale as images are added
            sheet.append((f"From photo: {photo[6:]}", _save(image, out_dir / f"texture_{photo}.png")))
            print(f"demo: synthesized {photo} -> {obj_name} ({time.perf_counter() - start:.0f}s)", flush=True)
        # The bundled materials GAN: one model, a material picked by name (and a mix of two, as the panel's slider).
        gan_path, _ = _model(entries, "texture_gan", "materials")
        labels = read_checkpoint_config(gan_path).get("labels") or {}
        assignments = [("photo_brick", "cube"), ("photo_gravel", "floor"), ("render_cobblestones", "pillar"),
                       ("render_rusty_metal", "sphere"), ("oa_stone_bricks", None)]
        for material, obj_name in assignments:
            if material in textures:
                continue  # textured from the photo above
            if obj_name is not None:
                bpy.ops.object.select_all(action="DESELECT")
                objects[obj_name].select_set(True)
                bpy.context.view_layer.objects.active = objects[obj_name]
            image = _run(bpy.ops.neural.generate_texture, model=gan_path, material=material, width=384, height=384,
                         seed=7, tileable=True, make_material=obj_name is not None, name=f"{material} texture")
            textures[material] = image.name
            if obj_name is not None:
                assert objects[obj_name].active_material is not None, f"no material on {obj_name}"
            label = labels.get(material, material)
            sheet.append((f"GAN: {label}", _save(image, out_dir / f"texture_gan_{material}.png")))
            print(f"demo: GAN {label} -> {obj_name or 'sheet'} ({time.perf_counter() - start:.0f}s)", flush=True)
        image = _run(bpy.ops.neural.generate_texture, model=gan_path, mix="render_cobblestones:0.5,oa_stone_bricks:0.5",
                     width=384, height=384, seed=7, tileable=True, make_material=False, name="GAN mix texture")
        sheet.append(("GAN: Cobblestones + Stone Bricks, 50/50", _save(image, out_dir / "texture_gan_mix.png")))

        bpy.ops.render.render(write_still=False)
        render_path = out_dir / "render.png"
        bpy.data.images["Render Result"].save_render(filepath=str(render_path))
        sheet.append(("Cycles render", render_path))
        print(f"demo: rendered ({time.perf_counter() - start:.0f}s)", flush=True)

        for style_name, path, label in _bundled_styles(entries):  # every bundled style
            image = _run(bpy.ops.neural.stylize_image, source="RENDER", method="MODEL", model=path, strength=1.0)
            sheet.append((f"Style: {label}", _save(image, out_dir / f"render_{style_name}.png")))
            print(f"demo: stylized with {label} ({time.perf_counter() - start:.0f}s)", flush=True)

        styles = ROOT / "data" / "paintings"
        from core.style.adain import default_decoder_path
        if (styles / "composition_vii.jpg").is_file() and default_decoder_path().is_file():
            # any painting in one pass (held out of the AdaIN decoder's training)
            style_image = bpy.data.images.load(str(styles / "composition_vii.jpg"))
            image = _run(bpy.ops.neural.stylize_image, source="RENDER", method="ADAIN",
                         style_image=style_image.name, strength=1.0)
            sheet.append(("Any painting, fast: Kandinsky", _save(image, out_dir / "render_adain_kandinsky.png")))
            print(f"demo: stylized with AdaIN ({time.perf_counter() - start:.0f}s)", flush=True)
        # any painting, best quality: optimisation, coarse to fine (the painting ships with the repository, so
        # this step always runs; a missing file fails the demo instead of dropping the step)
        style_image = bpy.data.images.load(str(styles / "starry_night.jpg"))
        image = _run(bpy.ops.neural.stylize_image, source="RENDER", method="PAINTING",
                     style_image=style_image.name, steps=30, max_side=480, strength=1.0)
        sheet.append(("Any painting, best: van Gogh", _save(image, out_dir / "render_optimised.png")))
        print(f"demo: stylized by optimisation ({time.perf_counter() - start:.0f}s)", flush=True)

        vae_path, vae_label = _model(entries, "texture_vae")
        from blender_addon.image_bridge import image_from_array

        ramp = np.tile(np.linspace(0, 1, 384, dtype=np.float32)[None, :, None], (384, 1, 1))
        mask = image_from_array(np.clip((ramp - 0.25) * 2, 0, 1), "demo blend mask", linear=False)
        blend = _run(bpy.ops.neural.vae_blend, image=textures["render_cobblestones"],
                     image_b=textures["render_rusty_metal"], mask=mask.name, model=vae_path)
        sheet.append(("VAE blend: cobblestones -> rusty metal", _save(blend, out_dir / "vae_blend.png")))
        variation = _run(bpy.ops.neural.vae_variations, image=textures["render_cobblestones"], model=vae_path,
                         strength=0.5, count=1, seed=3)
        sheet.append(("VAE variation: cobblestones", _save(variation, out_dir / "vae_variation_cobblestones.png")))

        bpy.ops.wm.save_as_mainfile(filepath=str(out_dir / "demo_scene.blend"))
        contact = contact_sheet(sheet, out_dir / "contact_sheet.png", cell=256, columns=5)
        print(f"demo: wrote {len(sheet)} results and {contact.relative_to(ROOT) if contact.is_relative_to(ROOT) else contact} "
              f"in {time.perf_counter() - start:.0f}s", flush=True)
    finally:
        blender_addon.unregister()
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "demo_output"))
