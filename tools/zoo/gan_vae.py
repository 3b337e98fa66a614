"""The materials VAE whose decoder is the materials GAN (``python build.py models --only gan_vae --minutes N``).

An encoder onto the conditional GAN's canvas (``core/texture_vae/gan_prior.py``): the generator is frozen and
copied into the model, so variations are new arrangements at the GAN's sharpness. A fresh training starts from
the GAN model beside it (``models/training/materials_gan.safetensors``; write it from the GAN's committed state
with ``--only gan --minutes 0``); a resumed one continues its own state
(``models/training/gan_vae.train.safetensors``, committed), moving onto that GAN file when it has trained for more
steps than the generator in the state (the encoder then follows the GAN's progress). The model goes to
``models/training/materials_gan_vae.safetensors`` (git-ignored) and its entry to the manifest's ``training``
list; ``tools/ship_materials.py`` bundles a float16 copy as ``models/texture_vae/materials.safetensors``. The ``tiny`` profile trains against a tiny random generator (tests, the GPU rehearsal).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from . import MODELS, ROOT, _common
from .gan import MATERIALS, load_materials
from .gan import model_path as gan_model_path

PROFILES = ("cpu", "gpu", "tiny")
NAME = "materials_gan_vae"
KEY = "gan_vae"
SEED = 29


BUNDLED = "texture_vae/materials.safetensors"  # the bundled float16 copy, under models/ (tools/ship_materials.py)


def model_path(out_dir: Path = MODELS) -> Path:
    return Path(out_dir) / "training" / f"{NAME}.safetensors"


def measured_model(out_dir: Path = MODELS) -> tuple[Path | None, str]:
    """The bundled copy, else the training's model: (path, "bundled" | "in training") or (None, why not)."""
    return _common.bundled_or_training(out_dir, BUNDLED, find_model)


def find_model(out_dir: Path = MODELS) -> tuple[Path | None, str]:
    """(the model file, "") or (None, why not): for the benches."""
    return _common.find_model(model_path(out_dir), _common.state_path(out_dir, KEY), KEY)


def profile_settings(profile: str) -> dict:
    if profile == "cpu":
        # No mirrored crops from encoder step 83,704 (the forty-fourth session), as the GAN it decodes through
        # (tools/zoo/gan.py): that GAN draws its materials lit as their exemplars are.
        # The model file holds the encoder averaged over ~500 steps from step 86,188 (the forty-fifth session): at
        # the constant rate the one-pass score read 1.121, 1.238, 1.219 and 1.141 at 84,514, 85,804, 85,942 and
        # 86,188 steps; the average 1.154 at 86,684 and at 87,185 (raw 1.190, 1.229).
        return {"config": {"crop_size": 128, "batch_size": 6, "vgg_samples": 1, "augment_flips": False,
                           "ema_decay": 0.998},
                "materials": MATERIALS, "exemplar_side": None}
    if profile == "gpu":
        return {"config": {"crop_size": 192, "batch_size": 32, "vgg_samples": 8, "augment_flips": False,
                           "ema_decay": 0.998},
                "materials": MATERIALS, "exemplar_side": None}
    if profile == "tiny":
        return {"config": {"base_channels": 4, "encoder_mult": (1, 2), "crop_size": 16, "batch_size": 2,
                           "vgg_samples": 1, "ema_decay": 0.998},  # as the gpu profile: the rehearsal runs its path
                "materials": MATERIALS[:2], "exemplar_side": 48}
    raise SystemExit(f"gan_vae: unknown profile {profile!r}; known: {', '.join(PROFILES)}")


def _tiny_generator(out_dir: Path, materials) -> Path:
    """A tiny random conditional generator to train the tiny encoder against (seconds, no GAN training)."""
    from core.common.checkpoints import save_checkpoint
    from core.texture_gan.conditional import ConditionalGANConfig, build_conditional

    cfg = ConditionalGANConfig(n_materials=len(materials), g_channels=(8, 4, 4), g_convs=(1, 1, 1),
                               d_channels=(4, 8), local_dim=4, global_dim=4, periodic_dim=2)
    g, _ = build_conditional(cfg, SEED)
    path = Path(out_dir) / "training" / f"{NAME}_tiny_generator.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, g.state_dict(), {"architecture": cfg.architecture(), "materials": [m[0] for m in materials],
                                           "version": 2, "name": "tiny generator"}, "texture_gan")
    return path


def generator_source(out_dir: Path, profile: str, materials) -> Path:
    """The GAN a fresh training starts from: beside it, else the CPU-trained one under ``models``."""
    if profile == "tiny":
        return _tiny_generator(out_dir, materials)
    for candidate in (gan_model_path(out_dir), gan_model_path(MODELS)):
        if candidate.is_file():
            return candidate
    raise SystemExit(f"gan_vae: no materials GAN to start from ({gan_model_path(MODELS)} is missing); write it "
                     "with `python build.py models --only gan --minutes 0`")


