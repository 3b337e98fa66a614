"""Stylize automatically after every still render (render_complete), registered and removed cleanly.

Handlers may run on the render thread when rendering from the interface, so
there the work is deferred to a one-shot timer on the main thread. Without a
UI (``blender -b``, the bpy module) rendering is synchronous on the main
thread and the handler stylizes directly (waiting for the job).
Animation renders are skipped: use "Stylize Frames" on their output folder.
"""

from __future__ import annotations

import sys

import bpy
from bpy.app.handlers import persistent

_frames_rendered = 0
_pending_scene: str | None = None


@persistent
def _on_render_init(scene, *args):
    global _frames_rendered
    _frames_rendered = 0


@persistent
def _on_render_post(scene, *args):
    global _frames_rendered
    _frames_rendered += 1


@persistent
def on_render_complete(scene, *args):
    global _pending_scene
    settings = getattr(scene, "neural_style", None)
    if settings is None or not settings.auto_stylize or _frames_rendered > 1:
        return
    if bpy.app.background:
        auto_stylize(scene.name)
    else:
        _pending_scene = scene.name
        if not bpy.app.timers.is_registered(_deferred):
            bpy.app.timers.register(_deferred, first_interval=0.05)


def _deferred():
    global _pending_scene
    name, _pending_scene = _pending_scene, None
    if name:
        auto_stylize(name)
    return None


def auto_stylize(scene_name: str):
    """Submit a stylize job for the current Render Result; errors are printed, never raised into the render."""
    from . import models
    from .image_bridge import BridgeError
    from .operators.style import stylize_render_or_image
    scene = bpy.data.scenes.get(scene_name)
    if scene is None:
        return None
    settings = scene.neural_style
    model = models.resolve(settings.model_ref, "style")
    if not model:
        print("Neural Textures: auto-stylize is on but no style model is chosen", file=sys.stderr)
        return None
    try:
        return stylize_render_or_image(scene, "RENDER", "", bpy.path.abspath(model), settings.strength,
                                       settings.render_colors, wait=bpy.app.background, label_prefix="Auto-stylize")
    except BridgeError as exc:
        print(f"Neural Textures: auto-stylize skipped: {exc}", file=sys.stderr)
        return None


@persistent
def keep_results_on_save(*args):
    """Results arrive unpacked (no main-thread stall); saving puts them in the .blend or in files."""
    from . import image_bridge, preferences
    external = preferences.get_prefs().result_storage == "EXTERNAL"
    image_bridge.pack_results(preferences.results_dir() if external else None)


HANDLERS = ((bpy.app.handlers.render_init, _on_render_init),
            (bpy.app.handlers.save_pre, keep_results_on_save),
            (bpy.app.handlers.render_post, _on_render_post),
            (bpy.app.handlers.render_complete, on_render_complete))


def register():
    for handler_list, function in HANDLERS:
        if function not in handler_list:
            handler_list.append(function)


def unregister():
    for handler_list, function in HANDLERS:
        while function in handler_list:
            handler_list.remove(function)
    if bpy.app.timers.is_registered(_deferred):
        bpy.app.timers.unregister(_deferred)
