"""The bundled materials VAE, trained as a VAE-GAN (``python build.py models --only vae --minutes N``).

Same materials as the conditional GAN (``tools/zoo/gan.py``). Its training state is
``models/training/vae.train.safetensors`` (committed, never packaged). Like the GAN it is not yet at quality,
so not a bundled default: the model (an ordinary texture VAE file) goes beside its state, to
``models/training/materials_vaegan.safetensors`` (git-ignored, rewritten from the state with
``build.py models --only vae --minutes 0``), and its manifest entry to the manifest's ``training`` list.
"""

from __future__ import annotations

import sys
from pathlib import Path

from . import MODELS, ROOT, _common
from .gan import MATERIALS, load_materials

PROFILES = ("cpu", "gpu", "tiny")
NAME = "materials_vaegan"
SEED = 23


def model_path(out_dir: Path = MODELS) -> Path:
    """Where the training writes the model (beside its state: not a bundled default yet)."""
    return Path(out_dir) / "training" / "materials_vaegan.safetensors"


def find_model(out_dir: Path = MODELS) -> tuple[Path | None, str]:
    """(the model file, "") or (None, why not): for the benches and tools/eval_materials.py."""
    return _common.find_model(model_path(out_dir), _common.state_path(out_dir, "vae"), "vae")


def profile_settings(profile: str) -> dict:
    # cpu and gpu fine-tune the previous bundled VAE (same architecture; 500 steps on procedural exemplars):
    # on 2 shared cores a VAE-GAN from scratch would not get far in one session.
    previous = MODELS / "texture_vae" / "materials.safetensors"
    tuned = {"crop_size": 64, "batch_size": 6, "lr": 5e-4, "adversarial_from": 150}
    if profile == "cpu":
        return {"config": tuned, "materials": MATERIALS, "exemplar_side": None, "init_from": previous}
    if profile == "gpu":
        return {"config": {**tuned, "crop_size": 128, "batch_size": 24}, "materials": MATERIALS,
                "exemplar_side": None, "init_from": previous}
    if profile == "tiny":
        return {"config": {"base_channels": 4, "channel_mult": (1, 2), "latent_channels": 2, "crop_size": 16,
                           "batch_size": 2, "stats_features": "random", "adversarial_from": 2,
                           "d_channels": (4, 8)},
                "materials": MATERIALS[:2], "exemplar_side": 48, "init_from": None}
    raise SystemExit(f"vae: unknown profile {profile!r}; known: {', '.join(PROFILES)}")


def train(minutes: float, device: str = "cpu", profile: str = "cpu", out_dir: Path = MODELS,
          warm_start: Path | None = None, max_steps: int | None = None) -> dict:
    # max_steps: a fixed length (tests compare trainings of known lengths); None: minutes alone
    sys.path.insert(0, str(ROOT))
    from core.texture_vae.vaegan import VAEGANConfig, train_vae_gan

    settings = profile_settings(profile)
    materials = settings["materials"]
    state_path = _common.writable_state_path(out_dir, "vae")
    result = train_vae_gan(load_materials(materials, settings["exemplar_side"]), model_path(out_dir), max_steps,
                           minutes=minutes,
                           config=VAEGANConfig(**settings["config"]), seed=SEED, device=device,
                           state_path=state_path, warm_start=warm_start, name=NAME,
                           init_from=settings["init_from"] if settings["init_from"] and settings["init_from"].exists()
                           else None,
                           checkpoint_minutes=0.05 if profile == "tiny" else 4.0,
                           extra_meta={"materials": [m[0] for m in materials], "profile": profile})
    return record(out_dir, device, minutes, result["losses"])


def write_thumbnail(model_path: Path, materials, cell: int = 48) -> Path:
    """``NAME.png`` beside the model: a variation of each material's exemplar in a square grid."""
    from core.texture_vae import load_texture_vae

    vae = load_texture_vae(model_path, "cpu")
    tiles = [vae.vary(a[:2 * cell, :2 * cell], 0.5, seed=0, width=cell, height=cell)
             for a in load_materials(materials, None)]
    return _common.save_grid(model_path.with_suffix(".png"), tiles)


def record(out_dir: Path = MODELS, device: str = "cpu", minutes: float | None = None, losses: dict | None = None) -> dict:
    """The manifest entry of the model now in ``out_dir``, from its checkpoint (see ``gan.record``)."""
    from core.common.checkpoints import read_checkpoint_config

    out_dir = Path(out_dir)
    path = model_path(out_dir)
    config = read_checkpoint_config(path)
    materials = [m for m in MATERIALS if m[0] in config.get("materials", [])]
    fine_tuned = config.get("profile", "cpu") != "tiny"
    thumbnail = write_thumbnail(path, materials)
    return _common.materials_entry(
        out_dir, path, thumbnail, config, materials, key="vae", name=NAME, label="Materials VAE (sharp, VAE-GAN)",
        kind="texture_vae",
        recipe="VAE-GAN: L1 + KL + VGG19 statistics + perceptual + adversarial decoder (core/texture_vae/vaegan.py)"
               + ("; fine-tuned from texture_vae/materials.safetensors" if fine_tuned else ""),
        seed=SEED, device=device, minutes=minutes, losses=losses)


def evaluate(model_dir: Path, device: str = "cpu", profile: str = "cpu") -> dict:
    """The VAE under ``model_dir``, per material: variations (strength 0.5) of a fixed crop, their VGG19
    sliced-Wasserstein distance to the exemplar over the exemplar's own random crops' and their gradient energy
    over the crop's (the bench's VAE-GAN rows; tools/model_quality.py). ``score``: ``material_score`` (the mean
    ratio plus any shortfall of sharpness below 0.85; lower is better). Materials and sizes: ``gan.eval_settings``."""
    path = model_path(Path(model_dir))
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no materials VAE in {model_dir}")
    return evaluate_file(path, device, profile)


def evaluate_file(path: Path, device: str = "cpu", profile: str = "cpu") -> dict:
    """``evaluate`` of one texture VAE file (any kind ``load_texture_vae`` reads)."""
    import numpy as np
    import torch

    from core.common.checkpoints import read_checkpoint_config
    from core.texture_vae import load_texture_vae
    from tools import model_quality as quality

    from .gan import eval_settings

    settings = eval_settings(profile)
    torch.manual_seed(0)
    vae = load_texture_vae(path, device)
    # The VAE is not conditional: a material it never trained on is missing, not merely badly varied.
    config = read_checkpoint_config(path)
    trained_on = config.get("materials")
    rows = []
    for (name, _, _), exemplar in zip(settings["materials"], load_materials(settings["materials"],
                                                                           settings["exemplar_side"])):
        if trained_on is not None and name not in trained_on:
            rows.append({"material": name, "missing": True})
            continue
        size = min(exemplar.shape[:2]) // 2
        judge, base = quality.texture_baseline(name, exemplar, size, settings["seeds"], device)
        source = quality.crops(exemplar, size, 1, 7)[0]
        varied = [vae.vary(source, quality.VARY_STRENGTH, seed=s) for s in range(settings["seeds"])]
        rows.append({"material": name, "crop_px": size,
                     "ratio": float(np.mean([judge(v) for v in varied])) / base,
                     "grad_energy": float(np.mean([quality.gradient_energy(v) for v in varied]))
                     / quality.gradient_energy(source)})
    return {"score": quality.material_score(rows), "steps": config.get("steps"), "rows": rows}
