"""Live previews: small images in the panels that follow the settings within about a second.

Texture: seed, variation and tile scale (a canvas ``tile_scale`` times wider,
shown at icon size, so the pattern shrinks as it would on the surface). Style:
the strength, on a reduced copy of the chosen image.

Changing a setting calls ``request()``; a one-shot timer waits ``DEBOUNCE``
seconds of quiet, cancels that preview's job if it is now stale and submits a
small one. The worker writes a PNG and the panel shows it as an icon, so the
main thread never touches the result's pixels.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import bpy
import numpy as np

from . import job_queue, models, preferences

DEBOUNCE = 0.3
SIZE = 128
MAX_CANVAS = 512
TEXTURE, STYLE = "texture", "style"
_pending: dict[str, str] = {}  # preview kind -> scene name
_last_request = 0.0
_jobs: dict = {}
latest: dict[str, str] = {}  # preview kind -> PNG path


def request(scene_name: str, kind: str = TEXTURE) -> None:
    """Ask for a new preview of ``scene_name``'s settings (debounced)."""
    global _last_request
    _pending[kind], _last_request = scene_name, time.monotonic()
    if not bpy.app.timers.is_registered(tick):
        bpy.app.timers.register(tick, first_interval=DEBOUNCE)


def tick():
    """The debounce timer: submit once the settings stopped changing; cancel a stale preview job."""
    quiet = time.monotonic() - _last_request
    if quiet < DEBOUNCE:
        return DEBOUNCE - quiet
    for kind, scene_name in list(_pending.items()):
        del _pending[kind]
        scene = bpy.data.scenes.get(scene_name)
        submission = _texture_job(scene) if kind == TEXTURE else _style_job(scene)
        if submission is None:
            continue
        stale = _jobs.get(kind)
        if stale is not None and stale.active:
            job_queue.cancel(stale.id)  # the artist moved on
        _jobs[kind] = job_queue.submit(*submission, label=f"Live {kind} preview", on_done=_on_done(kind),
                                       wait=False)
    return None


def _output() -> str:
    return str(preferences.results_dir() / f"preview_{uuid.uuid4().hex[:8]}.png")


def _texture_job(scene):
    settings = getattr(scene, "neural_texture", None)
    model = models.resolve(settings.model_ref, "texture_gan") if settings is not None else ""
    if not model or not Path(model).is_file():
        return None
    canvas = int(min(MAX_CANVAS, max(32, round(SIZE * settings.tile_scale))))
    return "texture_gan.generate", {"model": model, "width": canvas, "height": canvas, "seed": settings.seed,
                                    "tileable": True, "variation": settings.variation, "output": _output(),
                                    **models.material_params(settings)}


def _style_job(scene):
    settings = getattr(scene, "neural_style", None)
    if settings is None or settings.image is None or settings.method != "MODEL":
        return None
    model = models.resolve(settings.model_ref, "style")
    if not model or not Path(models.model_file(model)).is_file():
        return None
    from . import image_bridge
    image = settings.image
    step = max(1, -(-max(image.size[:]) // SIZE))  # every step-th pixel: at most SIZE px, no resampling cost
    pixels = image_bridge.image_pixels(image)[::step, ::step, :3]
    if image_bridge.is_linear(image):
        pixels = image_bridge.hdr_encode(pixels)  # the preview skips the HDR decode: it is for looking at
        data = np.ascontiguousarray(pixels, np.float32)
    else:
        data = (np.clip(pixels, 0.0, 1.0) * 65535.0 + 0.5).astype(np.uint16)
    source = job_queue.workdir() / "inputs" / f"style_preview_{uuid.uuid4().hex[:8]}.npy"
    source.parent.mkdir(parents=True, exist_ok=True)
    np.save(source, data, allow_pickle=False)
    return "style.stylize", {"model": model, "image": str(source), "strength": settings.strength, "output": _output()}


def _on_done(kind: str):
    def on_done(job):
        if job.state == "done":
            previous, latest[kind] = latest.get(kind, ""), job.result["image"]["path"]
            if previous and previous != latest[kind]:
                Path(previous).unlink(missing_ok=True)
    return on_done


def job(kind: str = TEXTURE):
    """The newest preview job of ``kind`` (None before the first)."""
    return _jobs.get(kind)


def on_texture_setting_changed(settings, context) -> None:
    if getattr(settings, "live_preview", False) and context is not None and context.scene is not None:
        request(context.scene.name, TEXTURE)


def on_style_setting_changed(settings, context) -> None:
    if getattr(settings, "live_preview", False) and context is not None and context.scene is not None:
        request(context.scene.name, STYLE)


def unregister() -> None:
    if bpy.app.timers.is_registered(tick):
        bpy.app.timers.unregister(tick)
    _pending.clear()
    _jobs.clear()
    latest.clear()
