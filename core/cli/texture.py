"""``python -m core texture {train,generate,materials,synthesize,pbr}``: texture GAN, instant synthesis and PBR maps."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .progress_bar import ProgressBar


def register(subparsers) -> None:
    parser = subparsers.add_parser("texture", help="tileable texture GAN: train on exemplars, generate textures")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a texture model on one or more exemplar images")
    train.add_argument("--exemplar", nargs="+", required=True, metavar="IMG", help="exemplar image(s)")
    train.add_argument("--out", required=True, metavar="MODEL.safetensors", help="model file to write")
    train.add_argument("--steps", type=int, default=1000, help="total training steps (default 1000)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--resume", action="store_true",
                       help="continue from MODEL.train.safetensors if present (the default; kept for scripts)")
    train.add_argument("--restart", action="store_true", help="ignore an existing training state and start over")
    train.add_argument("--checkpoint-every", type=int, default=200)
    train.add_argument("--crop-size", type=int, default=None, help="crop side the discriminator sees (multiple of 8)")
    train.add_argument("--batch-size", type=int, default=None)
    train.add_argument("--rotate", action="store_true", help="augment with 90-degree rotations (isotropic textures)")
    train.add_argument("--no-flips", action="store_true",
                       help="train on crops as they are, never mirrored (a surface lit from one side)")
    train.add_argument("--config", default=None, metavar="JSON",
                       help="config fields as a JSON object, e.g. '{\"g_channels\": [64, 32, 16]}' "
                            "(ConditionalGANConfig for --recipe distilled, TextureGANConfig for spatial)")
    train.add_argument("--recipe", choices=("distilled", "finetune", "spatial"), default="distilled",
                       help="distilled (default): the materials GAN's recipe, distilled from instant synthesis, "
                            "each exemplar one material of the model; finetune (the panel's Train From Image): "
                            "the same recipe starting from a trained materials GAN (--start-from), good in a few "
                            "hundred steps (from 300 steps on, 100 trial steps from each of its three materials "
                            "nearest each exemplar come first, the best continued); spatial: the original one-texture GAN on all exemplars pooled "
                            "(quicker steps, weaker textures)")
    train.add_argument("--start-from", default=None, metavar="MODEL.safetensors",
                       help="the materials GAN --recipe finetune starts from (default: the bundled one)")
    train.set_defaults(func=_train)

    gen = commands.add_parser("generate", help="generate a texture with a trained model")
    gen.add_argument("--model", required=True, metavar="MODEL.safetensors")
    gen.add_argument("--width", type=int, default=1024)
    gen.add_argument("--height", type=int, default=1024)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--out", required=True, metavar="OUT.png", help=".png, .jpg, .exr or .npy")
    gen.add_argument("--tileable", action="store_true", help="seamless on both axes")
    gen.add_argument("--variation", type=float, default=0.0, help="0..1: move the look away from the seed's own")
    gen.add_argument("--tile-size", type=int, default=None, help="generate in tiles of this many pixels")
    gen.add_argument("--bit-depth", type=int, choices=(8, 16), default=8, help="PNG bit depth")
    gen.add_argument("--material", default=None, metavar="NAME",
                     help="material of a conditional (materials) model; see `texture materials`")
    gen.add_argument("--mix", default=None, metavar="NAME:W,NAME:W",
                     help="interpolate materials of a conditional model, e.g. photo_brick:0.7,render_bark:0.3")
    gen.set_defaults(func=_generate)

    mats = commands.add_parser("materials", help="list the materials of a conditional texture model")
    mats.add_argument("--model", required=True, metavar="MODEL.safetensors")
    mats.add_argument("--json", action="store_true", help="print a JSON list of {name, label}")
    mats.set_defaults(func=_materials)

    synth = commands.add_parser("synthesize", help="instant texture from exemplar image(s): no training, no model")
    synth.add_argument("--exemplar", nargs="+", required=True, metavar="IMG", help="exemplar image(s); patches are pooled")
    synth.add_argument("--width", type=int, default=512)
    synth.add_argument("--height", type=int, default=512)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--out", required=True, metavar="OUT.png", help=".png, .jpg, .exr or .npy")
    synth.add_argument("--tileable", action="store_true", help="seamless on both axes")
    synth.add_argument("--layout", choices=("auto", "blocks", "quilted", "sliced"), default="quilted",
                       help="coarse layout: quilted (default; exemplar blocks that fit their neighbours, joined "
                            "along the cheapest seam, courses kept straight), blocks (lattice-snapped exemplar "
                            "blocks), sliced-Wasserstein steps, or auto: blocks when the exemplar repeats on a "
                            "lattice, else sliced")
    synth.add_argument("--steps", type=int, default=None,
                       help="sliced layout only: matching steps per scale (default 16; fewer is faster)")
    synth.add_argument("--scales", type=int, default=None,
                       help="sliced layout only: pyramid levels (default: down to ~32 px)")
    synth.add_argument("--bit-depth", type=int, choices=(8, 16), default=8, help="PNG bit depth")
    synth.set_defaults(func=_synthesize)

    batch = commands.add_parser("batch", help="many materials at many sizes: here, or over a Ray cluster (--ray)")
    batch.add_argument("--models", nargs="*", default=[], metavar="MODEL.safetensors",
                       help="trained texture models to generate from")
    batch.add_argument("--exemplars", nargs="*", default=[], metavar="IMG",
                       help="exemplar images to synthesize from (one material each)")
    batch.add_argument("--sizes", nargs="+", type=int, default=[512], help="square sizes in pixels (default 512)")
    batch.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds (default 0)")
    batch.add_argument("--out-dir", required=True, metavar="DIR", help="writes <material>_<W>x<H>_s<seed>.png")
    batch.add_argument("--not-tileable", action="store_true", help="textures need not wrap around")
    batch.add_argument("--ray", default=None, metavar="auto|ADDRESS",
                       help="distribute over a Ray cluster ('auto': a running one, else one started here); "
                            "needs: pip install -r requirements-farm.txt")
    batch.add_argument("--workers", type=int, default=None, help="with --ray: how many workers")
    batch.set_defaults(func=_batch)

    pbr = commands.add_parser("pbr", help="height, normal (OpenGL), roughness and AO maps from an albedo")
    pbr.add_argument("--input", required=True, metavar="ALBEDO", help="albedo (colour) image")
    pbr.add_argument("--out-dir", required=True, metavar="DIR",
                     help="writes albedo.png, height.png and normal.png (16-bit), roughness.png, ao.png")
    pbr.add_argument("--height-detail", type=float, default=None, help="0..1: broad forms (0) to fine detail (1); 0.5")
    pbr.add_argument("--height-radius", type=float, default=None, help="px, 2..1024: high-pass radius (auto)")
    pbr.add_argument("--invert-height", action="store_true", help="dark is high")
    pbr.add_argument("--height-scale", type=float, default=None, help="px, 0..256: relief depth of the height range; 8")
    pbr.add_argument("--normal-strength", type=float, default=None, help="0..20: normal tilt multiplier; 1")
    pbr.add_argument("--roughness-base", type=float, default=None, help="0..1: mean roughness; 0.7")
    pbr.add_argument("--roughness-contrast", type=float, default=None, help="-1..1: busy areas rougher; 0.5")
    pbr.add_argument("--roughness-brightness", type=float, default=None, help="-1..1: dark areas rougher; 0.5")
    pbr.add_argument("--ao-strength", type=float, default=None, help="0..4: cavity darkness; 1")
    pbr.set_defaults(func=_pbr)


def _train(args) -> int:
    from ..texture_gan import TextureGANConfig, train_texture_gan

    from ..common.checkpoints import check_config_values, check_writable_folder

    try:
        fields = json.loads(args.config) if args.config else {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"--config is not valid JSON ({exc})") from exc
    if not isinstance(fields, dict):
        raise ValueError("--config must be a JSON object")
    check_config_values("--config", "texture_gan", fields)
    if args.crop_size is not None:
        fields["crop_size"] = args.crop_size
    if args.batch_size is not None:
        fields["batch_size"] = args.batch_size
    distilled = args.recipe in ("distilled", "finetune")
    start_from = None
    if args.recipe == "finetune":
        from ..texture_gan.distill import bundled_materials_path
        start_from = Path(args.start_from) if args.start_from else bundled_materials_path()
        if not start_from.is_file():
            raise ValueError(f"--start-from: {start_from} does not exist")
    elif args.start_from:
        raise ValueError("--start-from applies to --recipe finetune only")
    if distilled and args.rotate:
        # The distillation's targets are teacher tiles and exemplar crops, mirrored at random (unless --no-flips),
        # never turned.
        raise ValueError("--rotate applies to --recipe spatial only")
    if args.rotate:
        fields["augment_rot90"] = True
    if args.no_flips:
        fields["augment_flips"] = False
    try:
        if distilled:
            from ..texture_gan.distill import distilled_config, train_one_material
            config, trainer = distilled_config(fields or None, len(args.exemplar)), train_one_material
        else:
            config, trainer = TextureGANConfig.from_dict(fields), train_texture_gan
    except (TypeError, ValueError) as exc:
        raise ValueError(f"--config: {exc}") from exc
    check_writable_folder(args.out)  # fail now, not at the first checkpoint
    out = trainer(args.exemplar, args.out, args.steps, config=config, seed=args.seed,
                  device=getattr(args, "device", None), progress=ProgressBar("train"),
                  checkpoint_every=args.checkpoint_every, resume=not args.restart,
                  cancel=getattr(args, "cancel", None), **({"start_from": start_from} if start_from else {}))
    print(f"saved {out}")
    return 0


def _generate(args) -> int:
    from ..common.images import save_image
    from ..texture_gan import TextureGenerator

    model = TextureGenerator.load(args.model, getattr(args, "device", None))
    kwargs = {}
    if args.material is not None or args.mix is not None:
        from ..texture_gan.conditional import parse_mix
        if not hasattr(model, "materials"):
            raise ValueError(f"{Path(args.model).name} has no materials (it is a one-texture model); "
                             "drop --material/--mix")
        mix = parse_mix(args.mix) if args.mix else {}
        if args.material is not None and not mix:
            mix = {args.material: 1.0}
        elif args.material is not None:
            raise ValueError("give --material or --mix, not both")
        kwargs["material"] = mix
    image = model.generate(args.width, args.height, seed=args.seed, tileable=args.tileable,
                           variation=args.variation, tile_size=args.tile_size, cancel=getattr(args, "cancel", None),
                           **kwargs)
    if model.last_message:
        print(model.last_message, file=sys.stderr)
    out = save_image(Path(args.out), image, bit_depth=args.bit_depth)
    print(f"saved {out} ({args.width}x{args.height}{', tileable' if args.tileable else ''})")
    return 0


def _materials(args) -> int:
    from ..common.checkpoints import read_checkpoint_config

    config = read_checkpoint_config(args.model)
    names = config.get("materials")
    if not isinstance(names, list):
        raise ValueError(f"{Path(args.model).name} has no materials (it is a one-texture model)")
    labels = config.get("labels") or {}
    if args.json:
        print(json.dumps([{"name": n, "label": labels.get(n, n)} for n in names]))
    else:
        for n in names:
            print(f"{n}\t{labels.get(n, n)}")
    return 0


def _synthesize(args) -> int:
    from ..common.images import save_image
    from ..texture_synth import synthesize

    result = synthesize(args.exemplar, args.width, args.height, seed=args.seed, tileable=args.tileable,
                        steps=args.steps, scales=args.scales, layout=args.layout, device=getattr(args, "device", None),
                        progress=ProgressBar("synthesize"), cancel=getattr(args, "cancel", None),
                        warn=lambda message: print(f"warning: {message}", file=sys.stderr))
    out = save_image(Path(args.out), result.image, bit_depth=args.bit_depth)
    print(f"saved {out} ({args.width}x{args.height}{', tileable' if args.tileable else ''})")
    return 0


def _batch(args) -> int:
    from ..farm.texture_batch import run_texture_batch, texture_batch

    device = getattr(args, "device", None)
    items = texture_batch(args.out_dir, args.models, args.exemplars, args.sizes, args.seeds,
                          tileable=not args.not_tileable, device=None if device in (None, "auto") else device)
    if args.ray:
        import importlib.util
        from ..farm import RAY_INSTALL_HINT
        if importlib.util.find_spec("ray") is None:
            raise ValueError(RAY_INSTALL_HINT)
    written = run_texture_batch(items, ray_address=args.ray, workers=args.workers, progress=ProgressBar("batch"),
                                cancel=getattr(args, "cancel", None), log=lambda message: print(f"farm: {message}"))
    print(f"saved {len(written)} textures in {args.out_dir}")
    return 0


def _pbr(args) -> int:
    from ..common.images import load_image, save_image
    from ..texture_pbr import pbr_maps, save_pbr_maps

    albedo = load_image(args.input)
    knobs = {name: getattr(args, name) for name in ("height_detail", "height_radius", "height_scale",
                                                   "normal_strength", "roughness_base", "roughness_contrast",
                                                   "roughness_brightness", "ao_strength")}
    maps = pbr_maps(albedo, invert_height=args.invert_height, **knobs)
    out_dir = Path(args.out_dir)
    written = save_pbr_maps(maps, out_dir)
    written["albedo"] = save_image(out_dir / "albedo.png", albedo, bit_depth=16 if albedo.bit_depth == 16 else 8)
    print(f"saved {', '.join(p.name for p in written.values())} in {out_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """This family alone (``python -m core.cli.texture ...``), same behaviour as ``python -m core texture``."""
    from . import main as core_main

    return core_main(["texture", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
