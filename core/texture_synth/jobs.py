"""Instant texture synthesis as a worker job: ``texture_synth.synthesize``.

The family is imported inside the job (see ``core.worker.registry``): the worker starts without it.
"""

from __future__ import annotations

from ..worker import IMAGE_OUTPUT, MAX_SIDE, SEED, JobContext, Param, job, load_input, srgb_rgb, write_image_result


@job("texture_synth.synthesize", exemplars=Param("paths", 1, 64, required=True),
     width=Param("int", 1, MAX_SIDE, default=512), height=Param("int", 1, MAX_SIDE, default=512), seed=SEED,
     tileable=Param("bool", default=True), steps=Param("int", 1, 10_000), scales=Param("int", 1, 64),
     layout=Param("choice", choices=("auto", "blocks", "quilted", "sliced"), default="quilted"), **IMAGE_OUTPUT)
def job_texture_synth_synthesize(ctx: JobContext) -> dict:
    """Instant, training-free texture from one or more exemplars (patch-distribution matching)."""
    images = [srgb_rgb(load_input(p)) for p in ctx.param("exemplars", required=True)]  # bad input names its file
    from . import synthesize
    steps, scales = ctx.param("steps"), ctx.param("scales")
    warnings: list[str] = []  # shown under the job (an exemplar with burnt-out highlights)
    result = synthesize(images, int(ctx.param("width", 512)), int(ctx.param("height", 512)),
                        seed=int(ctx.param("seed", 0)), tileable=bool(ctx.param("tileable", True)),
                        steps=None if steps is None else int(steps), scales=None if scales is None else int(scales),
                        layout=str(ctx.param("layout", "quilted")),
                        device=None if ctx.device == "auto" else ctx.device, progress=ctx.progress, cancel=ctx.cancel,
                        warn=warnings.append)
    return {"image": write_image_result(ctx, result.image), "warnings": warnings}
