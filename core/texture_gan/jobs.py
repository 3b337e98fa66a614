"""The texture GAN's worker jobs: ``texture_gan.train`` and ``texture_gan.generate``.

The family is imported inside each job (see ``core.worker.registry``): the worker starts without it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..common.jobs import Progress
from ..worker import IMAGE_OUTPUT, INPUT, MAX_SIDE, SEED, TRAINING, JobContext, Param, job, train_job, \
    write_image_result


@job("texture_gan.train", exemplars=Param("paths", 1, 64, required=True),
     recipe=Param("choice", choices=("spatial", "distilled", "finetune"), default="spatial"), **TRAINING)
def job_texture_gan_train(ctx: JobContext) -> dict:
    """``recipe="distilled"``: the materials GAN's recipe (distilled from instant synthesis; each exemplar a
    material); ``finetune``: the same recipe starting from the bundled materials GAN's weights (what the panel's
    *Train From Image* sends by default); ``spatial``: the original per-texture GAN."""
    from . import load_texture_gan, train_texture_gan

    def sample(path: Path, size: int) -> np.ndarray:
        return load_texture_gan(path, device="cpu").generate(size, size, seed=0)

    exemplars = [list(ctx.param("exemplars", required=True))]
    recipe = ctx.param("recipe", "spatial")
    if recipe in ("distilled", "finetune"):
        from .distill import bundled_materials_path, distilled_config, train_one_material
        extra = {"config": distilled_config(ctx.param("config"), len(exemplars[0]))}
        if recipe == "finetune":
            extra["start_from"] = bundled_materials_path()
            if not extra["start_from"].is_file():
                raise FileNotFoundError(f"the bundled materials GAN ({extra['start_from']}) is missing, so there "
                                        "is nothing to fine-tune; train with the Distilled recipe instead")
        return train_job(ctx, train_one_material, exemplars, family="texture_gan", thumbnail=sample, extra=extra)
    return train_job(ctx, train_texture_gan, exemplars, thumbnail=sample)


# Tile sizes below 64 px spend nearly all the time on tile margins (generate() also checks the stride).
@job("texture_gan.generate", model=INPUT, width=Param("int", 1, MAX_SIDE, default=512),
     height=Param("int", 1, MAX_SIDE, default=512), seed=SEED, tileable=Param("bool", default=True),
     variation=Param("float", 0.0, 1.0, default=0.0), tile_size=Param("int", 64, MAX_SIDE),
     material=Param("str"), mix=Param("str"), **IMAGE_OUTPUT)
def job_texture_gan_generate(ctx: JobContext) -> dict:
    """``material`` (a name) or ``mix`` ("NAME:W,NAME:W") pick the look of a conditional (materials) model."""
    from . import load_texture_gan
    model = ctx.model(load_texture_gan, ctx.param("model", required=True))
    ctx.cancel.raise_if_cancelled()
    material, mix = ctx.param("material"), ctx.param("mix")
    kwargs = {}
    if hasattr(model, "materials"):  # one-texture models ignore a material (the add-on may send one)
        from .conditional import parse_mix
        kwargs["material"] = parse_mix(mix) if mix else (material or None)
    rgb = model.generate(int(ctx.param("width", 512)), int(ctx.param("height", 512)),
                         seed=int(ctx.param("seed", 0)), tileable=bool(ctx.param("tileable", True)),
                         variation=float(ctx.param("variation", 0.0)), tile_size=ctx.param("tile_size"),
                         cancel=ctx.cancel, **kwargs)
    ctx.progress(Progress(1, 1, "generated"))
    return {"image": write_image_result(ctx, rgb), "model_name": getattr(model, "name", ""),
            "materials": list(getattr(model, "materials", []))}
