"""Live preview: a small texture in the Generate panel that follows seed and variation within about a second.

Changing a setting calls ``request()``; a one-shot timer waits ``DEBOUNCE``
seconds of quiet, cancels the preview job that is now stale and submits a
small one. The worker writes a PNG and the panel shows it as an icon, so the
main thread never touches the pixels.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import bpy

from . import job_queue, models, preferences

DEBOUNCE = 0.3
SIZE = 128
_pending_scene: str = ""
_last_request = 0.0
_job = None
latest_path: str = ""


def request(scene_name: str) -> None:
    """Ask for a new preview of ``scene_name``'s Generate settings (debounced)."""
    global _pending_scene, _last_request
    _pending_scene, _last_request = scene_name, time.monotonic()
    if not bpy.app.timers.is_registered(tick):
        bpy.app.timers.register(tick, first_interval=DEBOUNCE)


def tick():
    """The debounce timer: submit once the settings stopped changing; cancel a stale preview job."""
    global _job, _pending_scene
    quiet = time.monotonic() - _last_request
    if quiet < DEBOUNCE:
        return DEBOUNCE - quiet
    scene = bpy.data.scenes.get(_pending_scene)
    _pending_scene = ""
    if scene is None or not getattr(scene, "neural_texture", None):
        return None
    settings = scene.neural_texture
    model = models.resolve(settings.model_ref, "texture_gan")
    if not model or not Path(model).is_file():
        return None
    if _job is not None and _job.active:
        job_queue.cancel(_job.id)  # stale: the artist moved on
    out = str(preferences.results_dir() / f"preview_{uuid.uuid4().hex[:8]}.png")
    params = {"model": model, "width": SIZE, "height": SIZE, "seed": settings.seed, "tileable": True,
              "variation": settings.variation, "output": out}

    def on_done(job):
        global latest_path
        if job.state == "done":
            previous, latest_path = latest_path, job.result["image"]["path"]
            if previous and previous != latest_path:
                Path(previous).unlink(missing_ok=True)

    _job = job_queue.submit("texture_gan.generate", params, label="Live preview", on_done=on_done, wait=False)
    return None


def on_setting_changed(settings, context) -> None:
    """Update callback of the settings the preview follows."""
    if getattr(settings, "live_preview", False) and context is not None and context.scene is not None:
        request(context.scene.name)


def unregister() -> None:
    global _job, latest_path
    if bpy.app.timers.is_registered(tick):
        bpy.app.timers.unregister(tick)
    _job, latest_path = None, ""
