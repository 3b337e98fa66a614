"""*Train From Image* on a baked Blender Brick Texture, with and without the exemplar's own lattice (~6 min on a CPU).

    python tools/train_from_image_sheet.py [--steps 100] [--seed 0] [--out docs/images/train_from_image_lattice.jpg]

The exemplar is rendered here with bpy (Blender's Brick Texture node through an emission shader, orthographic
camera from straight above; made by this project, CC0): what an artist gets by baking a node texture. The bundled
materials GAN is fine-tuned to it as the panel's default recipe does (``distill.train_one_material(start_from=)``),
once as it ships (the exemplar repeats closely, so it gets its lattice inputs) and once with
``exemplar_lattice_fields`` switched off (the recipe before the twenty-sixth session). Prints the VGG19 SW ratio to
the exemplar's own crops (six seeds) and the lattice regularity (``structure.lattice_regularity``, four seeds), and
writes a strip: exemplar | without the lattice (two seeds) | with it (two seeds), at native scale.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIDE = 256


def render_brick_texture(path: Path, side: int = SIDE) -> None:
    """The node through an emission shader in ``render_exemplars``' scene (the plane seen from straight above):
    its colours as they are, the scene's light plays no part."""
    import bpy

    from tools.render_exemplars import build_scene
    plane = build_scene(side, samples=4)
    material = bpy.data.materials.new("bricks")
    material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    nodes.clear()
    brick, coords = nodes.new("ShaderNodeTexBrick"), nodes.new("ShaderNodeTexCoord")
    emission, output = nodes.new("ShaderNodeEmission"), nodes.new("ShaderNodeOutputMaterial")
    brick.inputs["Scale"].default_value = 4.0
    brick.inputs["Color1"].default_value = (0.45, 0.12, 0.06, 1.0)
    brick.inputs["Color2"].default_value = (0.30, 0.08, 0.05, 1.0)
    brick.inputs["Mortar"].default_value = (0.60, 0.58, 0.55, 1.0)
    links.new(coords.outputs["UV"], brick.inputs["Vector"])
    links.new(brick.outputs["Color"], emission.inputs["Color"])
    links.new(emission.outputs["Emission"], output.inputs["Surface"])
    plane.data.materials.append(material)
    bpy.context.scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "train_from_image_lattice.jpg")
    args = parser.parse_args()

    import torch
    from PIL import Image

    from core.common.images import load_rgb
    from core.common.quality import vgg_texture_distance
    from core.texture_gan import distill, load_texture_gan
    from core.texture_synth.structure import find_lattice, lattice_regularity

    work = Path(tempfile.mkdtemp(prefix="train_from_image_"))
    render_brick_texture(work / "brick_texture.png")
    exemplar = load_rgb(work / "brick_texture.png")
    lattice = find_lattice(exemplar)
    crop = SIDE // 2
    rng = np.random.default_rng(0)
    own = []
    for s in range(6):
        y, x = rng.integers(0, SIDE - crop + 1, 2)
        own.append(vgg_texture_distance(exemplar[y:y + crop, x:x + crop], exemplar))
    fields = distill.exemplar_lattice_fields
    strips = [exemplar]
    for arm, lattice_fields in (("without its lattice", lambda *a, **k: {}), ("with its lattice", fields)):
        distill.exemplar_lattice_fields = lattice_fields
        try:
            path = work / f"{arm.replace(' ', '_')}.safetensors"
            distill.train_one_material(exemplar, path, args.steps, seed=args.seed, device=torch.device("cpu"),
                                       resume=False, start_from=distill.bundled_materials_path())
        finally:
            distill.exemplar_lattice_fields = fields
        model = load_texture_gan(path, device="cpu")
        ratio = np.mean([vgg_texture_distance(model.generate(crop, crop, seed=s), exemplar) for s in range(6)])
        regularity = np.mean([lattice_regularity(model.generate(SIDE, SIDE, seed=s), lattice) for s in range(4)])
        print(f"{args.steps} steps {arm}: VGG19 SW ratio {ratio / np.mean(own):.2f}, lattice regularity "
              f"{regularity:.2f} (the exemplar's {lattice_regularity(exemplar, lattice):.2f})", flush=True)
        strips += [model.generate(SIDE, SIDE, seed=s) for s in range(2)]
    sheet = (np.clip(np.concatenate(strips, axis=1), 0, 1) * 255).astype(np.uint8)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).save(args.out, quality=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
