"""``python -m core style apply|train``: stylize frames or animations, train fast style models."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..common.images import ImageError, load_image, save_image
from .progress_bar import ProgressBar


def register(families) -> None:
    parser = families.add_parser("style", help="neural style transfer for renders and animations")
    sub = parser.add_subparsers(dest="command", required=True)

    apply = sub.add_parser("apply", help="stylize a frame, or a folder of frames as an animation")
    apply.add_argument("--style", required=True,
                       help="a trained model (.safetensors: fast) or any style image (slow optimisation)")
    apply.add_argument("--input", required=True, help="an image file, or a folder of frames (an animation)")
    apply.add_argument("--out", required=True, help="output image file, or output folder for an animation")
    apply.add_argument("--style-weights", default=None,
                       help="multi-style model: one of its styles (starry_night) or a mix (starry_night=0.7,wave=0.3);"
                            " also accepted as --style FILE.safetensors#starry_night")
    apply.add_argument("--strength", type=float, default=1.0, help="0 = unchanged input, 1 = fully stylized")
    apply.add_argument("--tile", type=int, default=None, help="process in tiles of this many pixels")
    apply.add_argument("--steps", type=int, default=40,
                       help="optimisation: L-BFGS steps at the coarsest scale (style image only)")
    apply.add_argument("--refine-steps", type=int, default=None,
                       help="optimisation: steps at each finer scale (default: a third of --steps)")
    apply.add_argument("--max-side", type=int, default=1024,
                       help="optimisation working size (longer side; larger frames are resized back up)")
    apply.add_argument("--style-loss", choices=("gram", "sliced_wasserstein"), default="gram")
    apply.add_argument("--preserve-color", choices=("none", "luminance", "histogram"), default="none")
    apply.add_argument("--temporal-weight", type=float, default=0.7, help="animation: reuse of the previous frame")
    apply.add_argument("--flows", default=None,
                       help="animation: folder of per-frame flows (.npy HxWx2 in this package's convention, or "
                            "HxWx4 Blender Vector passes), named like the frames")
    apply.add_argument("--no-vectors", action="store_true",
                       help="animation: ignore the Vector pass of multilayer EXR renders and estimate motion")
    apply.add_argument("--vgg19", default=None, help="optional local VGG19 weights (.safetensors or .pth)")
    apply.set_defaults(func=run_apply)

    train = sub.add_parser("train", help="train a fast style model for one style image")
    train.add_argument("--style", required=True, help="style image")
    train.add_argument("--frames", default=None, help="folder of training frames (default: generated frames)")
    train.add_argument("--out", required=True, help="model file to write (.safetensors)")
    train.add_argument("--steps", type=int, default=1500)
    train.add_argument("--image-size", type=int, default=None)
    train.add_argument("--batch-size", type=int, default=None)
    train.add_argument("--style-weight", type=float, default=None)
    train.add_argument("--style-loss", choices=("gram", "sliced_wasserstein"), default=None)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--restart", action="store_true", help="ignore an existing training state and start over")
    train.add_argument("--vgg19", default=None, help="optional local VGG19 weights (.safetensors or .pth)")
    train.set_defaults(func=run_train)

    fast = sub.add_parser("adain", help="any painting in one pass (AdaIN; no per-style training)")
    fast.add_argument("--style", required=True, help="any painting or style image")
    fast.add_argument("--input", required=True, help="the image to stylize")
    fast.add_argument("--out", required=True, help="output image file")
    fast.add_argument("--alpha", type=float, default=1.0, help="style strength: 0 = unchanged input, 1 = full")
    fast.add_argument("--preserve-color", choices=("none", "luminance", "histogram"), default="none")
    fast.add_argument("--tile", type=int, default=None, help="process in tiles of this many pixels")
    fast.add_argument("--model", default=None, help="decoder (.safetensors; default: the bundled one)")
    fast.add_argument("--refine-steps", type=int, default=0,
                      help="quality knob: optimisation steps starting from the decoder's output (0: none)")
    fast.set_defaults(func=run_adain)

    fast_train = sub.add_parser("adain-train", help="train an AdaIN decoder (content frames + many paintings)")
    fast_train.add_argument("--frames", required=True, help="folder of content frames")
    fast_train.add_argument("--styles", required=True, nargs="+", help="style images and/or folders of them")
    fast_train.add_argument("--exclude", nargs="*", default=[], help="style file names to leave out (held out)")
    fast_train.add_argument("--out", required=True, help="decoder file to write (.safetensors)")
    fast_train.add_argument("--steps", type=int, default=2000)
    fast_train.add_argument("--image-size", type=int, default=None)
    fast_train.add_argument("--batch-size", type=int, default=None)
    fast_train.add_argument("--style-weight", type=float, default=None)
    fast_train.add_argument("--learning-rate", type=float, default=None)
    fast_train.add_argument("--warmup-steps", type=int, default=None,
                            help="first steps: pixel reconstruction only (a cheap start)")
    fast_train.add_argument("--seed", type=int, default=0)
    fast_train.add_argument("--checkpoint-every", type=int, default=100)
    fast_train.add_argument("--restart", action="store_true", help="ignore an existing training state")
    fast_train.set_defaults(func=run_adain_train)


def _frame_files(folder: Path) -> list[Path]:
    from ..style.data import list_image_files
    return list_image_files(folder)


def run_apply(args: argparse.Namespace) -> int:
    from ..style import load_style_model, stylize_optimize, stylize_sequence
    from ..style.blender_passes import frames_with_flows
    from ..style.multistyle import parse_style_weights, split_style_ref

    style_path, input_path, out = Path(args.style), Path(args.input), Path(args.out)
    is_model = split_style_ref(style_path)[0].suffix.lower() == ".safetensors"
    weights = parse_style_weights(args.style_weights) if getattr(args, "style_weights", None) else None
    if weights is not None and not is_model:
        raise ValueError("--style-weights needs a multi-style model as --style")
    preserve = None if args.preserve_color == "none" else args.preserve_color
    optimisation = dict(steps=args.steps, refine_steps=args.refine_steps, preserve_color=preserve or False,
                        style_loss=args.style_loss, max_side=args.max_side, device=args.device,
                        vgg19_weights=args.vgg19, cancel=getattr(args, "cancel", None))
    if input_path.is_dir():
        if is_model:
            model = load_style_model(style_path, args.device, weights)
        else:  # any painting: optimisation per frame, warm-started from the previous frame warped by motion
            from ..style.optimize import OptimizationStylizer
            model = OptimizationStylizer(load_image(style_path), **optimisation)
        files = _frame_files(input_path)
        flows = None
        if args.flows:
            import numpy as np
            flow_dir = Path(args.flows)
            flows = [np.load(flow_dir / (f.stem + ".npy"), allow_pickle=False) if (flow_dir / (f.stem + ".npy")).exists()
                     else None for f in files]
        out.mkdir(parents=True, exist_ok=True)
        bar = ProgressBar("style")
        # multilayer EXR renders bring their Vector pass; --flows files take precedence
        frames, vector_flows = frames_with_flows(files, use_vectors=not getattr(args, "no_vectors", False),
                                                 warn=lambda message: print(f"warning: {message}"))
        if flows is None:
            flows = vector_flows
        else:
            frames = (frame for frame, _ in zip(frames, vector_flows))  # keep the pass reader in step
        results = stylize_sequence(model, frames, flows, strength=args.strength,
                                   temporal_weight=args.temporal_weight, progress=bar, tile_size=args.tile,
                                   cancel=getattr(args, "cancel", None))
        for f, result in zip(files, results):
            target = out / (f.stem + (f.suffix if f.suffix.lower() in (".png", ".exr", ".npy", ".jpg") else ".png"))
            save_image(target, result, bit_depth=16 if result.bit_depth == 16 else 8)
        print(f"wrote {len(files)} frames to {out}")
        return 0
    if not input_path.exists():
        raise ImageError(f"input not found: {input_path}")
    image = load_image(input_path)
    if is_model:
        result = load_style_model(style_path, args.device, weights).stylize(image, args.strength, args.tile,
                                                                            cancel=getattr(args, "cancel", None))
    else:
        result = stylize_optimize(image, load_image(style_path), strength=args.strength,
                                  progress=ProgressBar("style"), **optimisation)
    save_image(out, result, bit_depth=16 if result.bit_depth == 16 else 8)
    print(f"wrote {out}")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from ..style import StyleTransferConfig, train_style_model

    cfg = StyleTransferConfig()
    for name in ("image_size", "batch_size", "style_weight", "style_loss"):
        value = getattr(args, name)
        if value is not None:
            setattr(cfg, name, value)
    from ..common.checkpoints import check_writable_folder
    check_writable_folder(args.out)  # fail now, not at the first checkpoint
    path = train_style_model(args.style, args.frames, args.out, args.steps, config=cfg, seed=args.seed,
                             device=args.device, progress=ProgressBar("train"), resume=not args.restart,
                             vgg19_weights=args.vgg19, cancel=getattr(args, "cancel", None))
    print(f"wrote {path}")
    return 0


def run_adain(args: argparse.Namespace) -> int:
    from ..style.adain import bundled_decoder_path, load_adain_model

    input_path = Path(args.input)
    image, style = load_image(input_path), load_image(args.style)
    model = load_adain_model(args.model or bundled_decoder_path(), args.device)
    result = model.stylize(image, style, alpha=args.alpha,
                           preserve_color=False if args.preserve_color == "none" else args.preserve_color,
                           tile_size=args.tile, progress=ProgressBar("adain"), cancel=getattr(args, "cancel", None),
                           refine_steps=args.refine_steps)
    save_image(Path(args.out), result, bit_depth=16 if result.bit_depth == 16 else 8)
    print(f"wrote {args.out}")
    return 0


def run_adain_train(args: argparse.Namespace) -> int:
    from ..style.adain import AdaINTrainConfig, train_adain_decoder

    cfg = AdaINTrainConfig()
    for name in ("image_size", "batch_size", "style_weight", "learning_rate", "warmup_steps"):
        value = getattr(args, name)
        if value is not None:
            setattr(cfg, name, value)
    styles: list[Path] = []
    for item in map(Path, args.styles):
        styles += _frame_files(item) if item.is_dir() else [item]
    styles = [p for p in styles if p.name not in set(args.exclude)]
    path = train_adain_decoder(args.frames, styles, args.out, args.steps, config=cfg, seed=args.seed,
                               device=args.device, progress=ProgressBar("adain-train"), resume=not args.restart,
                               checkpoint_every=args.checkpoint_every,
                               cancel=getattr(args, "cancel", None))
    print(f"wrote {path}")
    return 0
