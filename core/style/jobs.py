"""Neural style's worker jobs: optimisation, fast per-style models (training and stylizing),
AdaIN (any painting in one pass) and animation sequences by any of the three.

The family is imported inside each job (see ``core.worker.registry``): the worker starts without it.
"""

from __future__ import annotations

from pathlib import Path

from ..common.jobs import Progress
from ..worker import IMAGE_OUTPUT, INPUT, MAX_SIDE, SEED, TRAINING, JobContext, Param, ParamError, job, load_input, \
    train_job, with_colorspace_of, write_image_result

OPTIMISATION = {"steps": Param("int", 1, 100_000, default=40), "refine_steps": Param("int", 1, 100_000),
                "content_weight": Param("float", 0.0, 1e6), "style_weight": Param("float", 0.0, 1e12),
                "style_loss": Param("choice", choices=("gram", "sliced_wasserstein")),
                "max_side": Param("int", 32, 8192), "start_side": Param("int", 32, 8192),
                "style_scale": Param("float", 0.1, 4.0), "vgg19_weights": Param("path"), "seed": SEED}
_OPTIMISATION_KEYS = ("refine_steps", "content_weight", "style_weight", "style_loss", "max_side", "start_side",
                      "style_scale", "vgg19_weights")
# AdaIN's gain limit (adain.DEFAULT_MAX_GAIN when left out; 100: in effect the paper's uncapped AdaIN)
MAX_GAIN = Param("float", 0.5, 100.0)


def _adain_options(ctx: JobContext) -> dict:
    gain = ctx.param("max_gain")
    return {} if gain is None else {"max_gain": float(gain)}


@job("style.stylize_optimize", content=INPUT, style=INPUT, strength=Param("float", 0.0, 1.0, default=1.0),
     preserve_color=Param("choice", choices=(False, True, "luminance", "histogram")), **OPTIMISATION,
     **IMAGE_OUTPUT)
def job_style_stylize_optimize(ctx: JobContext) -> dict:
    from . import stylize_optimize
    content = load_input(ctx.param("content", required=True))
    style = load_input(ctx.param("style", required=True))
    kwargs = {k: ctx.params[k] for k in (*_OPTIMISATION_KEYS, "preserve_color") if ctx.params.get(k) is not None}
    result = stylize_optimize(content, style, steps=int(ctx.param("steps", 40)),
                              strength=float(ctx.param("strength", 1.0)), seed=int(ctx.param("seed", 0)),
                              device=None if ctx.device == "auto" else ctx.device,
                              progress=ctx.progress, cancel=ctx.cancel, **kwargs)
    return {"image": write_image_result(ctx, with_colorspace_of(result, content))}


@job("style.train", style=INPUT, frames=Param("paths", 1, 100_000), vgg19_weights=Param("path"), **TRAINING)
def job_style_train(ctx: JobContext) -> dict:
    from . import train_style_model
    frames = ctx.param("frames")  # None: the core renders its own training frames
    return train_job(ctx, train_style_model, [ctx.param("style", required=True), list(frames) if frames else None],
                     family="style_transfer", extra={"vgg19_weights": ctx.param("vgg19_weights")})


def _fast_style(ctx: JobContext):
    """The job's fast style model: a single-style file, or a style/mix of a multi-style one
    (``model`` may end in ``#style``; ``style_weights``: a name or ``"starry_night=0.7,wave=0.3"``)."""
    from .multistyle import load_fast_style, parse_style_weights
    weights = ctx.param("style_weights")
    return load_fast_style(ctx.param("model", required=True), style=parse_style_weights(weights) if weights else None,
                           loader=ctx.model)


@job("style.stylize", image=INPUT, model=INPUT, strength=Param("float", 0.0, 1.0, default=1.0),
     tile_size=Param("int", 32, MAX_SIDE), style_weights=Param("str"), **IMAGE_OUTPUT)
def job_style_stylize(ctx: JobContext) -> dict:
    source = load_input(ctx.param("image", required=True))  # bad input fails before any model loads
    model = _fast_style(ctx)
    ctx.cancel.raise_if_cancelled()
    result = model.stylize(source, strength=float(ctx.param("strength", 1.0)), tile_size=ctx.param("tile_size"),
                           cancel=ctx.cancel)
    ctx.progress(Progress(1, 1, "stylized"))
    return {"image": write_image_result(ctx, with_colorspace_of(result, source))}


