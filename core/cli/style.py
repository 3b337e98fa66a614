"""``python -m core style apply|train``: stylize frames or animations, train fast style models."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..common.images import ImageError, load_image, save_image
from ..style.chunks import DEFAULT_CHUNK_SIZE, DEFAULT_WARMUP
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
    farm = apply.add_argument_group("render farm (animation folders; see the README's Render farm section)")
    farm.add_argument("--frames", default=None, metavar="START-END",
                      help="stylize only these frame numbers (the digits ending the file names), as one chunk of "
                           "a farm job: it starts cold --warmup frames earlier and writes START..END only")
    farm.add_argument("--warmup", type=int, default=None, metavar="W",
                      help=f"frames run before START and thrown away (default {DEFAULT_WARMUP}: chunk borders "
                           "then flicker within 10%% of the frames inside)")
    farm.add_argument("--overlap", type=int, default=0, metavar="K",
                      help="cross-fade K frames with the neighbouring chunk (needs every chunk to run)")
    farm.add_argument("--chunk-size", type=int, default=None, metavar="N",
                      help=f"frames per chunk (default {DEFAULT_CHUNK_SIZE} with --ray; without --ray the chunks "
                           "run here one after another)")
    farm.add_argument("--method", choices=("auto", "model", "adain", "optimize"), default="auto",
                      help="with --frames/--ray: how the style applies (auto: a .safetensors model is a fast model, "
                           "an image is optimised; adain: any painting in one pass with the bundled decoder)")
    farm.add_argument("--ray", default=None, metavar="auto|ADDRESS",
                      help="distribute the chunks over a Ray cluster: 'auto' joins a running one or starts one "
                           "here; else the cluster's address. Needs: pip install -r requirements-farm.txt")
    farm.add_argument("--workers", type=int, default=None,
                      help="with --ray: how many workers (default: one per GPU of the cluster, else per CPU)")
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
    fast.add_argument("--max-gain", type=float, default=None,
                      help="how much the painting may amplify the frame's own feature contrast (default 1.25: "
                           "flat renders stay clean; higher: more painterly texture; 100: the paper's uncapped AdaIN)")
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
    farm_run = args.frames is not None or args.chunk_size is not None or args.ray is not None
    if farm_run and not input_path.is_dir():
        raise ValueError("--frames, --chunk-size and --ray need a folder of frames as --input")
    if input_path.is_dir() and farm_run:
        return _run_chunked(args, optimisation)
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


def _run_chunked(args: argparse.Namespace, optimisation: dict) -> int:
    """The chunk contract: one range (--frames), its chunks here (--chunk-size), or a Ray cluster (--ray)."""
    from ..style.chunks import StyleSpec, numbered_frames, parse_frame_range, stylize_chunked

    files = _frame_files(Path(args.input))
    if not files:
        raise ValueError(f"no frames in {args.input}")
    numbers = list(numbered_frames(files))
    frames = parse_frame_range(args.frames) if args.frames else (numbers[0], numbers[-1])
    warmup = DEFAULT_WARMUP if args.warmup is None else args.warmup
    chunk_size = args.chunk_size or (DEFAULT_CHUNK_SIZE if args.ray else frames[1] - frames[0] + 1)
    options = dict(strength=args.strength, temporal_weight=args.temporal_weight, tile_size=args.tile,
                   use_vectors=not args.no_vectors, flows_dir=args.flows)
    settings = {k: v for k, v in optimisation.items() if k not in ("device", "cancel") and v is not None}
    method = {} if args.method == "auto" else {"method": args.method}
    spec = StyleSpec.for_path(args.style, options=settings if args.method in ("auto", "optimize") else {}, **method)
    bar = ProgressBar("style")
    if args.ray:
        import importlib.util
        from ..farm import RAY_INSTALL_HINT
        if importlib.util.find_spec("ray") is None:
            raise ValueError(RAY_INSTALL_HINT)
        from ..farm.ray_style import stylize_on_ray
        written = stylize_on_ray(spec, files, args.out, frames, chunk_size, warmup, args.overlap, address=args.ray,
                                 workers=args.workers, device=None if args.device == "auto" else args.device,
                                 progress=bar, cancel=getattr(args, "cancel", None),
                                 log=lambda message: print(f"farm: {message}"), **options)
    else:
        model = spec.build(args.device, cancel=getattr(args, "cancel", None))
        written = stylize_chunked(model, files, args.out, frames, chunk_size, warmup, args.overlap, progress=bar,
                                  cancel=getattr(args, "cancel", None),
                                  warn=lambda message: print(f"warning: {message}"), **options)
    print(f"wrote {len(written)} frames ({frames[0]}-{frames[1]}) to {args.out}")
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
                           refine_steps=args.refine_steps,
                           **({} if args.max_gain is None else {"max_gain": args.max_gain}))
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