def train(minutes: float, device: str = "cpu", profile: str = "cpu", out_dir: Path = MODELS,
          warm_start: Path | None = None, max_steps: int | None = None) -> dict:
    # warm_start is not used: a resumed training continues its own state, which holds its generator.
    sys.path.insert(0, str(ROOT))
    from core.texture_vae.gan_prior import GANPriorVAEConfig
    from core.texture_vae.gan_prior_train import train_gan_prior_vae

    settings = profile_settings(profile)
    materials = settings["materials"]
    out_dir = Path(out_dir)
    state_path = _common.writable_state_path(out_dir, KEY)
    if not state_path.exists() and out_dir != MODELS and _common.state_path(MODELS, KEY).is_file() \
            and profile != "tiny":  # a lent GPU continues the committed CPU state
        import shutil
        shutil.copyfile(_common.state_path(MODELS, KEY), state_path)
    if state_path.exists():  # continue; onto a GAN trained further since, when there is one
        generator = next((c for c in (gan_model_path(out_dir), gan_model_path(MODELS)) if c.is_file()), None)
    else:
        generator = generator_source(out_dir, profile, materials)
    result = train_gan_prior_vae(load_materials(materials, settings["exemplar_side"]), generator, model_path(out_dir),
                                 max_steps, minutes=minutes, config=GANPriorVAEConfig(**settings["config"]),
                                 seed=SEED, device=device, state_path=state_path, name=NAME,
                                 checkpoint_minutes=0.05 if profile == "tiny" else 4.0,
                                 rebase=profile != "tiny" and minutes > 0,  # --minutes 0 only writes the state's model
                                 extra_meta={"materials": [m[0] for m in materials], "profile": profile})
    return record(out_dir, device, minutes, result["losses"])


def write_thumbnail(path: Path, materials, cell: int = 48) -> Path:
    """``NAME.png`` beside the model: a variation of each material's exemplar in a square grid."""
    from core.texture_vae import load_texture_vae

    vae = load_texture_vae(path, "cpu")
    tiles = [vae.vary(a[:2 * cell, :2 * cell], 0.5, seed=0, width=cell, height=cell)
             for a in load_materials(materials, None)]
    return _common.save_grid(path.with_suffix(".png"), tiles)


def record(out_dir: Path = MODELS, device: str = "cpu", minutes: float | None = None, losses: dict | None = None) -> dict:
    """The manifest entry of the model now in ``out_dir`` (see ``gan.record``)."""
    from core.common.checkpoints import read_checkpoint_config

    out_dir = Path(out_dir)
    path = model_path(out_dir)
    config = read_checkpoint_config(path)
    materials = [m for m in MATERIALS if m[0] in config.get("materials", [])]
    thumbnail = write_thumbnail(path, materials)
    return _common.materials_entry(
        out_dir, path, thumbnail, config, materials, key=KEY, name=NAME,
        label="Materials VAE (decoder: the materials GAN)", kind="texture_vae",
        recipe=("encoder onto the materials GAN's canvas, generator frozen; the file holds the encoder's ~500-step "
                "moving average from step 86,188 (core/texture_vae/gan_prior_train.py)"),
        seed=SEED, device=device, minutes=minutes, losses=losses)


def evaluate(model_dir: Path, device: str = "cpu", profile: str = "cpu") -> dict:
    """The VAE under ``model_dir``, per material: variations (strength 0.5) of a fixed crop, their VGG19
    sliced-Wasserstein distance to the exemplar over the exemplar's own random crops' and their gradient energy
    over the crop's (the bench's VAE rows; tools/model_quality.py). ``score``: ``material_score`` (the mean
    ratio plus any shortfall of sharpness below 0.85; lower is better). Materials and sizes: ``gan.eval_settings``."""
    path = model_path(Path(model_dir))
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no GAN-prior materials VAE in {model_dir}")
    return evaluate_file(path, device, profile)


def evaluate_file(path: Path, device: str = "cpu", profile: str = "cpu", seeds: int | None = None,
                  refine_steps: int = 0, only: Sequence[str] | None = None, first_seed: int = 0) -> dict:
    """``evaluate`` of one texture VAE file (any kind ``load_texture_vae`` reads); ``refine_steps``: the
    variations' latent refinement (``TextureVAE.refine``; 0, the default: the encoder's one pass, quick, for the
    training's snapshots; the panel, the bench and ``tools/ship_materials.py`` use 30); ``only``: these
    materials; ``first_seed``: the variations' seeds start there (their source crops, one per seed, stay the
    same)."""
    import numpy as np
    import torch

    from core.common.checkpoints import read_checkpoint_config
    from core.texture_vae import load_texture_vae
    from tools import model_quality as quality

    from .gan import eval_settings

    settings = eval_settings(profile, seeds)
    torch.manual_seed(0)
    vae = load_texture_vae(path, device)
    # The VAE is not conditional: a material it never trained on is missing, not merely badly varied.
    config = read_checkpoint_config(path)
    trained_on = config.get("materials")
    rows = []
    for (name, _, _), exemplar in zip(settings["materials"], load_materials(settings["materials"],
                                                                           settings["exemplar_side"])):
        if only is not None and name not in only:
            continue
        if trained_on is not None and name not in trained_on:
            rows.append({"material": name, "missing": True})
            continue
        size = min(exemplar.shape[:2]) // 2
        judge, base = quality.texture_baseline(name, exemplar, size, device)
        sources = quality.source_crops(exemplar, size, settings["seeds"])  # one per seed
        varied = [vae.vary(source, quality.VARY_STRENGTH, seed=first_seed + s, refine_steps=refine_steps)
                  for s, source in enumerate(sources)]
        ratio, grad_energy = quality.variation_figures(varied, sources, judge, base)
        rows.append({"material": name, "crop_px": size, "ratio": ratio, "grad_energy": grad_energy,
                     # the sharpness (over the whole photograph's); the score keeps the stricter one above
                     "exemplar_grad_energy": quality.exemplar_sharpness(varied, exemplar),
                     # what the sources themselves read: a variation keeps its source's layout
                     "sources_ratio": float(np.mean([judge(source) for source in sources])) / base})
    return {"score": quality.material_score(rows), "steps": config.get("steps"), "rows": rows}
