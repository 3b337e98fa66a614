"""Job queue controls: cancel, clear, stop the worker (frees GPU memory), check the worker."""

from __future__ import annotations

import bpy
from bpy.props import StringProperty

from .. import job_queue, models
from .common import finish


def _manager_poll(test):
    """An operator poll that holds once the job manager exists and ``test(manager)`` is true."""
    return classmethod(lambda cls, context: job_queue._manager is not None and bool(test(job_queue._manager)))


class NEURAL_OT_cancel_job(bpy.types.Operator):
    """Cancel a queued or running job (training keeps its last checkpoint)"""
    bl_idname = "neural.cancel_job"
    bl_label = "Neural Textures: Cancel Job"

    job_id: StringProperty(name="Job", description="Job id; empty cancels every active job")

    poll = _manager_poll(lambda manager: manager.active_jobs)

    def execute(self, context):
        manager = job_queue.manager()
        ids = [self.job_id] if self.job_id else [j.id for j in manager.active_jobs]
        cancelled = [job_id for job_id in ids if job_queue.cancel(job_id)]
        if not cancelled:
            self.report({"WARNING"}, "No active job to cancel")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Cancelling {len(cancelled)} job(s)")
        return {"FINISHED"}


class NEURAL_OT_clear_jobs(bpy.types.Operator):
    """Remove finished jobs from the list"""
    bl_idname = "neural.clear_jobs"
    bl_label = "Neural Textures: Clear Finished Jobs"

    poll = _manager_poll(lambda manager: any(not j.active for j in manager.jobs.values()))

    def execute(self, context):
        job_queue.manager().clear_finished()
        return {"FINISHED"}


class NEURAL_OT_stop_worker(bpy.types.Operator):
    """Stop the background worker: cancels running jobs (checkpoints are kept) and frees its GPU memory"""
    bl_idname = "neural.stop_worker"
    bl_label = "Neural Textures: Stop Worker"

    poll = _manager_poll(lambda manager: manager.worker_running)

    def execute(self, context):
        was_running = job_queue.manager().worker_running
        job_queue.stop_worker()
        self.report({"INFO"}, "Worker stopped; its memory is freed" if was_running else "The worker was not running")
        return {"FINISHED"}


class NEURAL_OT_worker_diagnostics(bpy.types.Operator):
    """Start the worker and report its Python, PyTorch and GPU"""
    bl_idname = "neural.worker_diagnostics"
    bl_label = "Neural Textures: Check Worker"

    @classmethod
    def poll(cls, context):
        return True  # always possible: starts the worker when needed

    def execute(self, context):
        def on_done(job):
            if job.state == "done":
                job_queue.set_diagnostics(job.result)
                job.outputs["summary"] = job_queue.diagnostics_text().replace("\n", "; ")
            else:
                job_queue.set_diagnostics({"error": job.error})

        job = job_queue.submit("diagnostics", {}, label="Check worker", on_done=on_done)
        result = finish(self, job)
        if job.state == "done" and not job.result.get("torch"):
            self.report({"WARNING"}, job.result.get("torch_error", "PyTorch is missing"))
        return result


class NEURAL_OT_refresh_models(bpy.types.Operator):
    """Re-read the model library folders"""
    bl_idname = "neural.refresh_models"
    bl_label = "Neural Textures: Refresh Models"

    @classmethod
    def poll(cls, context):
        return True

    def execute(self, context):
        models.refresh()
        return {"FINISHED"}


classes = (NEURAL_OT_cancel_job, NEURAL_OT_clear_jobs, NEURAL_OT_stop_worker, NEURAL_OT_worker_diagnostics,
           NEURAL_OT_refresh_models)
register, unregister = bpy.utils.register_classes_factory(classes)
