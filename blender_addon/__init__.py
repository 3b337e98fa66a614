"""Neural Textures: generate tileable textures, make variations and stylize renders with neural networks.

A Blender 4.2+ extension (see ``blender_manifest.toml``). The models live in
the host-independent ``core`` package and run in a separate worker process
(``python -m core.worker``), so Blender never freezes while a model trains or
runs and GPU memory is freed by stopping the worker.

Modules: ``preferences`` (device, library, worker Python, installer),
``properties`` (scene settings), ``operators`` (``bpy.ops.neural.*``),
``panels`` (sidebar tab), ``handlers`` (stylize after render), ``models``
(model lists), ``job_queue``/``worker_client`` (the worker and its queue),
``image_bridge`` (Blender images <-> files), ``materials``, ``preview`` (live previews).
"""

from . import handlers, job_queue, models, operators, panels, preferences, preview, properties

# Registration order; unregister runs it backwards.
MODULES = (preferences, models, properties, operators, panels, handlers)


def register():
    for module in MODULES:
        module.register()


def unregister():
    preview.unregister()
    job_queue.shutdown()  # timer, worker process, temp files
    for module in reversed(MODULES):
        module.unregister()