@job("style.stylize_sequence", model=Param("path"), style=Param("path"), style_weights=Param("str"),
     method=Param("choice", choices=("model", "adain", "optimize"), default="model"),
     alpha=Param("float", 0.0, 1.0, default=1.0), max_gain=MAX_GAIN, **OPTIMISATION,
     frames=Param("paths", 1, 100_000, required=True),
     output_dir=Param("output_dir", required=True),
     format=Param("choice", choices=("png", "exr", "jpg", "jpeg", "npy", ".png", ".exr", ".jpg", ".jpeg", ".npy")),
     strength=Param("float", 0.0, 1.0, default=1.0), temporal_weight=Param("float", 0.0, 1.0, default=0.7),
     use_motion_vectors=Param("bool", default=True), overwrite=Param("bool", default=False),
     # render farm: chunks over a Ray cluster ("auto": a running one, else one started here; or its address)
     ray_address=Param("str"), chunk_size=Param("int", 1, 100_000, default=24), warmup=Param("int", 0, 10_000),
     overlap=Param("int", 0, 10_000, default=0), ray_workers=Param("int", 1, 100_000))
def job_style_stylize_sequence(ctx: JobContext) -> dict:
    from ..common.images import save_image
    from . import stylize_sequence
    from .blender_passes import frames_with_flows
    method = ctx.param("method", "model")
    if ctx.param("ray_address"):
        return _sequence_on_ray(ctx, method)
    if method == "model":  # a fast style model (or one style or mix of the multi-style one)
        model = _fast_style(ctx)
    elif method == "adain":  # any painting in one pass; the bundled decoder unless a model is given
        from .adain import AdaINStylizer, bundled_decoder_path, load_adain_model
        decoder = ctx.model(load_adain_model, ctx.param("model") or bundled_decoder_path())
        model = AdaINStylizer(decoder, load_input(ctx.param("style", required=True)), float(ctx.param("alpha", 1.0)),
                              **_adain_options(ctx))
    else:  # optimisation per frame, warm-started from the previous result warped by the motion
        from .optimize import OptimizationStylizer
        options = {k: ctx.params[k] for k in _OPTIMISATION_KEYS if ctx.params.get(k) is not None}
        model = OptimizationStylizer(load_input(ctx.param("style", required=True)), steps=int(ctx.param("steps", 40)),
                                     seed=int(ctx.param("seed", 0)), cancel=ctx.cancel,
                                     device=None if ctx.device == "auto" else ctx.device, **options)
    frames = [str(p) for p in ctx.param("frames", required=True)]
    if not frames:
        raise ValueError("no frames to stylize")
    output_dir = Path(ctx.param("output_dir", required=True))
    targets = _sequence_targets(frames, output_dir, ctx.param("format"), bool(ctx.param("overwrite")))
    output_dir.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    warnings: list[str] = []
    # frames are read lazily: a long animation never sits in memory at once; multilayer EXR renders
    # bring their Vector pass as exact motion, other frames get the motion estimate
    frame_iter, flow_iter = frames_with_flows(frames, use_vectors=bool(ctx.param("use_motion_vectors", True)),
                                              warn=warnings.append)
    iterator = stylize_sequence(model, frame_iter, flow_iter, strength=float(ctx.param("strength", 1.0)),
                                temporal_weight=float(ctx.param("temporal_weight", 0.7)),
                                progress=None, cancel=ctx.cancel)
    for index, frame in enumerate(iterator):
        out = targets[index]
        save_image(out, with_colorspace_of(frame, None))
        written.append(str(out))
        ctx.progress(Progress(index + 1, len(frames), f"frame {index + 1}/{len(frames)}"))
    return {"frames": written, "output_dir": str(output_dir), "warnings": warnings}


