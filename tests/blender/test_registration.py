"""Enable/disable twice: everything the add-on adds appears, and nothing is left behind."""

from __future__ import annotations

import time

import pytest

bpy = pytest.importorskip("bpy")
import addon_utils  # noqa: E402

ADDON = "blender_addon"
SCENE_PROPS = ("neural_texture", "neural_train", "neural_vae", "neural_style")
OPERATORS = ("generate_texture", "make_material", "train_texture_model", "vae_variations", "vae_blend",
             "stylize_image", "stylize_animation", "train_style_model", "cancel_job", "clear_jobs", "stop_worker",
             "worker_diagnostics", "refresh_models", "install_dependencies")


def _all_addon_classes() -> list[type]:
    from blender_addon import operators, panels, preferences, properties
    classes = [*preferences.classes, *properties.classes, *panels.classes]
    for module in operators.MODULES:
        classes += module.classes
    return classes


def _our_classes() -> set[str]:
    """Names of our classes registered with Blender (bpy.types entries and PropertyGroups/preferences)."""
    names = {name for name in dir(bpy.types) if name.startswith(("NEURAL_", "Neural"))}
    return names | {cls.__name__ for cls in _all_addon_classes() if cls.is_registered}


def _our_handlers() -> list:
    found = []
    for name in ("render_init", "render_post", "render_complete", "render_pre", "load_post", "save_pre",
                 "depsgraph_update_post", "frame_change_post"):
        found += [f for f in getattr(bpy.app.handlers, name) if getattr(f, "__module__", "").startswith(ADDON)]
    return found


def _timers_registered() -> bool:
    from blender_addon import handlers, job_queue, preview
    from blender_addon.operators import dependencies
    return any(bpy.app.timers.is_registered(f)
               for f in (job_queue.poll_timer, handlers._deferred, dependencies._check_done, preview.tick))


def test_enable_disable_twice_leaves_nothing(addon):
    for _ in range(2):
        addon_utils.disable(ADDON, default_set=True)
        assert _our_classes() == set()
        assert not any(hasattr(bpy.types.Scene, p) for p in SCENE_PROPS)
        assert not hasattr(bpy.types.WindowManager, "neural_ui")
        assert _our_handlers() == [] and not _timers_registered()
        assert ADDON not in bpy.context.preferences.addons

        assert addon_utils.enable(ADDON, default_set=True) is not None
        classes = _our_classes()
        assert {"NEURAL_AP_preferences", "NEURAL_PT_view3d_generate", "NEURAL_PT_image_jobs",
                "NEURAL_PT_node_style", "NeuralTextureSettings", "NEURAL_OT_generate_texture"} <= classes
        assert classes == {cls.__name__ for cls in _all_addon_classes()}
        assert all(hasattr(bpy.types.Scene, p) for p in SCENE_PROPS)
        assert all(hasattr(bpy.ops.neural, op) for op in OPERATORS)
        assert len(_our_handlers()) == 4  # render init/post/complete, pack results on save
        from blender_addon import panels
        assert panels.draw_status_bar in bpy.types.STATUSBAR_HT_header._dyn_ui_initialize()
        from blender_addon import handlers
        assert handlers.on_render_complete in bpy.app.handlers.render_complete
        assert hasattr(handlers.on_render_complete, "_bpy_persistent")

        # start the worker and the polling timer, then disable: both must go
        from blender_addon import job_queue
        job = job_queue.submit("selftest", {"steps": 1000, "delay": 0.01}, label="long", wait=False)
        assert bpy.app.timers.is_registered(job_queue.poll_timer)
        process = job_queue.manager().client.proc
        assert process.poll() is None
        started = time.perf_counter()
        addon_utils.disable(ADDON, default_set=True)
        print(f"disabling took {time.perf_counter() - started:.2f} s")  # printed: a speed, not a condition
        assert process.poll() is not None, "the worker process outlived the add-on"
        assert not bpy.app.timers.is_registered(job_queue.poll_timer)
        # Waiting for the job would have let it finish: its 1000 steps sleep 10 ms each, on any CPU.
        assert job.state == "cancelled" and job.step < 1000, "disabling the add-on waited for the job"
        assert _our_classes() == set() and _our_handlers() == []
        assert not any(getattr(f, "__module__", "").startswith(ADDON)
                       for f in bpy.types.STATUSBAR_HT_header._dyn_ui_initialize())
        addon_utils.enable(ADDON, default_set=True)
    prefs = bpy.context.preferences.addons[ADDON].preferences
    prefs.device, prefs.worker_threads = "CPU", 1
