"""A texture VAE that stays sharp: VAE-GAN training (Larsen et al. 2016) with perceptual terms.

L1 and KL alone teach the decoder the mean of what a latent could be: blur. Beside the VAE's own
terms (``train.VAETrainer``: L1, KL, VGG19 texture statistics of reconstructions and of decoded
perturbed latents) this trainer adds, on the decoder:

* a **perceptual** term: VGG19 features of each reconstruction against its crop's (relu1_1..relu4_1,
  per layer normalised), which keeps edges where L1 settles for their average;
* an **adversarial** term: a spectrally normalised PatchGAN scores crops against reconstructions
  *and* decodings of perturbed latents (what ``vary`` and ``blend`` make), so both stay as crisp as
  the crops; it starts after ``adversarial_from`` steps, once reconstructions are close.

Same resumable state as the plain VAE (model, optimisers, step, random streams), plus the
discriminator and its optimiser; time-budgeted (``minutes``). Its materials model was trained by ``tools/zoo/vae.py``
until the GAN-prior VAE (``gan_prior.py``) replaced it (its state is in the git history, commit e26e047).
The recipe stays for VAEs trained on other exemplars.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..common.accelerate import mark_training_step
from ..common.checkpoints import (CheckpointError, fingerprint_arrays, load_training_state, save_model_and_state,
                                  sync_model_with_state)
from ..common.device import adam, clip_grad_norm, host_to_device, load_optimizer_state, pick_device
from ..common.jobs import CancelToken, ProgressCallback, timed_training
from ..common.patchgan import PatchDiscriminator
from .model import TextureVAEConfig, kl_divergence
from .ops import KIND, variation_scale
from ..common.quality import sliced_wasserstein_per_sample
from .train import STATS_PROJECTIONS, VAETrainer, load_exemplars, stats_directions, training_state_path

PERCEPTUAL_LAYERS = 4  # relu1_1..relu4_1 of the texture features (relu5_1 is too coarse for 64 px crops)


@dataclass
class VAEGANConfig(TextureVAEConfig):
    """The VAE's config plus the decoder's perceptual and adversarial terms (training fields only)."""

    perceptual_weight: float = 0.5
    adversarial_weight: float = 0.05
    adversarial_from: int = 600
    lr_d: float = 2e-4
    d_channels: tuple[int, ...] = (32, 64, 128)
    # Of the batch, this many get the VGG19 terms (statistics, variation statistics, perceptual): VGG19 costs
    # ~50x the VAE itself per crop on a CPU; L1, KL and the adversarial term still see the whole batch.
    vgg_samples: int = 1

    def to_dict(self):
        d = super().to_dict()
        d["d_channels"] = list(self.d_channels)
        return d

    @classmethod
    def from_dict(cls, data):
        data = dict(data)
        if "d_channels" in data:
            data["d_channels"] = tuple(int(c) for c in data["d_channels"])
        return super().from_dict(data)


def _feature_sw(feats: list[torch.Tensor], target_feats: list[torch.Tensor], gen: torch.Generator, net_f,
                directions: list[torch.Tensor] | None = None) -> torch.Tensor:
    """``train._stats_loss`` on features already computed (the perceptual term shares them). ``directions``:
    drawn beforehand (``train.stats_directions``), else from ``gen`` here."""
    directions = directions if directions is not None else stats_directions(target_feats, gen)
    total = feats[0].new_zeros(())
    for fo, ft, dirs in zip(feats, target_feats, directions):
        scale = ft.pow(2).mean() + 1e-8 if getattr(net_f, "normalize", False) else 1.0
        total = total + sliced_wasserstein_per_sample(fo, ft, STATS_PROJECTIONS, directions=dirs).sum() / scale
    return total / (fo.shape[0] * len(feats))


class VAEGANTrainer(VAETrainer):
    """``VAETrainer`` plus a discriminator; ``step()`` trains both (constant learning rates)."""

    def __init__(self, cfg: VAEGANConfig, images: list[np.ndarray], seed: int, device: torch.device):
        super().__init__(cfg, images, seed, device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 7)
            self.d = PatchDiscriminator(cfg.d_channels).to(device)
        self.opt_d = adam(self.d.parameters(), device, lr=cfg.lr_d, betas=(0.5, 0.99))
        self.steps_done = 0

    def step(self, step: int | None = None, steps: int | None = None) -> dict[str, torch.Tensor]:
        mark_training_step()  # CUDA graph trees (common/accelerate.py): a new step begins
        cfg, dev, net = self.cfg, self.device, self.net
        net.train()
        batch = self.sampler.sample(cfg.batch_size)
        recon, mean, logvar = net(batch, self.noise_gen)
        eps = host_to_device(torch.randn(mean.shape, generator=self.noise_gen, device="cpu"), dev)
        varied = net.decode(mean + cfg.variation_strength * variation_scale(mean.detach()) * eps)
        rec_loss = (recon - batch).abs().mean()
        kl = kl_divergence(mean, logvar)
        k = max(1, min(cfg.vgg_samples, batch.shape[0]))  # the sampler draws crops at random: any k will do
        with torch.no_grad():
            target_feats = self.net_f(batch[:k])
        recon_feats = self.net_f(recon[:k])
        directions = stats_directions(target_feats, self.proj_gen, terms=2)  # both terms' draws, one copy
        stats = _feature_sw(recon_feats, target_feats, self.proj_gen, self.net_f, directions[:len(target_feats)])
        vstats = _feature_sw(self.net_f(varied[:k]), target_feats, self.proj_gen, self.net_f,
                             directions[len(target_feats):])
        perceptual = sum((fr - ft).abs().mean() / (ft.abs().mean() + 1e-8)
                         for fr, ft in zip(recon_feats[:PERCEPTUAL_LAYERS], target_feats[:PERCEPTUAL_LAYERS]))
        perceptual = perceptual / PERCEPTUAL_LAYERS
        loss = (rec_loss + cfg.beta * kl + cfg.stats_weight * stats + cfg.variation_stats_weight * vstats
                + cfg.perceptual_weight * perceptual)
        losses = {"l1": rec_loss.detach(), "kl": kl.detach(), "stats": stats.detach(), "vary_stats": vstats.detach(),
                  "perceptual": perceptual.detach()}
        if self.steps_done >= cfg.adversarial_from and cfg.adversarial_weight > 0:
            fakes = torch.cat([recon, varied])
            loss_d = F.softplus(-self.d(batch)).mean() + F.softplus(self.d(fakes.detach())).mean()
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_d.step()
            g_adv = F.softplus(-self.d(fakes)).mean()
            loss = loss + cfg.adversarial_weight * g_adv
            losses["d"], losses["g_adv"] = loss_d.detach(), g_adv.detach()
        losses["loss"] = loss.detach()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            clip_grad_norm(net.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.steps_done += 1
        self.batch, self.recon = batch, recon.detach()
        return losses

    def state(self) -> dict:
        return {"model": self.net.state_dict(), "optimizer": self.optimizer.state_dict(), "d": self.d.state_dict(),
                "opt_d": self.opt_d.state_dict(), "data_gen": self.data_gen.get_state(),
                "noise_gen": self.noise_gen.get_state(), "proj_gen": self.proj_gen.get_state()}

    def load_state(self, state: dict, step: int) -> None:
        self.net.load_state_dict(state["model"])
        load_optimizer_state(self.optimizer, state["optimizer"])
        self.d.load_state_dict(state["d"])
        load_optimizer_state(self.opt_d, state["opt_d"])
        self.data_gen.set_state(state["data_gen"])
        self.noise_gen.set_state(state["noise_gen"])
        self.proj_gen.set_state(state["proj_gen"])
        self.steps_done = step


def train_vae_gan(exemplars: Sequence[str | Path | np.ndarray], out_path: str | Path, steps: int | None = None, *,
                  minutes: float | None = None, config: VAEGANConfig | None = None, seed: int = 0, device=None,
                  state_path: str | Path | None = None, warm_start: str | Path | None = None,
                  progress: ProgressCallback | None = None, cancel: CancelToken | None = None,
                  checkpoint_minutes: float = 4.0, name: str | None = None, extra_meta: dict | None = None,
                  init_from: str | Path | None = None) -> dict:
    """Train (or continue) a VAE-GAN; stops at ``steps`` or after ``minutes``, always with a checkpoint.

    The model file is an ordinary texture VAE (``TextureVAE.load`` reads it). Returns {"steps", "seconds",
    "losses"} (seconds: the total training time over all sessions). ``init_from``: a texture VAE model file
    of the same architecture whose weights start a run that has no state yet (fine-tuning an older VAE).
    """
    if steps is None and minutes is None:
        raise ValueError("give steps, minutes or both")
    began = time.perf_counter()
    out = Path(out_path)
    dev = pick_device(device)
    cfg = config or VAEGANConfig()
    cfg.validate()
    images = load_exemplars(exemplars)
    fingerprint = fingerprint_arrays(images)
    trainer = VAEGANTrainer(cfg, images, seed, dev)
    state_path = Path(state_path) if state_path is not None else training_state_path(out)
    step, losses, trained_seconds = 0, {}, 0.0
    if init_from is not None and not state_path.exists() and warm_start is None:
        from ..common.checkpoints import load_checkpoint
        tensors, _ = load_checkpoint(init_from, expected_kind=KIND, device="cpu")
        trainer.net.load_state_dict(tensors)
    source = state_path if state_path.exists() else (Path(warm_start) if warm_start is not None else None)
    if source is not None:
        state = load_training_state(source, "cpu")
        if source == state_path and (state.get("fingerprint") != fingerprint or state.get("config") != cfg.to_dict()
                                     or state.get("seed") != seed):
            raise CheckpointError(f"{state_path.name} was trained on other exemplars or settings; delete it to "
                                  "start over")
        if source == state_path:
            trainer.load_state(state, int(state["step"]))
        else:  # warm start: the weights and the step, fresh optimisers for the other sizes
            trainer.net.load_state_dict(state["model"])
            trainer.d.load_state_dict(state["d"])
            trainer.steps_done = int(state["step"])
        step = int(state["step"])
        losses = dict(state.get("losses", {}))
        trained_seconds = float(state.get("trained_seconds", 0.0))

    def save(at_step: int, seconds: float, losses: dict) -> None:
        meta = {"config": cfg.to_dict(), "name": name or out.stem, "steps": at_step, "seed": seed,
                "data_fingerprint": fingerprint, "exemplar_count": len(images), "device": str(dev),
                "training_seconds": round(seconds, 1), "recipe": "VAE-GAN (perceptual + adversarial decoder)",
                **(extra_meta or {})}
        save_model_and_state(out, trainer.net.state_dict(), meta, KIND, state_path,
                             {"step": at_step, "seed": seed, "fingerprint": fingerprint, "config": cfg.to_dict(),
                              "losses": losses, "trained_seconds": seconds, **trainer.state()})

    if state_path.exists():
        sync_model_with_state(out, "steps", step, lambda s: save(s, trained_seconds, losses))
    result = timed_training(trainer.step, save, step, steps, minutes, began, losses, trained_seconds,
                            checkpoint_minutes=checkpoint_minutes, name=out.name, progress=progress, cancel=cancel,
                            message="training texture VAE-GAN", diverged=FloatingPointError)
    trainer.net.eval()
    return result
