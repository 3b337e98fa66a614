"""Host-independent core: texture GAN, texture VAE and neural style models.

Pure Python + PyTorch + numpy + Pillow. Never imports bpy: the Blender add-on
(``blender_addon/``) talks to this package through its public functions or
through the worker process (``core.worker``).

Imports inside the package are relative so it also works vendored inside the
Blender extension (``bl_ext.<repo>.<addon>.core``).
"""

__version__ = "0.1.0"