def _sequence_on_ray(ctx: JobContext, method: str) -> dict:
    """The same animation in chunks on a Ray cluster: progress per finished chunk, cancel stops every worker."""
    import importlib.util

    from ..farm import RAY_INSTALL_HINT
    from .chunks import DEFAULT_WARMUP, StyleSpec, output_path
    if importlib.util.find_spec("ray") is None:
        raise ParamError(RAY_INSTALL_HINT)
    if ctx.param("format"):
        raise ParamError("a farm run names its frames like the inputs; leave 'format' out with 'ray_address'")
    if method == "model":
        spec = StyleSpec(str(ctx.param("model", required=True)), "model")
    elif method == "adain":
        spec = StyleSpec(str(ctx.param("style", required=True)), "adain", model=ctx.param("model"),
                         alpha=float(ctx.param("alpha", 1.0)), options=_adain_options(ctx))
    else:
        options = {k: ctx.params[k] for k in _OPTIMISATION_KEYS if ctx.params.get(k) is not None}
        spec = StyleSpec(str(ctx.param("style", required=True)), "optimize",
                         options={"steps": int(ctx.param("steps", 40)), "seed": int(ctx.param("seed", 0)), **options})
    frames = [str(p) for p in ctx.param("frames", required=True)]
    output_dir = Path(ctx.param("output_dir", required=True))
    inputs = {Path(f).resolve() for f in frames}
    for frame in frames:
        target = output_path(output_dir, frame)
        if target.resolve() in inputs:
            raise ParamError(f"{target} is one of the input frames; choose another output folder")
        if target.exists() and not ctx.param("overwrite"):
            raise ParamError(f"{target} exists; send \"overwrite\": true to replace the frames in {output_dir}")
    from ..farm.ray_style import stylize_on_ray
    warnings: list[str] = []
    warmup = ctx.param("warmup")
    written = stylize_on_ray(spec, frames, output_dir, chunk_size=int(ctx.param("chunk_size", 24)),
                             warmup=DEFAULT_WARMUP if warmup is None else int(warmup),
                             overlap=int(ctx.param("overlap", 0)), address=ctx.param("ray_address"),
                             workers=ctx.param("ray_workers"), device=None if ctx.device == "auto" else ctx.device,
                             progress=ctx.progress, cancel=ctx.cancel, log=warnings.append,
                             strength=float(ctx.param("strength", 1.0)),
                             temporal_weight=float(ctx.param("temporal_weight", 0.7)),
                             use_vectors=bool(ctx.param("use_motion_vectors", True)))
    return {"frames": written, "output_dir": str(output_dir), "warnings": warnings}


def _sequence_targets(frames: list[str], output_dir: Path, suffix: str | None, overwrite: bool) -> list[Path]:
    """One output file per frame, checked before the first frame is stylized: never an input
    frame, never two frames onto one file, never an existing file unless asked."""
    targets = []
    for frame in frames:
        ext = ("." + suffix.lstrip(".")) if suffix else Path(frame).suffix.lower()
        if ext not in (".png", ".exr", ".jpg", ".jpeg", ".npy"):
            ext = ".png"
        targets.append(output_dir / (Path(frame).stem + ext))
    inputs = {Path(f).resolve() for f in frames}
    seen: set[Path] = set()
    for target in targets:
        resolved = target.resolve()
        if resolved in inputs:
            raise ParamError(f"{target} is one of the input frames; choose another output folder")
        if resolved in seen:
            raise ParamError(f"two frames are named {target.stem}; they would overwrite each other in {output_dir}")
        seen.add(resolved)
        if target.exists() and not overwrite:
            raise ParamError(f"{target} exists; send \"overwrite\": true to replace the frames in {output_dir}")
    return targets


@job("style.stylize_adain", image=INPUT, style=INPUT, model=Param("path"), alpha=Param("float", 0.0, 1.0, default=1.0),
     preserve_color=Param("choice", choices=(False, True, "luminance", "histogram")),
     tile_size=Param("int", 32, MAX_SIDE), refine_steps=Param("int", 0, 1000, default=0), max_gain=MAX_GAIN,
     **IMAGE_OUTPUT)
def job_style_stylize_adain(ctx: JobContext) -> dict:
    """Any painting in one pass (AdaIN); ``model`` defaults to the bundled decoder."""
    source = load_input(ctx.param("image", required=True))  # bad input fails before any model loads
    style = load_input(ctx.param("style", required=True))
    from .adain import bundled_decoder_path, load_adain_model
    model = ctx.model(load_adain_model, ctx.param("model") or bundled_decoder_path())
    ctx.cancel.raise_if_cancelled()
    tile = ctx.param("tile_size")
    result = model.stylize(source, style, alpha=float(ctx.param("alpha", 1.0)),
                           preserve_color=ctx.param("preserve_color", False),
                           tile_size=None if tile is None else int(tile), progress=ctx.progress, cancel=ctx.cancel,
                           refine_steps=int(ctx.param("refine_steps", 0)), **_adain_options(ctx))
    return {"image": write_image_result(ctx, with_colorspace_of(result, source))}
