"""Blender tests: real Blender through the ``bpy`` module, real worker, tiny CPU models.

The add-on is enabled once per session (``addon_utils.enable`` with the repo
root on sys.path, as a development checkout). Tiny models are trained once,
through the add-on's own operators, and shared by every test.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")
import addon_utils  # noqa: E402  (part of bpy's bundled modules)

ROOT = Path(__file__).resolve().parents[2]
ADDON = "blender_addon"

TINY_GAN = {"local_dim": 4, "global_dim": 2, "periodic_dim": 2, "g_channels": [16, 8], "d_channels": [8, 16],
            "crop_size": 16, "batch_size": 2, "preview_every": 1, "preview_size": 16}
TINY_VAE = {"base_channels": 8, "channel_mult": [1, 2], "latent_channels": 4, "crop_size": 32, "batch_size": 2}
TINY_STYLE = {"base_channels": 4, "residual_blocks": 1, "image_size": 32, "batch_size": 1, "style_size": 64,
              "generated_frames": 2}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/blender" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.blender)


@pytest.fixture(scope="session")
def user_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("neural_user")
    os.environ["NEURAL_TEXTURES_USER_DIR"] = str(folder)
    os.environ["NEURAL_TEXTURES_DEVICE"] = "cpu"
    return folder


@pytest.fixture(scope="session")
def addon(user_dir):
    module = addon_utils.enable(ADDON, default_set=True)
    assert module is not None, "the add-on failed to register (see the traceback above)"
    prefs = bpy.context.preferences.addons[ADDON].preferences
    prefs.device = "CPU"
    prefs.worker_threads = 1
    yield module
    addon_utils.disable(ADDON, default_set=True)


def procedural_image(name: str, kind: str = "bricks", size: int = 64, seed: int = 0):
    from blender_addon import image_bridge
    from core.common.procedural import make_exemplar
    return image_bridge.image_from_array(make_exemplar(kind, size, seed).astype(np.float32), name, linear=False)


def pixels(image) -> np.ndarray:
    buffer = np.empty(len(image.pixels), np.float32)
    image.pixels.foreach_get(buffer)
    return buffer.reshape(image.size[1], image.size[0], image.channels)


@pytest.fixture(scope="session")
def helpers():
    """Plain helper functions for the tests (test modules are not a package here)."""
    class Helpers:
        image = staticmethod(procedural_image)
        pixels = staticmethod(pixels)
    return Helpers


@pytest.fixture(scope="session")
def tiny_models(addon, user_dir):
    """Train a tiny texture GAN, texture VAE and style model through the operators (CPU, few steps)."""
    procedural_image("exemplar bricks", "bricks")
    procedural_image("exemplar wood", "wood")
    assert bpy.ops.neural.train_texture_model(kind="texture_gan", image="exemplar bricks", model_name="tiny gan",
                                              steps=2, config=json.dumps(TINY_GAN), resume=False,
                                              recipe="SPATIAL") == {"FINISHED"}
    assert bpy.ops.neural.train_texture_model(kind="texture_vae", image="exemplar bricks", model_name="tiny vae",
                                              steps=2, config=json.dumps(TINY_VAE), resume=False,
                                              variation_recipe="PLAIN") == {"FINISHED"}
    style = procedural_image("style painting", "rust", size=64)
    assert bpy.ops.neural.train_style_model(style_image=style.name, name="tiny style", steps=2,
                                            config=json.dumps(TINY_STYLE)) == {"FINISHED"}
    library = user_dir / "models"
    paths = {kind: library / f"{name}.safetensors"
             for kind, name in (("texture_gan", "tiny_gan"), ("texture_vae", "tiny_vae"), ("style", "tiny_style"))}
    for path in paths.values():
        assert path.is_file(), path
    return paths
