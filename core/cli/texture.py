"""``python -m core texture {train,generate}``: the texture GAN from the command line."""

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
    train.add_argument("--no-flips", action="store_true", help="do not augment with mirror images")
    train.add_argument("--config", default=None, metavar="JSON",
                       help="TextureGANConfig fields as a JSON object, e.g. '{\"g_channels\": [64, 32, 16]}'")
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
    gen.set_defaults(func=_generate)


def _train(args) -> int:
    from ..texture_gan import TextureGANConfig, train_texture_gan

    from ..common.checkpoints import check_architecture, check_writable_folder

    try:
        fields = json.loads(args.config) if args.config else {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"--config is not valid JSON ({exc})") from exc
    if not isinstance(fields, dict):
        raise ValueError("--config must be a JSON object")
    check_architecture("--config", "texture_gan", fields)
    if args.crop_size is not None:
        fields["crop_size"] = args.crop_size
    if args.batch_size is not None:
        fields["batch_size"] = args.batch_size
    if args.rotate:
        fields["augment_rot90"] = True
    if args.no_flips:
        fields["augment_flips"] = False
    try:
        config = TextureGANConfig.from_dict(fields)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"--config: {exc}") from exc
    check_writable_folder(args.out)  # fail now, not at the first checkpoint
    out = train_texture_gan(args.exemplar, args.out, args.steps, config=config, seed=args.seed,
                            device=getattr(args, "device", None), progress=ProgressBar("train"),
                            checkpoint_every=args.checkpoint_every, resume=not args.restart,
                            cancel=getattr(args, "cancel", None))
    print(f"saved {out}")
    return 0


def _generate(args) -> int:
    from ..common.images import save_image
    from ..texture_gan import TextureGenerator

    model = TextureGenerator.load(args.model, getattr(args, "device", None))
    image = model.generate(args.width, args.height, seed=args.seed, tileable=args.tileable,
                           variation=args.variation, tile_size=args.tile_size, cancel=getattr(args, "cancel", None))
    if model.last_message:
        print(model.last_message, file=sys.stderr)
    out = save_image(Path(args.out), image, bit_depth=args.bit_depth)
    print(f"saved {out} ({args.width}x{args.height}{', tileable' if args.tileable else ''})")
    return 0


def main(argv: list[str] | None = None) -> int:
    """This family alone (``python -m core.cli.texture ...``), same behaviour as ``python -m core texture``."""
    from . import main as core_main

    return core_main(["texture", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
