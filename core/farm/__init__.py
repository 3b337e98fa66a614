"""Render-farm execution: Ray clusters (this package) and Flamenco 3 (``farm/flamenco`` job type).

Both run the engine-neutral chunk contract of ``core.style.chunks``: any
worker stylizes any range ``START-END`` of an animation, starting cold ``W``
frames earlier, and writes its frames atomically under the single-machine
names. Ray is an optional extra (``pip install -r requirements-farm.txt``):
nothing here imports it until a farm run starts.

* ``ray_pool.RayPool``: one long-lived actor per GPU (or CPU slot) that keeps
  its model loaded, a queue of tasks, retries on a dead worker, cancel.
* ``ray_style.stylize_on_ray``: an animation in chunks over the pool.
* ``ray_texture.run_texture_batch``: many materials at many sizes over the pool.
"""

RAY_INSTALL_HINT = ("Ray is not installed: it is an optional extra for render farms. Install it into the Python "
                    "that runs the core with 'python -m pip install -r requirements-farm.txt' (the version this "
                    "project tests, ray==2.60.0), on every machine of the cluster")


def require_ray():
    """The ``ray`` module, or an ImportError that says how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError(RAY_INSTALL_HINT) from exc
    return ray
