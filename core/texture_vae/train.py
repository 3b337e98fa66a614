"""Training the texture VAE on a few exemplar images.

Loss per step, on a batch of random crops (with random horizontal/vertical
flips) of the exemplars:

* L1 reconstruction;
* ``beta`` x KL(q(z|x) || N(0, 1)) per latent element;
* ``stats_weight`` x sliced-Wasserstein distance between the texture statistics
  (fixed random-filter features, ``core.common.quality``) of each reconstruction
  and its crop: sharpens what L1 alone blurs;
* ``variation_stats_weight`` x the same distance for the decoding of perturbed
  latents (as ``TextureVAE.vary`` makes them): teaches the decoder that nearby
  latents are still textures, not mush.

Every random draw (crops, flips, reparameterisation noise, projections) comes
from seeded generators saved with the optimizer in ``NAME.train.safetensors``,
so a resumed run reproduces an uninterrupted one exactly.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..common.accelerate import compile_in_place, compiled_features, mark_training_step, worth_compiling
from ..common.checkpoints import (
    fingerprint_arrays, load_training_state, save_model_and_state, sync_model_with_state,
)
from ..common.crops import flipped_crop, flipped_versions
from ..common.device import adam, autocast, clip_grad_norm, host_to_device, load_optimizer_state, pick_device, seeded_generator
from ..common.images import ImageError, from_tensor, load_rgb
from ..common.jobs import CancelToken, DivergenceMonitor, JobCancelled, ProgressCallback, check_cancel, report
from ..common.perception import TextureFeatures
from ..common.quality import draw_directions, feature_net, sliced_wasserstein_per_sample
from .model import TextureVAEConfig, TextureVAENet, kl_divergence
from .ops import KIND, check_rgb, variation_scale

STATS_PROJECTIONS = 32


def training_state_path(out_path: str | os.PathLike) -> Path:
    p = Path(out_path)
    return p.with_name(p.stem + ".train.safetensors")


def load_exemplars(exemplars: Sequence[str | os.PathLike | np.ndarray]) -> list[np.ndarray]:
    """Paths or arrays -> sRGB float32 HxWx3 arrays (ImageError on anything unusable)."""
    if isinstance(exemplars, (str, os.PathLike, np.ndarray)):
        exemplars = [exemplars]
    if len(exemplars) == 0:
        raise ValueError("training needs at least one exemplar image")
    out = []
    for i, ex in enumerate(exemplars):
        if isinstance(ex, np.ndarray):
            out.append(check_rgb(ex, f"exemplar {i + 1}"))
        elif isinstance(ex, (str, os.PathLike)):
            out.append(load_rgb(ex))
        else:
            raise ImageError(f"exemplar {i + 1}: expected a file path or an HxWx3 array, got {type(ex).__name__}")
    return out


class CropSampler:
    """Random crops from the exemplars, flipped at random unless ``flips`` is off, driven by one seeded
    generator."""

    def __init__(self, exemplars: list[np.ndarray], crop: int, generator: torch.Generator,
                 device: torch.device | str = "cpu", flips: bool = True):
        self.crop, self.flips = crop, flips
        self.generator = generator
        self.images = []  # on the training device: crops are cut there, the draws are host numbers
        for a in exemplars:
            h, w = a.shape[:2]
            if h < crop or w < crop:  # small exemplars are tiled to cover one crop
                a = np.tile(a, (-(-crop // h), -(-crop // w), 1))
            self.images.append(torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).to(device))
        # flipped crops are views (common/crops.py)
        self.flipped = [flipped_versions(img) for img in self.images] if flips else []

    def draw(self) -> tuple[int, torch.Tensor]:
        """One random crop (flipped at random, with ``flips``) and the index of the exemplar it was cut from."""
        g, c = self.generator, self.crop
        index = int(torch.randint(len(self.images), (1,), generator=g))
        img = self.images[index]
        top = int(torch.randint(img.shape[1] - c + 1, (1,), generator=g))
        left = int(torch.randint(img.shape[2] - c + 1, (1,), generator=g))
        if not self.flips:
            return index, img[:, top:top + c, left:left + c]
        flips = torch.rand(2, generator=g, device="cpu").tolist()
        return index, flipped_crop(self.flipped[index], top, left, c, flips[0] < 0.5, flips[1] < 0.5)

    def sample(self, batch: int) -> torch.Tensor:
        return torch.stack([self.draw()[1] for _ in range(batch)])


def stats_directions(target_feats: list[torch.Tensor], gen: torch.Generator, terms: int = 1) -> list[torch.Tensor]:
    """The projection directions of ``terms`` consecutive ``_stats_loss`` calls against ``target_feats``, drawn
    as those calls would draw them, in one copy to the device (``quality.draw_directions``)."""
    channels = [f.shape[1] for f in target_feats]
    return draw_directions(channels * terms, STATS_PROJECTIONS, gen, target_feats[0].device,
                           samples=target_feats[0].shape[0])


def _stats_loss(net_f, output: torch.Tensor, target_feats: list[torch.Tensor], gen: torch.Generator,
                directions: list[torch.Tensor] | None = None) -> torch.Tensor:
    """Mean over samples and layers of the sliced-Wasserstein feature distance (VGG: per-layer normalised).
    ``directions``: drawn beforehand (``stats_directions``), else from ``gen`` here."""
    out_feats = net_f(output)
    directions = directions if directions is not None else stats_directions(target_feats, gen)
    total = output.new_zeros(())
    for fo, ft, dirs in zip(out_feats, target_feats, directions):
        scale = ft.pow(2).mean() + 1e-8 if getattr(net_f, "normalize", False) else 1.0
        total = total + sliced_wasserstein_per_sample(fo, ft, STATS_PROJECTIONS, directions=dirs).sum() / scale
    return total / (output.shape[0] * len(out_feats))


class VAETrainer:
    """One training run's network, optimiser and seeded generators; ``step()`` is one step.

    The batch is cut on ``device`` and a step never waits for the device: it
    returns its losses as device tensors (read back every few steps by the loop).
    """

    def __init__(self, cfg: TextureVAEConfig, images: list[np.ndarray], seed: int, device: torch.device):
        self.cfg, self.device = cfg, device
        with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's global RNG
            torch.manual_seed(seed)
            self.net = TextureVAENet(cfg)
        self.net.to(device)
        if device.type == "cuda":  # NHWC convolutions: the tensor-core layout
            self.net.to(memory_format=torch.channels_last)
        self.optimizer = adam(self.net.parameters(), device, lr=cfg.lr, betas=(0.9, 0.99))
        self.data_gen = seeded_generator(seed, "cpu")
        self.noise_gen = seeded_generator(seed + 1, "cpu")
        self.proj_gen = seeded_generator(seed + 2, "cpu")
        self.use_scaler = device.type == "cuda" and cfg.amp and not torch.cuda.is_bf16_supported()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_scaler)
        self.sampler = CropSampler(images, cfg.crop_size, self.data_gen, device)
        self.net_f = TextureFeatures(device) if cfg.stats_features == "vgg19" else feature_net(device)
        self.batch: torch.Tensor | None = None  # the last step's crops and reconstructions (previews)
        self.recon: torch.Tensor | None = None

    def compile_networks(self, steps_left: int) -> bool:
        """Compile the networks a step runs (CUDA only; common/accelerate.py) for a long run or when asked."""
        force = worth_compiling(steps_left)
        # The feature networks are shared across the process (the VGG19, the cached random one): wrappers.
        self.net_f = compiled_features(self.net_f, self.device, force)
        return compile_in_place(self.net, self.device, force=force)

    def step(self, step: int, steps: int) -> dict[str, torch.Tensor]:
        mark_training_step()  # CUDA graph trees (common/accelerate.py): a new step begins
        cfg, dev, net = self.cfg, self.device, self.net
        net.train()
        lr = cfg.lr * (cfg.lr_final_fraction + (1 - cfg.lr_final_fraction) * 0.5 * (1 + math.cos(math.pi * step / steps)))
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = self.sampler.sample(cfg.batch_size)
        if dev.type == "cuda":
            batch = batch.contiguous(memory_format=torch.channels_last)
        with autocast(dev, cfg.amp):
            recon, mean, logvar = net(batch, self.noise_gen)
            if cfg.variation_stats_weight > 0:
                eps = host_to_device(torch.randn(mean.shape, generator=self.noise_gen, device="cpu"), dev, mean.dtype)
                z_var = mean + cfg.variation_strength * variation_scale(mean.detach()).to(mean.dtype) * eps
                varied = net.decode(z_var)
        # Losses in fp32: sorting and KL are not safe in half precision.
        recon = recon.float()
        rec_loss = (recon - batch).abs().mean()
        kl = kl_divergence(mean.float(), logvar.float())
        loss = rec_loss + cfg.beta * kl
        losses = {"l1": rec_loss.detach(), "kl": kl.detach()}
        if cfg.stats_weight > 0 or cfg.variation_stats_weight > 0:
            with torch.no_grad():
                target_feats = [f.float() for f in self.net_f(batch)]
            # Both terms' projections at once, in the order the two terms drew them: one copy to the device.
            terms = int(cfg.stats_weight > 0) + int(cfg.variation_stats_weight > 0)
            directions = stats_directions(target_feats, self.proj_gen, terms)
            per_term = len(target_feats)
        if cfg.stats_weight > 0:
            stats = _stats_loss(self.net_f, recon, target_feats, self.proj_gen, directions[:per_term])
            loss = loss + cfg.stats_weight * stats
            losses["stats"] = stats.detach()
        if cfg.variation_stats_weight > 0:
            vstats = _stats_loss(self.net_f, varied.float(), target_feats, self.proj_gen, directions[-per_term:])
            loss = loss + cfg.variation_stats_weight * vstats
            losses["vary_stats"] = vstats.detach()
        losses["loss"] = loss.detach()  # the total, watched for explosions
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if cfg.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            clip_grad_norm(net.parameters(), cfg.grad_clip)  # foreach: a few operators, not a loop over tensors
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.batch, self.recon = batch, recon.detach()
        return losses


def train_texture_vae(exemplars: Sequence[str | os.PathLike | np.ndarray], out_path: str | os.PathLike,
                      steps: int, *, config: TextureVAEConfig | None = None, seed: int = 0, device=None,
                      progress: ProgressCallback | None = None, cancel: CancelToken | None = None,
                      checkpoint_every: int = 200, resume: bool = True, name: str | None = None) -> Path:
    """Train (or continue training) a texture VAE and save it to ``out_path`` (.safetensors).

    With ``resume`` and a matching ``NAME.train.safetensors`` beside ``out_path``
    (same exemplars, config and seed), training continues from its step and ends
    exactly as an uninterrupted run would. A cancelled run saves the model and
    training state, then raises JobCancelled.
    """
    steps = int(steps)
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    out_path = Path(out_path)
    if out_path.suffix != ".safetensors":
        raise ValueError(f"the model file must end in .safetensors, got {out_path.name}")
    dev = pick_device(device)
    cfg = config or TextureVAEConfig.for_device(dev)
    cfg.validate()
    images = load_exemplars(exemplars)
    fingerprint = fingerprint_arrays(images)
    trainer = VAETrainer(cfg, images, seed, dev)
    net, optimizer, scaler = trainer.net, trainer.optimizer, trainer.scaler

    state_path = training_state_path(out_path)
    start = 0
    if resume and state_path.exists():
        state = load_training_state(state_path)
        if state.get("fingerprint") != fingerprint or state.get("config") != cfg.to_dict() or state.get("seed") != seed:
            raise ValueError(f"{state_path.name} belongs to a training run with other exemplars, settings or "
                             "seed; train with resume=False to start over (it will be overwritten) or "
                             "choose another output file")
        net.load_state_dict({k: v.to(dev) for k, v in state["model"].items()})
        load_optimizer_state(optimizer, state["optimizer"])
        if "scaler" in state and trainer.use_scaler:
            scaler.load_state_dict(state["scaler"])
        trainer.data_gen.set_state(state["data_gen"])
        trainer.noise_gen.set_state(state["noise_gen"])
        trainer.proj_gen.set_state(state["proj_gen"])
        start = int(state["step"])
    trainer.compile_networks(steps - start)

    def save(step: int) -> None:
        meta = {"config": cfg.to_dict(), "name": name or out_path.stem, "steps": step, "seed": seed,
                "data_fingerprint": fingerprint, "exemplar_count": len(images), "device": str(dev)}
        train_state = {"model": net.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                       "seed": seed, "fingerprint": fingerprint, "config": cfg.to_dict(),
                       "data_gen": trainer.data_gen.get_state(), "noise_gen": trainer.noise_gen.get_state(),
                       "proj_gen": trainer.proj_gen.get_state()}
        if trainer.use_scaler:
            train_state["scaler"] = scaler.state_dict()
        save_model_and_state(out_path, net.state_dict(), meta, KIND, state_path, train_state)

    if resume and state_path.exists():
        sync_model_with_state(out_path, "steps", start, save)

    losses: dict[str, float] = {}
    extra = {"device": str(dev)}
    sync_every = 1 if dev.type == "cpu" else 25  # host reads stall a GPU's queue; the CPU loses nothing
    every = max(1, checkpoint_every)
    divergence = DivergenceMonitor()
    for step in range(start, steps):
        try:
            check_cancel(cancel)
        except JobCancelled:
            save(step)
            raise
        pending = trainer.step(step, steps)
        done = step + 1
        checkpoint_now = done % every == 0 or done == steps
        if checkpoint_now or done % sync_every == 0 or done == start + 1:
            values = torch.stack([v.float() for v in pending.values()]).tolist()  # one host read
            losses = dict(zip(pending, values))
            if not all(math.isfinite(v) for v in values):
                raise FloatingPointError(f"training diverged at step {done} (losses {losses}); the last "
                                         "checkpoint is kept. Lower the learning rate and resume.")
            divergence.check(done, losses["loss"])  # explosions, not only NaN
        preview = None
        if checkpoint_now:
            preview = np.concatenate([from_tensor(trainer.batch[0]),
                                      from_tensor(trainer.recon[0].clamp(0, 1))], axis=1)
            if done < steps:
                save(done)
        report(progress, done, steps, "training texture VAE", losses, preview, extra=extra)
    save(max(start, steps))
    net.eval()
    return out_path
