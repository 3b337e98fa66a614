"""The texture VAE's worker jobs: ``texture_vae.train``, ``texture_vae.vary`` and ``texture_vae.blend``.

The family is imported inside each job (see ``core.worker.registry``): the worker starts without it.
"""

from __future__ import annotations

import numpy as np

from ..common.jobs import Progress
from ..worker import IMAGE_OUTPUT, INPUT, SEED, SIDE, TRAINING, JobContext, Param, job, load_input, srgb_rgb, \
    train_job, with_colorspace_of, write_image_result

# Latent refinement steps (``TextureVAE.refine``) for Make Variations, More Like This and Blend (the panel, the
# CLI and these jobs) unless the caller chooses; kept here as the worker reads job modules before their family.
# Measured on the bundled materials VAE (24,847 encoder steps; tools/eval_vae_refine.py, 2 seeds, the bench's
# crops; variation ratio to the exemplar's own crops, target <= 1.6 with gradient energy >= 0.85):
# 0 steps 3 of 9 materials, 10 steps 5 (stone bricks 1.70), 20 steps 6 (stone bricks 1.58 / 0.86, at the edge),
# 30 steps 6 with a margin (stone bricks 1.36 / 0.87, bark 1.06, brick wall 0.92). A step runs the decoder and
# VGG19 forward and backward on the input: about 0.3 s for a 256 px crop on one CPU core (9 s a variation), a
# small fraction of that on a GPU. 0 gives the encoder's one-pass reading: instant, another layout.
DEFAULT_REFINE_STEPS = 30


@job("texture_vae.train", exemplars=Param("paths", 1, 64, required=True),
     recipe=Param("choice", choices=("finetune", "plain"), default="finetune"), **TRAINING)
def job_texture_vae_train(ctx: JobContext) -> dict:
    """``recipe="finetune"`` (the panel's): the bundled materials GAN fine-tuned to the exemplars as the decoder
    and the bundled VAE's encoder fine-tuned onto it (``from_image.py``: sharp); ``plain``: a VAE learnt from the
    exemplars alone (``train.py``: fast, blurred)."""
    exemplars = list(ctx.param("exemplars", required=True))
    if ctx.param("recipe", "finetune") == "finetune":
        from .from_image import train_variation_model  # checks its config before a step
        return train_job(ctx, train_variation_model, [exemplars], thumbnail=exemplars[0],
                         extra={"config": ctx.param("config")})
    from . import train_texture_vae
    return train_job(ctx, train_texture_vae, [exemplars], thumbnail=exemplars[0])


@job("texture_vae.vary", image=INPUT, model=INPUT, strength=Param("float", 0.0, 10.0, default=0.5), seed=SEED,
     width=SIDE, height=SIDE, refine_steps=Param("int", 0, 1000, default=DEFAULT_REFINE_STEPS),
     **IMAGE_OUTPUT)
def job_texture_vae_vary(ctx: JobContext) -> dict:
    source = load_input(ctx.param("image", required=True))  # bad input fails before any model loads
    from . import load_texture_vae
    model = ctx.model(load_texture_vae, ctx.param("model", required=True))
    ctx.cancel.raise_if_cancelled()
    warnings: list[str] = []  # shown under the job (an image the model cannot draw)
    rgb = model.vary(srgb_rgb(source), float(ctx.param("strength", 0.5)), seed=int(ctx.param("seed", 0)),
                     width=ctx.param("width"), height=ctx.param("height"),
                     refine_steps=int(ctx.param("refine_steps", DEFAULT_REFINE_STEPS)), cancel=ctx.cancel,
                     progress=ctx.progress, warn=warnings.append)
    ctx.progress(Progress(1, 1, "variation ready"))
    same_size = np.asarray(rgb).shape[:2] == source.rgb.shape[:2]
    return {"image": write_image_result(ctx, with_colorspace_of(rgb, source if same_size else None)),
            "warnings": warnings}


@job("texture_vae.blend", model=INPUT, images=Param("paths", 2, 16, required=True), mask=Param("path"),
     t=Param("float", 0.0, 1.0, default=0.5), width=SIDE, height=SIDE, weights=Param("floats", 0.0, 1e6),
     refine_steps=Param("int", 0, 1000, default=DEFAULT_REFINE_STEPS), **IMAGE_OUTPUT)
def job_texture_vae_blend(ctx: JobContext) -> dict:
    from . import load_texture_vae
    model = ctx.model(load_texture_vae, ctx.param("model", required=True))
    paths = ctx.param("images", required=True)
    if len(paths) < 2:
        raise ValueError("blending needs at least two images")
    images = [srgb_rgb(load_input(p)) for p in paths]
    mask = None
    if ctx.param("mask"):
        mask_image = load_input(ctx.param("mask"))
        # a mask is data, not colour: take the stored values, averaged over RGB
        mask = np.clip(mask_image.rgb.mean(axis=2), 0.0, 1.0).astype(np.float32)
    ctx.cancel.raise_if_cancelled()
    warnings: list[str] = []
    rgb = model.blend(images, t=float(ctx.param("t", 0.5)), mask=mask, width=ctx.param("width"),
                      height=ctx.param("height"), weights=ctx.param("weights"),
                      refine_steps=int(ctx.param("refine_steps", DEFAULT_REFINE_STEPS)), cancel=ctx.cancel,
                      progress=ctx.progress, warn=warnings.append)
    ctx.progress(Progress(1, 1, "blend ready"))
    return {"image": write_image_result(ctx, rgb), "warnings": warnings}
