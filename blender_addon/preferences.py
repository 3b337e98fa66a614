"""Add-on preferences: device, model library, worker Python, dependency installer."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty

from . import core_access

ADDON_ID = __package__


def user_dir(sub: str) -> Path:
    """A writable per-user folder for this add-on (survives add-on updates)."""
    override = os.environ.get("NEURAL_TEXTURES_USER_DIR")
    if override:
        path = Path(override) / sub
    elif ADDON_ID.startswith("bl_ext."):
        path = Path(bpy.utils.extension_path_user(ADDON_ID, path=sub, create=True))
    else:  # development checkout enabled as a legacy add-on
        path = Path(bpy.utils.user_resource("SCRIPTS", path=os.path.join("addons_data", "neural_textures", sub)))
    path.mkdir(parents=True, exist_ok=True)
    return path


def deps_dir() -> Path:
    """Private folder the installer puts PyTorch into (on the worker's PYTHONPATH)."""
    return user_dir("deps")


def results_dir() -> Path:
    """Where results live as files before they are packed on save (or for good, with External results)."""
    return user_dir("results")


class _Defaults:
    """Stand-in with the default values when the add-on's preferences are not registered."""
    device = "AUTO"
    library_dir = ""
    worker_python = ""
    worker_threads = 0
    torch_variant = "CPU"
    keep_worker = True
    result_storage = "PACK"


def get_prefs(context=None):
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_ID)
    return addon.preferences if addon is not None and addon.preferences is not None else _Defaults()


def library_dir(context=None) -> Path:
    prefs = get_prefs(context)
    folder = bpy.path.abspath(prefs.library_dir) if prefs.library_dir else ""
    path = Path(folder) if folder else user_dir("models")
    path.mkdir(parents=True, exist_ok=True)
    return path


def worker_python(context=None) -> str:
    prefs = get_prefs(context)
    return bpy.path.abspath(prefs.worker_python) if prefs.worker_python else sys.executable


def worker_device(context=None) -> str:
    return get_prefs(context).device.lower()


class NEURAL_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    device: EnumProperty(
        name="Device",
        description="Where models run. Auto picks a CUDA GPU when PyTorch sees one, else the CPU",
        items=[("AUTO", "Auto", "CUDA GPU if available, else Apple MPS, else CPU"),
               ("CUDA", "CUDA GPU", "NVIDIA GPU (needs a CUDA build of PyTorch)"),
               ("MPS", "Apple GPU", "Apple Silicon GPU (Metal)"),
               ("CPU", "CPU", "Slow for training, fine for small textures")],
        default="AUTO")
    library_dir: StringProperty(
        name="Model Library", subtype="DIR_PATH",
        description="Folder where trained models are saved and listed (empty: the add-on's user folder)")
    worker_python: StringProperty(
        name="Worker Python", subtype="FILE_PATH",
        description="Python that runs the models (empty: Blender's own). Point it at a Python with a CUDA "
                    "build of PyTorch to keep that outside Blender")
    worker_threads: IntProperty(
        name="CPU Threads", min=0, max=256, default=0,
        description="PyTorch CPU threads in the worker (0: PyTorch's default)")
    torch_variant: EnumProperty(
        name="PyTorch Build", description="Which PyTorch the installer downloads",
        items=[("CPU", "CPU", "Smaller download, runs everywhere"),
               ("CUDA", "CUDA 12", "For NVIDIA GPUs (large download)")],
        default="CPU")
    keep_worker: BoolProperty(
        name="Keep Worker Running", default=True,
        description="Keep models loaded between jobs (faster); off stops the worker after each job, "
                    "freeing GPU memory")

    result_storage: EnumProperty(
        name="Results",
        description="Where generated and stylized images are kept when the .blend is saved",
        items=[("PACK", "Pack on Save", "Packed into the .blend when saving (the file carries them)"),
               ("EXTERNAL", "External Files", "Kept as image files in the add-on's results folder "
                                             "(smaller .blend; the files must travel with it)")],
        default="PACK")

    def draw(self, context):
        from . import job_queue
        from .operators import dependencies as dependencies_state
        layout = self.layout
        col = layout.column()
        col.prop(self, "device")
        col.prop(self, "library_dir")
        col.prop(self, "result_storage")
        row = col.row(align=True)
        row.label(text=f"Bundled models: {core_access.models_dir()}", icon="ASSET_MANAGER")

        box = layout.box()
        box.label(text="Worker", icon="CONSOLE")
        box.prop(self, "worker_python")
        box.prop(self, "worker_threads")
        box.prop(self, "keep_worker")
        row = box.row(align=True)
        row.operator("neural.worker_diagnostics", text="Check Worker", icon="INFO")
        row.operator("neural.stop_worker", text="Stop Worker", icon="CANCEL")
        info = job_queue.diagnostics_text()
        if info:
            for line in info.splitlines():
                box.label(text=line)

        box = layout.box()
        box.label(text="Dependencies", icon="PACKAGE")
        box.label(text=f"Private folder: {deps_dir()}")
        box.prop(self, "torch_variant")
        state = dependencies_state.STATE
        row = box.row()
        row.enabled = not state.running
        row.operator("neural.install_dependencies", text="Install PyTorch", icon="IMPORT")
        if not bpy.app.online_access:
            box.label(text="Online access is off (Preferences > System > Network): the installer is disabled",
                      icon="ERROR")
        if state.running or state.message:
            box.label(text=state.message, icon="SORTTIME" if state.running else
                      ("CHECKMARK" if state.ok else "ERROR"))
            for line in state.tail[-3:]:
                box.label(text=line)


classes = (NEURAL_AP_preferences,)
register, unregister = bpy.utils.register_classes_factory(classes)
