"""Operators, one module per concern; each usable from Python as ``bpy.ops.neural.*``."""

from . import dependencies, farm, jobs, style, texture, vae

MODULES = (texture, vae, style, farm, jobs, dependencies)


def register():
    for module in MODULES:
        module.register()


def unregister():
    for module in reversed(MODULES):
        module.unregister()
