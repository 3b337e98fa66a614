"""Interactive feedback: the live preview follows the settings (debounced, stale jobs cancelled) and
More Like This makes the next family of variations around a chosen one."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

bpy = pytest.importorskip("bpy")


def _run_timers_until(condition, timeout=60.0):
    """Drive the add-on's timers as Blender's event loop would."""
    from blender_addon import job_queue, preview
    deadline = time.monotonic() + timeout
    while not condition():
        if bpy.app.timers.is_registered(preview.tick):
            delay = preview.tick()
            if delay is None:
                bpy.app.timers.unregister(preview.tick)
        job_queue.poll_timer()
        assert time.monotonic() < deadline, "the preview did not arrive"
        time.sleep(0.02)


def test_live_preview_follows_the_seed_and_drops_stale_jobs(tiny_models):
    from blender_addon import job_queue, models, preview
    settings = bpy.context.scene.neural_texture
    models.choose(settings, tiny_models["texture_gan"])
    assert bpy.ops.neural.worker_diagnostics() == {"FINISHED"}  # a warm worker, as while an artist works
    settings.live_preview = True
    try:
        _run_timers_until(lambda: preview.latest_path and preview._job is not None and not preview._job.active)
        first = preview.latest_path
        settings.seed += 1
        settings.seed += 1  # two quick changes: one job, after the quiet period
        changed = time.monotonic()
        _run_timers_until(lambda: preview.latest_path != first)
        latency = time.monotonic() - changed
        assert Path(preview.latest_path).is_file() and not Path(first).exists()  # the old preview went away
        assert preview._job.params["seed"] == settings.seed
        print(f"live preview latency {latency:.2f} s")
        assert latency < 5.0  # about a second on an idle CPU; margin for a shared machine

        settings.seed += 1
        _run_timers_until(lambda: preview._job.params["seed"] == settings.seed)  # submitted
        stale = preview._job
        settings.variation = 0.5
        _run_timers_until(lambda: preview._job is not stale)
        assert stale.state in ("cancelled", "done") or stale.message == "cancelling..."
        _run_timers_until(lambda: not preview._job.active)
        assert preview._job.state == "done" and preview._job.params["variation"] == 0.5
    finally:
        settings.live_preview = False
        settings.variation = 0.0
    job_queue.poll_timer()


def test_more_like_this_centres_the_next_family_on_a_variation(tiny_models, helpers):
    from blender_addon import models
    vae = bpy.context.scene.neural_vae
    models.choose(vae, tiny_models["texture_vae"])
    source = helpers.image("family source", "wood", 48)
    assert bpy.ops.neural.vae_variations(image=source.name, count=2, seed=0) == {"FINISHED"}
    vae.count = 2
    chosen = bpy.data.images["family source Variation 2"]
    assert bpy.ops.neural.more_like_this(image=chosen.name) == {"FINISHED"}
    assert vae.image == chosen and vae.seed == 2
    family = {"family source Variation 2 Variation 1", "family source Variation 2 Variation 2"}
    assert family <= set(bpy.data.images.keys())
