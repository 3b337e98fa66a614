"""Texture VAE: variations of a texture and blends between textures.

A small convolutional VAE with a spatial latent grid (one cell per 8x8 pixels
by default) and circular padding everywhere, so it encodes and decodes any size
and its output tiles. ``TextureVAE.vary`` perturbs an encoded texture's latents
(seeded, with a strength knob); ``TextureVAE.blend`` interpolates several
textures' latents, globally or through a mask painted over the surface.
"""

from .model import TextureVAEConfig, TextureVAENet
from .ops import TextureVAE, fit_latents, load_texture_vae
from .train import train_texture_vae

__all__ = ["TextureVAEConfig", "TextureVAENet", "TextureVAE", "train_texture_vae", "load_texture_vae",
           "fit_latents"]
