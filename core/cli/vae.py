"""``python -m core vae {train,vary,blend}``: the texture VAE from the command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ..common.images import load_image, load_rgb, save_image
from ..texture_vae.jobs import DEFAULT_REFINE_STEPS
from .progress_bar import ProgressBar


def register(subparsers) -> None:
    parser = subparsers.add_parser("vae", help="texture VAE: train, variations, blends")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a texture VAE on exemplar images")
    train.add_argument("--exemplar", nargs="+", required=True, metavar="IMG", help="exemplar images")
    train.add_argument("--out", required=True, metavar="MODEL.safetensors")
    train.add_argument("--steps", type=int, required=True)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--recipe", choices=("finetune", "plain"), default="finetune",
                       help="finetune (default, the panel's): the bundled materials GAN fine-tuned to the exemplars "
                            "(each a material) as the decoder, the bundled VAE's encoder onto it (three quarters of "
                            "the steps, then a quarter): sharp variations and blends; plain: a VAE learnt from the "
                            "exemplars alone (fast, blurred)")
    train.add_argument("--beta", type=float, default=None, help="KL weight (default from the recipe's config)")
    train.add_argument("--crop", type=int, default=None, help="training crop size in pixels")
    train.add_argument("--batch", type=int, default=None, help="crops per step")
    train.add_argument("--channels", type=int, default=None,
                       help="base channel count (plain recipe; the fine-tune keeps the bundled encoder's)")
    train.add_argument("--checkpoint-every", type=int, default=200)
    train.add_argument("--restart", "--no-resume", dest="no_resume", action="store_true",
                       help="ignore an existing training state and start over")
    train.set_defaults(func=_train)

    vary = commands.add_parser("vary", help="a seeded variation of an image")
    vary.add_argument("--model", required=True)
    vary.add_argument("--input", required=True, metavar="IMG")
    vary.add_argument("--strength", type=float, default=0.5,
                      help="0 = reconstruction; 0.25-1 typical; 2+ drifts toward other trained textures")
    vary.add_argument("--seed", type=int, default=0)
    vary.add_argument("--out", required=True, metavar="OUT.png")
    vary.add_argument("--width", type=int, default=None)
    vary.add_argument("--height", type=int, default=None)
    vary.add_argument("--refine-steps", type=int, default=DEFAULT_REFINE_STEPS,
                      help="optimise the encoded latents toward the input first (layout and look): more faithful "
                           "variations; each step runs the decoder and VGG19 forward and backward (default "
                           "%(default)s; 0: the encoder's one-pass reading, instant)")
    vary.set_defaults(func=_vary)

    blend = commands.add_parser("blend", help="blend two textures, globally (--t) or through a mask")
    blend.add_argument("--model", required=True)
    blend.add_argument("--a", required=True, metavar="IMG")
    blend.add_argument("--b", required=True, metavar="IMG")
    blend.add_argument("--mask", default=None, metavar="MASK.png",
                       help="grey image: black shows A, white shows B (resized to the output; --t is ignored)")
    blend.add_argument("--t", type=float, default=0.5, help="0 = A, 1 = B")
    blend.add_argument("--out", required=True, metavar="OUT.png")
    blend.add_argument("--width", type=int, default=None)
    blend.add_argument("--height", type=int, default=None)
    blend.add_argument("--refine-steps", type=int, default=DEFAULT_REFINE_STEPS,
                       help="optimise each input's encoded latents toward it first (see vary; default "
                            "%(default)s; 0: off)")
    blend.set_defaults(func=_blend)


def _train(args: argparse.Namespace) -> int:
    from ..common.checkpoints import check_config_values, check_writable_folder

    if args.recipe == "finetune":
        from ..texture_vae.from_image import train_variation_model  # checks its config before a step

        if args.channels is not None:
            raise SystemExit("vae train: --channels applies to --recipe plain; the fine-tune keeps the bundled "
                             "encoder's")
        train_fn = train_variation_model
        config = {k: v for k, v in (("beta", args.beta), ("crop_size", args.crop), ("batch_size", args.batch))
                  if v is not None}
    else:
        from ..texture_vae import TextureVAEConfig, train_texture_vae

        train_fn, config = train_texture_vae, TextureVAEConfig()
        for attr, value in (("beta", args.beta), ("crop_size", args.crop), ("batch_size", args.batch),
                            ("base_channels", args.channels)):
            if value is not None:
                setattr(config, attr, value)
        check_config_values("options", "texture_vae", config.to_dict())
    check_writable_folder(args.out)  # fail now, not at the first checkpoint
    path = train_fn(args.exemplar, args.out, args.steps, config=config, seed=args.seed,
                    device=getattr(args, "device", None), progress=ProgressBar("vae train"),
                    checkpoint_every=args.checkpoint_every, resume=not args.no_resume,
                    cancel=getattr(args, "cancel", None))
    print(path)
    return 0


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _vary(args: argparse.Namespace) -> int:
    from ..texture_vae import load_texture_vae

    model = load_texture_vae(args.model, getattr(args, "device", None))
    out = model.vary(load_rgb(args.input), args.strength, args.seed, args.width, args.height,
                     refine_steps=args.refine_steps, cancel=getattr(args, "cancel", None),
                     progress=ProgressBar("vae vary") if args.refine_steps else None, warn=_warn)
    print(save_image(args.out, out))
    return 0


def _blend(args: argparse.Namespace) -> int:
    from ..texture_vae import load_texture_vae

    model = load_texture_vae(args.model, getattr(args, "device", None))
    mask = None
    if args.mask is not None:
        # Painted grey levels are used as they look (PNG values), EXR masks as stored.
        mask = np.clip(load_image(args.mask).rgb.mean(axis=2), 0.0, 1.0)
    out = model.blend([load_rgb(args.a), load_rgb(args.b)], t=args.t, mask=mask,
                      width=args.width, height=args.height, refine_steps=args.refine_steps,
                      cancel=getattr(args, "cancel", None),
                      progress=ProgressBar("vae blend") if args.refine_steps else None, warn=_warn)
    print(save_image(Path(args.out), out))
    return 0
