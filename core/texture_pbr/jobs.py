"""PBR maps as a worker job: ``texture.pbr``.

The family is imported inside the job (see ``core.worker.registry``): the worker starts without it.
"""

from __future__ import annotations

from ..common.jobs import Progress
from ..worker import INPUT, JobContext, Param, job, load_input, write_image_result


@job("texture.pbr", image=INPUT, height_detail=Param("float", 0.0, 1.0), height_radius=Param("float", 2.0, 1024.0),
     invert_height=Param("bool"), height_scale=Param("float", 0.0, 256.0),
     normal_strength=Param("float", 0.0, 20.0), roughness_base=Param("float", 0.0, 1.0),
     roughness_contrast=Param("float", -1.0, 1.0), roughness_brightness=Param("float", -1.0, 1.0),
     ao_strength=Param("float", 0.0, 4.0))
def job_texture_pbr(ctx: JobContext) -> dict:
    """Tileable height, normal (OpenGL), roughness and AO maps derived from an albedo."""
    source = load_input(ctx.param("image", required=True))
    from . import PBRSettings, pbr_maps
    knobs = {name: ctx.params[name] for name in PBRSettings.__dataclass_fields__ if ctx.params.get(name) is not None}
    maps = pbr_maps(source, **knobs)
    ctx.progress(Progress(1, 1, "PBR maps ready"))
    # Non-colour data: stored as is (the host loads these as Non-Color).
    return {"maps": {name: write_image_result(ctx, getattr(maps, name), name=name)
                     for name in ("height", "normal", "roughness", "ao")}}
