"""Training the encoder of the GAN-prior texture VAE (``gan_prior.py``); the generator stays frozen.

Loss per step, on random crops (with flips) of labelled material exemplars, ``z = mean + sigma * eps``:

* L1 of the generator's coarse stage images (coarsest ``coarse_stages``) against the crop downscaled to
  each: the layout, which the canvas holds; the finer stages draw their own detail from noise, so they are
  judged by VGG19 instead:
* relu3_1/relu4_1 features of the output against the crop's (per-layer normalised L1) and the VGG19
  sliced-Wasserstein statistics of relu1_1..relu5_1 (``vaegan._feature_sw``);
* ``beta`` x KL of the noise channels against N(0, 1), the canvas the generator was trained on;
* cross-entropy of every cell's material logits against the crop's material (the decoder is given the crop's
  own material, ``teacher_forced_materials``, so the logits learn from this term alone).

Resumable like every training here: the state holds the encoder, its optimiser, the step, the random
streams and the generator it is trained against (so a GAN that trains on does not move under it). A resumed
run equals an uninterrupted one bit for bit on one CPU thread (the trainings' setting); on several, VGG19's
backward sums in a varying order and two runs drift apart by float rounding.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..common.checkpoints import (CheckpointError, fingerprint_arrays, load_training_state,
                                  save_model_and_state, sync_model_with_state)
from ..common.device import adam, clip_grad_norm, host_to_device, load_optimizer_state, pick_device, seeded_generator
from ..common.jobs import CancelToken, ProgressCallback, timed_training
from ..common.perception import TextureFeatures
from ..texture_gan.conditional import architecture_of, grows_parameters, stage_downscale
from .gan_prior import GANPriorVAEConfig, GANPriorVAENet
from .model import kl_divergence
from .ops import KIND
from .train import CropSampler, load_exemplars, training_state_path
from .vaegan import _feature_sw

RECIPE_FIELDS = ("beta", "coarse_weight", "perceptual_weight", "stats_weight", "label_weight", "coarse_stages",
                 "teacher_forced_materials", "crop_size", "batch_size", "vgg_samples", "lr", "grad_clip",
                 "augment_flips", "ema_decay")
PERCEPTUAL_LAYERS = (2, 3)  # relu3_1, relu4_1 of TextureFeatures: structure, not the detail noise draws


class LabelledCropSampler(CropSampler):
    """``CropSampler`` whose crops come with the index of the exemplar they were cut from."""

    def sample_labelled(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels, crops = zip(*(self.draw() for _ in range(batch)))
        return torch.stack(crops), host_to_device(torch.tensor(labels, device="cpu"), crops[0].device)  # pinned


def generator_from_checkpoint(path: str | Path) -> tuple[dict, list[str], dict[str, torch.Tensor], int | None]:
    """(architecture, materials, weights, training steps) of a conditional texture GAN file, validated as the
    texture GAN family loads it (``TextureGenerator.load``: kind, architecture limits, every weight's shape)."""
    from ..texture_gan import TextureGenerator

    gan = TextureGenerator.load(path, "cpu")
    if not hasattr(gan, "materials"):
        raise CheckpointError(f"{Path(path).name}: not a conditional (materials) texture GAN")
    weights = {k: v.detach().clone() for k, v in gan.generator.state_dict().items()}
    return gan.config["architecture"], list(gan.materials), weights, gan.config.get("steps")


def encoder_start(vae_path: str | Path, gan_architecture: dict, n_materials: int
                  ) -> tuple[dict, dict[str, torch.Tensor]]:
    """What a new GAN-prior VAE's encoder starts from: a trained one (``vae_path``, the bundled materials VAE) whose
    decoder is the GAN that ``gan_architecture``'s generator was fine-tuned from: (its config's encoder fields, its
    weights with the material logits' head rows fresh for ``n_materials``). The encoder already reads courses,
    cells and grain into the canvas those GANs share; only the materials are new (one logit each, at zero: the
    crops' own labels teach them)."""
    from ..common.checkpoints import load_checkpoint

    tensors, meta = load_checkpoint(Path(vae_path), expected_kind=KIND, device="cpu")
    config = meta.get("config") or {}
    if config.get("decoder") != GANPriorVAEConfig.decoder:
        raise CheckpointError(f"{Path(vae_path).name}: not a VAE that decodes through a materials GAN")
    trained = GANPriorVAEConfig.from_dict(config)
    if int(trained.gan["local_dim"]) != int(gan_architecture["local_dim"]):
        raise CheckpointError(f"{Path(vae_path).name}: its canvas has {trained.gan['local_dim']} noise channels, the "
                              f"generator {gan_architecture['local_dim']}")
    fields = {k: config[k] for k in ("base_channels", "encoder_mult", "res_blocks") if k in config}
    weights = {k.removeprefix("encoder."): v.float() for k, v in tensors.items() if k.startswith("encoder.")}
    noise = 2 * trained.local_dim  # the head's rows: noise means, noise log-variances, then one logit per material
    for key in [k for k in weights if k.startswith("head.")]:
        kept = weights[key][:noise]
        fresh = torch.zeros((n_materials, *kept.shape[1:]), dtype=kept.dtype, device=kept.device)
        weights[key] = torch.cat([kept, fresh])
    return fields, weights


class GANPriorTrainer:
    def __init__(self, cfg: GANPriorVAEConfig, images: list[np.ndarray], generator_weights: dict[str, torch.Tensor],
                 seed: int, device: torch.device):
        self.cfg, self.device = cfg, device
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = GANPriorVAENet(cfg)
        self.net.decoder.load_state_dict(generator_weights)
        self.net.decoder.requires_grad_(False)
        self.net.to(device)
        self.optimizer = adam(self.net.encoder.parameters(), device, lr=cfg.lr, betas=(0.9, 0.99))
        self.data_gen = seeded_generator(seed, "cpu")
        self.noise_gen = seeded_generator(seed + 1, "cpu")
        self.proj_gen = seeded_generator(seed + 2, "cpu")
        self.sampler = LabelledCropSampler(images, cfg.crop_size, self.data_gen, device, flips=cfg.augment_flips)
        self.net_f = TextureFeatures(device)
        self.encoder_average = self._copy(self.net.encoder.state_dict()) if cfg.ema_decay > 0 else None

    def _copy(self, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone().to(self.device) for k, v in weights.items()}

    def _update_average(self) -> None:
        """As the GAN's moving average (``texture_gan/train.py``); the encoder has parameters only."""
        current = self.net.encoder.state_dict()
        with torch.no_grad():
            torch._foreach_lerp_(list(self.encoder_average.values()), [current[k] for k in self.encoder_average],
                                 1.0 - self.cfg.ema_decay)

    def encoder_weights(self) -> dict[str, torch.Tensor]:
        """What the model file holds: the averaged encoder when the recipe averages, else the current one."""
        return self.encoder_average if self.encoder_average is not None else self.net.encoder.state_dict()

    def step(self) -> dict[str, torch.Tensor]:
        cfg, net = self.cfg, self.net
        net.encoder.train()
        batch, labels = self.sampler.sample_labelled(cfg.batch_size)
        mean, logvar, logits = net.encoder(batch)
        eps = host_to_device(torch.randn(mean.shape, generator=self.noise_gen, device="cpu"), mean.device)
        z = torch.cat([mean + torch.exp(0.5 * logvar) * eps, logits], 1)
        seed = int(torch.randint(2 ** 31 - 1, (1,), generator=self.noise_gen))
        forced = F.one_hot(labels, len(cfg.materials)).float() if cfg.teacher_forced_materials else None
        images = net.stage_images(z, seed, forced)
        targets = stage_downscale(batch, len(images))
        n_coarse = max(1, min(cfg.coarse_stages, len(images)))
        coarse = sum((images[i] - targets[i]).abs().mean() for i in range(n_coarse)) / n_coarse
        out = images[-1]
        k = max(1, min(cfg.vgg_samples, batch.shape[0]))
        with torch.no_grad():
            target_feats = self.net_f(batch[:k])
        out_feats = self.net_f(out[:k])
        perceptual = sum((out_feats[i] - target_feats[i]).abs().mean() / (target_feats[i].abs().mean() + 1e-8)
                         for i in PERCEPTUAL_LAYERS) / len(PERCEPTUAL_LAYERS)
        stats = _feature_sw(out_feats, target_feats, self.proj_gen, self.net_f)
        kl = kl_divergence(mean, logvar)
        h, w = logits.shape[-2:]
        label = F.cross_entropy(logits, labels[:, None, None].expand(-1, h, w))
        loss = (cfg.coarse_weight * coarse + cfg.perceptual_weight * perceptual + cfg.stats_weight * stats
                + cfg.beta * kl + cfg.label_weight * label)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            clip_grad_norm(net.encoder.parameters(), cfg.grad_clip)
        self.optimizer.step()
        if self.encoder_average is not None:
            self._update_average()
        return {"loss": loss.detach(), "coarse": coarse.detach(), "perceptual": perceptual.detach(),
                "stats": stats.detach(), "kl": kl.detach(), "label": label.detach()}

    def state(self) -> dict:
        return {"encoder": self.net.encoder.state_dict(), "decoder": self.net.decoder.state_dict(),
                "optimizer": self.optimizer.state_dict(), "data_gen": self.data_gen.get_state(),
                "noise_gen": self.noise_gen.get_state(), "proj_gen": self.proj_gen.get_state(),
                **({"encoder_average": self.encoder_average} if self.encoder_average is not None else {})}

    def load_state(self, state: dict) -> None:
        self.net.encoder.load_state_dict(state["encoder"])
        self.net.decoder.load_state_dict(state["decoder"])
        load_optimizer_state(self.optimizer, state["optimizer"])
        self.data_gen.set_state(state["data_gen"])
        self.noise_gen.set_state(state["noise_gen"])
        self.proj_gen.set_state(state["proj_gen"])
        if self.encoder_average is not None:
            # A state saved before the recipe averaged starts its average at the encoder it trained.
            self.encoder_average = self._copy(state.get("encoder_average") or self.net.encoder.state_dict())


def train_gan_prior_vae(exemplars: Sequence[str | Path | np.ndarray], generator_path: str | Path,
                        out_path: str | Path, steps: int | None = None, *, minutes: float | None = None,
                        config: GANPriorVAEConfig | None = None, seed: int = 0, device=None,
                        state_path: str | Path | None = None, progress: ProgressCallback | None = None,
                        cancel: CancelToken | None = None, checkpoint_minutes: float = 4.0,
                        name: str | None = None, extra_meta: dict | None = None, rebase: bool = False,
                        initial_encoder: dict[str, torch.Tensor] | None = None) -> dict:
    """Train (or continue) the encoder onto ``generator_path``'s canvas; ``exemplars`` are the generator's
    materials, in its order. Stops at ``steps`` or after ``minutes``, always with a checkpoint. A resumed run
    keeps the generator saved in its state, unless ``rebase``: then a ``generator_path`` trained for more steps
    than the state's generator (same architecture and materials) replaces it, and the encoder continues from
    where it was (the GAN trains on in its own sessions; the VAE follows it). ``initial_encoder``: encoder weights
    (``encoder_start``) a fresh run starts from instead of random ones. Returns {"steps", "seconds", "losses"}."""
    if steps is None and minutes is None:
        raise ValueError("give steps, minutes or both")
    began = time.perf_counter()
    out = Path(out_path)
    dev = pick_device(device)
    images = load_exemplars(exemplars)
    state_path = Path(state_path) if state_path is not None else training_state_path(out)
    state = load_training_state(state_path, "cpu") if state_path.exists() else None
    if state is not None:
        # The state's architecture; the given config's loss weights and optimisation settings (a recipe may
        # change between sessions; the weights it trained stay).
        given = {k: v for k, v in config.to_dict().items() if k in RECIPE_FIELDS} if config is not None else {}
        cfg = GANPriorVAEConfig.from_dict({**state["config"], **given})
        generator_weights, generator_steps = state["decoder"], state.get("generator_steps")
        if rebase and generator_path is not None and Path(generator_path).is_file():
            arch, materials, newer, newer_steps = generator_from_checkpoint(generator_path)
            arch, trained_against = architecture_of(arch), architecture_of(cfg.gan)
            if grows_parameters(trained_against, arch) and materials == cfg.materials:
                trained_against = arch  # the GAN grew cell patterns or lattice inputs: gates start at zero
                cfg = GANPriorVAEConfig.from_dict({**cfg.to_dict(), "gan": arch})
            if arch != trained_against or materials != cfg.materials:
                raise CheckpointError(f"{Path(generator_path).name}: not the architecture or materials the encoder "
                                      "was trained against; start a new training to use it")
            if (newer_steps is not None and (generator_steps is None or int(newer_steps) > int(generator_steps))) \
                    or set(newer) != set(generator_weights):  # grown: the state's generator lacks the patterns
                generator_weights, generator_steps = newer, newer_steps
    else:
        arch, materials, generator_weights, generator_steps = generator_from_checkpoint(generator_path)
        base = config.to_dict() if config is not None else {}
        cfg = GANPriorVAEConfig.from_dict({**base, "gan": arch, "materials": materials})
    if len(images) != len(cfg.materials):
        raise ValueError(f"the generator has {len(cfg.materials)} materials; got {len(images)} exemplars")
    fingerprint = fingerprint_arrays(images)
    trainer = GANPriorTrainer(cfg, images, generator_weights, seed, dev)
    step, losses, trained_seconds = 0, {}, 0.0
    if state is None and initial_encoder is not None:
        trainer.net.encoder.load_state_dict(initial_encoder)
    if state is not None:
        if state.get("fingerprint") != fingerprint or state.get("seed") != seed:
            raise CheckpointError(f"{state_path.name} was trained on other exemplars or settings; delete it to "
                                  "start over")
        trainer.load_state({**state, "decoder": generator_weights})  # the state's generator, or the one rebased onto
        step = int(state["step"])
        losses = dict(state.get("losses", {}))
        trained_seconds = float(state.get("trained_seconds", 0.0))

    def save(at_step: int, seconds: float, losses: dict) -> None:
        meta = {"config": cfg.to_dict(), "name": name or out.stem, "steps": at_step, "seed": seed,
                "data_fingerprint": fingerprint, "exemplar_count": len(images), "device": str(dev),
                "training_seconds": round(seconds, 1),
                "recipe": "encoder onto the materials GAN's canvas (the generator frozen as the decoder)"
                          + (f"; the encoder's moving average (decay {cfg.ema_decay})" if cfg.ema_decay > 0 else ""),
                "generator_steps": generator_steps,
                **(extra_meta or {})}
        tensors = {f"encoder.{k}": v for k, v in trainer.encoder_weights().items()}
        tensors.update({f"decoder.{k}": v for k, v in trainer.net.decoder.state_dict().items()})
        save_model_and_state(out, tensors, meta, KIND, state_path,
                             {"step": at_step, "seed": seed, "fingerprint": fingerprint, "config": cfg.to_dict(),
                              "losses": losses, "trained_seconds": seconds, "generator_steps": generator_steps,
                              **trainer.state()})

    if state is not None:
        sync_model_with_state(out, "steps", step, lambda s: save(s, trained_seconds, losses))
    result = timed_training(trainer.step, save, step, steps, minutes, began, losses, trained_seconds,
                            checkpoint_minutes=checkpoint_minutes, name=out.name, progress=progress, cancel=cancel,
                            message="training the GAN-prior texture VAE", diverged=FloatingPointError)
    trainer.net.eval()
    return result
