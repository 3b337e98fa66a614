"""*Train From Image* for a Variation Model: a VAE of the artist's own texture that decodes through a GAN.

The plain VAE (``train.py``) learns its decoder from the image alone and draws blurred dots: a decoder that
stays sharp takes a GAN's training, which a CPU cannot give one image in minutes. This recipe reuses the
bundled pair instead, in two phases over the given steps:

1. the first three quarters fine-tune the bundled materials GAN to the exemplars (``texture_gan.distill``'s
   ``train_one_material`` with ``start_from``, what *Train From Image* runs for a texture generator: each
   exemplar a material, courses, cells and grain already learnt), written beside the model as
   ``NAME.generator.safetensors`` (a working file, with its own state; the library does not list it);
2. the last quarter trains an encoder onto that generator's canvas (``gan_prior_train``), starting from the
   bundled materials VAE's encoder, which already reads layouts into the canvas the two GANs share.

The model is an ordinary GAN-prior texture VAE (the generator's weights inside it): variations, *More Like
This* and blends between the exemplars (each a material) as with the bundled Materials VAE. Resumable: a run
given more steps trains the generator on first and the encoder then moves onto it (``rebase``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..common.checkpoints import CheckpointError
from ..common.jobs import CancelToken, ProgressCallback, part_progress
from .gan_prior import GANPriorVAEConfig
from .gan_prior_train import RECIPE_FIELDS, encoder_start, generator_from_checkpoint, train_gan_prior_vae
from .train import load_exemplars, training_state_path

GENERATOR_SUFFIX = ".generator.safetensors"


def bundled_variation_path() -> Path:
    """The bundled materials VAE (models/texture_vae/materials.safetensors): whose encoder a new one starts from."""
    return Path(__file__).resolve().parents[2] / "models" / "texture_vae" / "materials.safetensors"


def generator_path(out_path: str | Path) -> Path:
    """The fine-tuned generator beside a Variation Model ``out_path`` (its decoder while it trains)."""
    out = Path(out_path)
    return out.with_name(out.name.removesuffix(".safetensors") + GENERATOR_SUFFIX)


def phase_steps(steps: int) -> tuple[int, int]:
    """(generator fine-tune steps, encoder steps) of a run of ``steps``: three quarters and a quarter, the generator
    first. The generator is what must learn the new texture; the encoder starts from a trained one (and Refine
    Steps fit its reading at use). On two tune photographs (a red brick wall, dark stone blocks; 400 steps, one
    training seed, 30 Refine Steps, 3 seeds) half each read 2.06 / 1.84, three quarters 1.60 / 1.81, seven
    eighths 1.61 / 1.60."""
    if steps < 2:
        raise ValueError("a Variation Model from an image trains at least 2 steps: most fine-tune the generator, "
                         "the rest train its encoder")
    generator = 3 * steps // 4  # from 2 steps on, each phase gets at least one
    return generator, steps - generator


def variation_config(fields: dict | None, start_from_vae: str | Path | None = None) -> dict:
    """A job's or the CLI's config fields for this recipe: the encoder's loss weights and optimisation settings
    (``gan_prior_train.RECIPE_FIELDS``); its architecture is the bundled encoder's, so any other field is refused.
    Checked over that encoder's config (when it is there) before a step runs, not after the generator's phase."""
    from ..common.checkpoints import read_checkpoint_config

    fields = dict(fields or {})
    unknown = sorted(set(fields) - set(RECIPE_FIELDS))
    if unknown:
        raise ValueError(f"config fields {', '.join(unknown)} do not apply to a Variation Model fine-tuned from the "
                         f"bundled ones; it takes {', '.join(RECIPE_FIELDS)}")
    path = Path(start_from_vae) if start_from_vae is not None else bundled_variation_path()
    if fields and path.is_file():
        GANPriorVAEConfig.from_dict({**read_checkpoint_config(path).get("config", {}), **fields})
    return fields


def train_variation_model(exemplars: Sequence[str | Path | np.ndarray], out_path: str | Path, steps: int, *,
                          config: dict | None = None, seed: int = 0, device=None,
                          progress: ProgressCallback | None = None, cancel: CancelToken | None = None,
                          checkpoint_every: int = 200, resume: bool = True, start_from: str | Path | None = None,
                          start_from_vae: str | Path | None = None, generator_config: dict | None = None,
                          tiles: int = 4) -> Path:
    """Train (or continue) a Variation Model of ``exemplars`` (each one material) at ``out_path``; signature of
    ``train_texture_vae``. ``start_from`` / ``start_from_vae``: the materials GAN to fine-tune and the VAE whose
    encoder starts the new one (default: the bundled pair). ``config``: ``variation_config`` fields;
    ``generator_config`` and ``tiles``: the fine-tune's (``train_one_material``'s; default its recipe)."""
    from ..texture_gan.distill import bundled_materials_path, train_one_material
    from ..texture_gan.start_trials import remove_trials

    out = Path(out_path)
    generator = generator_path(out)
    exemplars = [exemplars] if isinstance(exemplars, (str, Path, np.ndarray)) else list(exemplars)
    load_exemplars(exemplars)  # an unreadable image is named first, before any other complaint
    gan_steps, encoder_steps = phase_steps(int(steps))
    start_from = Path(start_from) if start_from is not None else bundled_materials_path()
    start_from_vae = Path(start_from_vae) if start_from_vae is not None else bundled_variation_path()
    for path, what in ((start_from, "materials GAN"), (start_from_vae, "materials VAE")):
        if not path.is_file():
            raise FileNotFoundError(f"the {what} a Variation Model is fine-tuned from ({path}) is missing, so there "
                                    "is nothing to start from; reinstall the add-on, or train with the Plain VAE "
                                    "recipe")
    fields = variation_config(config, start_from_vae)
    if not resume:
        for path in (out, training_state_path(out), generator, training_state_path(generator)):
            path.unlink(missing_ok=True)
        remove_trials(generator)
    elif training_state_path(out).is_file() and not generator.is_file():
        # A plain VAE's training of the same name (this recipe writes its generator before its own state): say so
        # now, not after the generator's phase.
        raise CheckpointError(f"{out.name} is a plain VAE's training; give the new model another name or start "
                              "over (Resume off)")
    every_minutes = 4.0 if checkpoint_every >= 200 else 0.5
    total = gan_steps + encoder_steps  # each phase's fraction done (the fine-tune counts its start trials too)
    train_one_material(exemplars, generator, gan_steps, config=generator_config, seed=seed, device=device,
                       cancel=cancel, tiles=tiles,
                       progress=part_progress(progress, 0, total, "fine-tuning the generator", gan_steps),
                       checkpoint_every=checkpoint_every, resume=True, start_from=start_from)
    architecture, materials, _, _ = generator_from_checkpoint(generator)
    encoder_fields, encoder = encoder_start(start_from_vae, architecture, len(materials))
    cfg = GANPriorVAEConfig.from_dict({**encoder_fields, **fields, "gan": architecture, "materials": materials})
    train_gan_prior_vae(exemplars, generator, out, encoder_steps, config=cfg, seed=seed, device=device,
                        progress=part_progress(progress, gan_steps, total, "training the encoder", encoder_steps),
                        cancel=cancel, checkpoint_minutes=every_minutes, rebase=True, initial_encoder=encoder,
                        extra_meta={"recipe": "Variation Model from an image: the bundled materials GAN fine-tuned "
                                              "to it as the decoder, the bundled encoder fine-tuned onto it",
                                    "started_from": [start_from.name, start_from_vae.name]})
    return out
