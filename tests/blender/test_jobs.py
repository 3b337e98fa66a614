"""Background jobs: the main thread stays free, progress arrives, cancel keeps the checkpoint."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

TINY_GAN = {"local_dim": 4, "global_dim": 2, "periodic_dim": 2, "g_channels": [16, 8], "d_channels": [8, 16],
            "crop_size": 16, "batch_size": 2, "preview_every": 1, "preview_size": 16}


def _exemplar(tmp_path):
    from core.common.procedural import make_exemplar
    path = tmp_path / "exemplar.npy"
    np.save(path, (make_exemplar("bricks", 48) * 255).astype(np.uint8))
    return str(path)


def _drive_timer(job, timeout=120.0):
    """Call the timer function the way Blender's event loop would; measure each call."""
    from blender_addon import job_queue
    durations, steps_seen, main_thread_ticks = [], set(), 0
    deadline = time.monotonic() + timeout
    interval = job_queue.POLL_INTERVAL_ACTIVE
    while interval is not None:
        start = time.perf_counter()
        interval = job_queue.poll_timer()
        durations.append(time.perf_counter() - start)
        steps_seen.add(job.step)
        # the main thread keeps doing its own work between timer calls
        bpy.context.scene.frame_current = main_thread_ticks % 50 + 1
        main_thread_ticks += 1
        assert time.monotonic() < deadline, f"job still {job.state} after {timeout} s"
        time.sleep(0.01)
    return durations, steps_seen, main_thread_ticks


def test_background_job_completes_while_main_thread_services_timers(tiny_models, tmp_path):
    from blender_addon import job_queue
    from blender_addon.worker_client import Job
    done = []
    out = tmp_path / "async.safetensors"
    job = job_queue.submit("texture_gan.train",
                           {"exemplars": [_exemplar(tmp_path)], "out_path": str(out), "steps": 6,
                            "config": TINY_GAN, "resume": False},
                           label="async train", on_done=done.append, wait=False)
    assert isinstance(job, Job) and job.active
    assert bpy.app.timers.is_registered(job_queue.poll_timer)  # Blender would call it; we drive it
    manager = job_queue.manager()
    applied, apply_event = [], manager._apply  # every event the timer applies, however fast they come
    manager._apply = lambda event, client: applied.append(event) or apply_event(event, client)
    try:
        # Conditions, not seconds: a timer call that waited for the job would return with the job over.
        assert job_queue.poll_timer() is not None and job.active, "the first timer call waited for the job"
        durations, steps_seen, ticks = _drive_timer(job)
    finally:
        del manager._apply
    assert job.state == "done", job.error
    assert done == [job] and out.is_file()
    progress = sorted({e["step"] for e in applied if e.get("event") == "progress" and e.get("id") == job.id})
    assert set(range(1, 7)) <= set(progress), progress  # every step's progress reached the add-on
    assert job.preview and job.preview.endswith(".png")
    print(f"{ticks} main-thread ticks, steps seen while polling {sorted(steps_seen)}, "
          f"longest timer call {max(durations):.3f} s")  # speeds: printed, not asserted
    assert job_queue.poll_timer() is None  # idle: the timer unregisters itself
    bpy.app.timers.unregister(job_queue.poll_timer)


def test_cancel_stops_training_and_keeps_a_loadable_checkpoint(tiny_models, tmp_path):
    from blender_addon import job_queue
    out = tmp_path / "cancelled.safetensors"
    job = job_queue.submit("texture_gan.train",
                           {"exemplars": [_exemplar(tmp_path)], "out_path": str(out), "steps": 100000,
                            "config": TINY_GAN, "resume": False, "checkpoint_every": 1000},
                           label="to cancel", wait=False)
    deadline = time.monotonic() + 60
    while job.step < 2:
        job_queue.poll_timer()
        assert time.monotonic() < deadline and job.active, job.error
        time.sleep(0.02)
    assert bpy.ops.neural.cancel_job(job_id=job.id) == {"FINISHED"}
    _drive_timer(job, timeout=60)
    bpy.app.timers.unregister(job_queue.poll_timer) if bpy.app.timers.is_registered(job_queue.poll_timer) else None
    assert job.state == "cancelled" and job.step < 100000
    assert job.result.get("model") == str(out) and out.is_file()
    from core.texture_gan import load_texture_gan
    model = load_texture_gan(out, device="cpu")  # the checkpoint written on cancel loads
    assert model.generate(16, 16, seed=0).shape == (16, 16, 3)


def test_cancel_operator_handles_queued_and_running_jobs(tiny_models):
    """Cancel a queued job and then every active job through the operator; the worker keeps serving."""
    from blender_addon import job_queue
    long = job_queue.submit("selftest", {"steps": 200, "delay": 0.01}, label="busy", wait=False)
    queued = job_queue.submit("selftest", {"steps": 1}, label="queued", wait=False)
    assert bpy.ops.neural.cancel_job(job_id=queued.id) == {"FINISHED"}
    assert bpy.ops.neural.cancel_job() == {"FINISHED"}  # no id: every active job
    _drive_timer(long, timeout=30)
    assert {long.state, queued.state} == {"cancelled"}
    bpy.app.timers.unregister(job_queue.poll_timer) if bpy.app.timers.is_registered(job_queue.poll_timer) else None
    assert bpy.ops.neural.generate_texture(width=32, height=32, make_material=False, name="after cancel") \
        == {"FINISHED"}


def test_stop_worker_ends_the_process_and_restarts_on_demand(tiny_models):
    from blender_addon import job_queue
    assert bpy.ops.neural.worker_diagnostics() == {"FINISHED"}
    assert "PyTorch 2." in job_queue.diagnostics_text()
    process = job_queue.manager().client.proc
    assert bpy.ops.neural.stop_worker() == {"FINISHED"}
    assert process.poll() is not None and not job_queue.manager().worker_running
    assert bpy.ops.neural.generate_texture(width=32, height=32, make_material=False, name="restarted") \
        == {"FINISHED"}
    assert job_queue.manager().client.proc.pid != process.pid


def test_training_resumes_under_the_same_name(tiny_models, helpers, user_dir):
    from core.library import read_model_header
    helpers.image("resume exemplar", "stones", 48)
    args = dict(kind="texture_gan", image="resume exemplar", model_name="resumed", config=json.dumps(TINY_GAN),
                recipe="DISTILLED")
    assert bpy.ops.neural.train_texture_model(steps=2, resume=False, **args) == {"FINISHED"}
    path = user_dir / "models" / "resumed.safetensors"
    assert read_model_header(path)["steps"] == 2
    assert bpy.ops.neural.train_texture_model(steps=3, resume=True, **args) == {"FINISHED"}
    assert read_model_header(path)["steps"] == 3  # continued in place, not a new file
    assert not (user_dir / "models" / "resumed_2.safetensors").exists()
    assert bpy.ops.neural.train_texture_model(steps=2, resume=False, **args) == {"FINISHED"}
    assert (user_dir / "models" / "resumed_2.safetensors").is_file()  # no resume: never overwrites
