"""Operators, one module per concern; each usable from Python as ``bpy.ops.neural.*``."""

from . import dependencies, jobs, style, texture, vae

MODULES = (texture, vae, style, jobs, dependencies)


def register():
    for module in MODULES:
        module.register()


def unregister():
    for module in reversed(MODULES):
        module.unregister()
