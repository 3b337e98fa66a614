"""Tileable texture GAN (periodic spatial GAN): train on 1..N exemplars, generate any size.

Public API::

    TextureGANConfig
    train_texture_gan(exemplars, out_path, steps, *, config=None, seed=0, device=None,
                      progress=None, cancel=None, checkpoint_every=200, resume=True) -> Path
    TextureGenerator.load(path, device=None).generate(width, height, seed=0, tileable=True,
                                                       variation=0.0, tile_size=None)
    load_texture_gan(path, device=None) -> TextureGenerator
    generate_texture(model, width, height, seed=0, tileable=True, variation=0.0, device=None)
"""

from .generate import KIND, TextureGenerator, generate_texture, load_texture_gan
from .model import TextureGANConfig
from .train import train_texture_gan, training_state_path

__all__ = ["KIND", "TextureGANConfig", "TextureGenerator", "generate_texture", "load_texture_gan",
           "train_texture_gan", "training_state_path"]
