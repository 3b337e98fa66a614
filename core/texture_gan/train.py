"""Training loop for the texture GAN: exemplars in, resumable checkpoints out."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..common.checkpoints import (CheckpointError, fingerprint_arrays, load_training_state, save_model_and_state,
                                  sync_model_with_state)
from ..common.accelerate import compile_in_place, compiled_features, mark_training_step, worth_compiling
from ..common.crops import flipped_crop, flipped_versions
from ..common.device import adam, autocast, host_to_device, load_optimizer_state, pick_device, tensors_to_device
from ..common.images import ImageError, image_from_array, load_image, resize_rgb, to_srgb
from ..common.jobs import CancelToken, DivergenceMonitor, JobCancelled, ProgressCallback, report
from ..common.perception import TextureFeatures
from ..common.quality import RandomFeatureNet, draw_directions, sliced_wasserstein
from ..texture_synth.structure import flatten_lighting
from .generate import KIND, TextureGenerator
from .model import MODEL_VERSION, Generator, TextureGANConfig, build_models

# The training statistics loss uses its own random-filter net (not the seed that
# core.common.quality.texture_stats_distance measures with), so the benchmark's
# statistics distance is not the quantity being optimised.
STATS_NET_SEED = 90817
# Config fields that do not change the numbers a run produces (may differ on resume).
_COSMETIC_FIELDS = ("preview_every", "preview_size")


def training_state_path(out_path: str | Path) -> Path:
    p = Path(out_path)
    return p.with_name(p.name.removesuffix(".safetensors") + ".train.safetensors")


def load_exemplars(exemplars: Sequence[str | Path | np.ndarray], max_side: int) -> tuple[list[np.ndarray], list[str]]:
    """sRGB float32 HxWx3 arrays (alpha dropped, grey expanded, linear encoded to sRGB), their smooth lighting
    divided out as instant synthesis does (``structure.flatten_lighting``): every texture GAN draws tileable
    images, which a gradient or a flash's hot spot could not tile; an evenly lit exemplar stays as it is."""
    if isinstance(exemplars, (str, Path, np.ndarray)):
        exemplars = [exemplars]
    if len(exemplars) == 0:
        raise ValueError("at least one exemplar image is needed to train a texture model")
    arrays, names = [], []
    for i, item in enumerate(exemplars):
        if isinstance(item, np.ndarray):
            image = image_from_array(item, "srgb", name=f"exemplar {i + 1}")
        else:
            image = load_image(item)
        rgb = to_srgb(image).rgb
        h, w = rgb.shape[:2]
        if max(h, w) > max_side:
            scale = max_side / max(h, w)
            rgb = np.clip(resize_rgb(rgb, max(1, round(w * scale)), max(1, round(h * scale))), 0, 1)
        arrays.append(np.ascontiguousarray(flatten_lighting(np.asarray(rgb, dtype=np.float32))[0], dtype=np.float32))
        names.append(Path(image.source).name if image.source else f"exemplar {i + 1}")
    return arrays, names


def effective_crop(cfg: TextureGANConfig, arrays: list[np.ndarray], names: list[str]) -> int:
    s = cfg.stride
    smallest = min(min(a.shape[:2]) for a in arrays)
    crop = min(cfg.crop_size, (smallest // s) * s)
    if crop < 2 * s:
        worst = names[int(np.argmin([min(a.shape[:2]) for a in arrays]))]
        raise ImageError(f"{worst} is too small to learn a texture from: each side needs at least {2 * s} pixels "
                         f"(ideally {cfg.crop_size} or more)")
    return crop


def _sample_real(exemplars: list[torch.Tensor], n: int, crop: int, cfg: TextureGANConfig,
                 gen: torch.Generator, flipped: list[dict] | None = None) -> torch.Tensor:
    """Random augmented crops, all randomness from ``gen`` (part of the training state).

    The draws are host numbers from a CPU generator, drawn for the whole batch at once; the crops are cut from
    the exemplars where they live (on the training device), so no step waits on a copy, and the colour jitter
    is one pass over the batch (per crop it was a dozen small launches each, a fifth of a step's operators).
    ``flipped``: each exemplar's ``flipped_versions``, so that a flipped crop is a view (the same pixels).
    """
    sources = torch.randint(len(exemplars), (n,), generator=gen, device="cpu").tolist()
    corners = torch.rand(n, 2, generator=gen, device="cpu").tolist()
    flips = torch.randint(2, (n, 2), generator=gen, device="cpu").tolist()
    turns = torch.randint(4, (n,), generator=gen, device="cpu").tolist()
    jitter = (torch.rand(n, 2, generator=gen, device="cpu") * 2 - 1) * cfg.color_jitter
    out = []
    for i in range(n):
        src = exemplars[sources[i]]
        _, h, w = src.shape
        y = min(h - crop, int(corners[i][0] * (h - crop + 1)))
        x = min(w - crop, int(corners[i][1] * (w - crop + 1)))
        across, down = cfg.augment_flips and bool(flips[i][0]), cfg.augment_flips and bool(flips[i][1])
        if flipped is not None:  # a view of the flipped exemplar
            c = flipped_crop(flipped[sources[i]], y, x, crop, across, down)
        else:
            c = src[:, y:y + crop, x:x + crop]
            c = c.flip(2) if across else c
            c = c.flip(1) if down else c
        if cfg.augment_rot90 and turns[i]:
            c = torch.rot90(c, turns[i], (1, 2))
        out.append(c)
    batch = torch.stack(out)
    if cfg.color_jitter:
        gain, shift = host_to_device(jitter, batch.device, batch.dtype).T[:, :, None, None, None]
        mean = batch.mean(dim=(1, 2, 3), keepdim=True)
        batch = ((batch - mean) * (1 + gain) + mean + shift).clamp(0, 1)
    return batch


def _sample_noise(g: Generator, n: int, grid: int, gen: torch.Generator,
                  device: torch.device) -> tuple[torch.Tensor, ...]:
    """G's training noise, on ``device``. The CPU draws it from ``gen`` itself; CUDA draws
    it on the card from a generator seeded by ``gen`` (no host work per sample, and
    resuming still reproduces the run, since only ``gen``'s state matters)."""
    shapes = [(n, g.local_dim, grid, grid), (n, g.global_dim), (n, g.periodic_dim)]
    shapes += [(n, *shape) for shape in g.fine_noise_shapes(grid, grid)]
    if device.type == "cuda":
        draw_gen = torch.Generator(device=device).manual_seed(int(torch.randint(2 ** 62, (1,), generator=gen)))
        draw_device = device
    else:
        draw_gen, draw_device = gen, torch.device("cpu")
    local, z, phase, *fine = [(torch.rand if i == 2 else torch.randn)(shape, generator=draw_gen, device=draw_device)
                              for i, shape in enumerate(shapes)]
    # Drawn on the device already (CUDA), or one copy for all of them (another device; the CPU: none).
    local, z, phase, *fine = tensors_to_device([local, z, phase * (2 * math.pi), *fine], device)
    return local, z, phase, fine


class RandomStatsFeatures:
    """Multi-octave seeded random-filter features (the cheaper statistics loss)."""

    normalize = False

    def __init__(self, scales: int, device: torch.device):
        self.net = RandomFeatureNet(width=16, scales=scales, seed=STATS_NET_SEED).to(device).eval()

    def __call__(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.net(x)


def _stats_loss(features, fake: torch.Tensor, real: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Sliced Wasserstein between feature distributions (per layer over the real features' energy for VGG)."""
    total = fake.new_zeros(())
    with torch.no_grad():
        real_feats = features(real)
    fake_feats = features(fake)
    # Every layer's projections in one copy to the device, drawn in the order the layers would draw them.
    directions = draw_directions([f.shape[1] for f in real_feats], 32, gen, fake.device)
    for ff, fr, dirs in zip(fake_feats, real_feats, directions):
        sw = sliced_wasserstein(ff, fr, 32, directions=dirs)
        total = total + (sw / (fr.pow(2).mean() + 1e-8) if features.normalize else sw)
    return total / len(fake_feats)


class EMAGANTrainer:
    """What the texture GAN trainers share (``GANTrainer`` here, ``MaterialTrainer`` in distill.py): a
    generator ``g`` with its moving average ``g_ema``, a discriminator ``d``, their optimisers, a config
    ``cfg`` with ``ema_decay`` and three seeded streams (data, noise, projections): the generator's update
    and the training state's layout."""

    def seed_streams(self, seed: int) -> None:
        self.data_gen = torch.Generator().manual_seed(seed * 4 + 1)
        self.noise_gen = torch.Generator().manual_seed(seed * 4 + 2)
        self.proj_gen = torch.Generator().manual_seed(seed * 4 + 3)

    def generator_update(self, loss_g: torch.Tensor) -> None:
        """One optimiser step of ``g`` on ``loss_g``, then ``g_ema`` follows (a short average at first)."""
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        scaled = self.scaled_update_parameters()
        before = [p.detach().clone() for p in scaled]
        self.opt_g.step()
        if scaled:  # their own rate: the update itself scaled (Adam's step does not follow the gradient's scale)
            with torch.no_grad():
                for p, old in zip(scaled, before):
                    p.sub_(old).mul_(self.update_scale()).add_(old)
        self.steps_done += 1
        decay = min(self.cfg.ema_decay_at(self.steps_done), (1 + self.steps_done) / (10 + self.steps_done))
        with torch.no_grad():
            torch._foreach_lerp_(list(self.g_ema.parameters()), list(self.g.parameters()), 1 - decay)

    def scaled_update_parameters(self) -> list[torch.Tensor]:
        """Generator parameters whose optimiser updates are scaled by ``update_scale()`` (none here)."""
        return []

    def update_scale(self) -> float:
        return 1.0

    def state(self) -> dict:
        return {"g": self.g.state_dict(), "d": self.d.state_dict(), "g_ema": self.g_ema.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                "rng": {"data": self.data_gen.get_state(), "noise": self.noise_gen.get_state(),
                        "proj": self.proj_gen.get_state()}}

    def load_state(self, state: dict, step: int) -> None:
        self.g.load_state_dict(state["g"])
        self.d.load_state_dict(state["d"])
        self.g_ema.load_state_dict(state["g_ema"])
        load_optimizer_state(self.opt_g, state["opt_g"])
        load_optimizer_state(self.opt_d, state["opt_d"])
        self.data_gen.set_state(state["rng"]["data"])
        self.noise_gen.set_state(state["rng"]["noise"])
        self.proj_gen.set_state(state["rng"]["proj"])
        self.steps_done = step


class GANTrainer(EMAGANTrainer):
    """One training run's models, optimisers and seeded generators; ``step()`` is one step.

    Everything a step touches lives on ``device`` (exemplars included) and a step
    never waits for the device: it returns its losses as device tensors.
    """

    def __init__(self, cfg: TextureGANConfig, exemplars: list[torch.Tensor], crop: int, seed: int,
                 device: torch.device):
        self.cfg, self.crop, self.device = cfg, crop, device
        self.grid = crop // cfg.stride
        g, d = build_models(cfg, seed)
        g_ema, _ = build_models(cfg, seed)
        g_ema.load_state_dict(g.state_dict())
        self.g, self.d, self.g_ema = g.to(device), d.to(device), g_ema.to(device).eval()
        if device.type == "cuda":  # NHWC convolutions: the tensor-core layout
            for m in (self.g, self.d, self.g_ema):
                m.to(memory_format=torch.channels_last)
        for p in self.g_ema.parameters():
            p.requires_grad_(False)
        self.opt_g = adam(self.g.parameters(), device, lr=cfg.lr_g, betas=cfg.betas)
        self.opt_d = adam(self.d.parameters(), device, lr=cfg.lr_d, betas=cfg.betas)
        self.stats_net = (TextureFeatures(device) if cfg.stats_features == "vgg19"
                          else RandomStatsFeatures(cfg.stats_scales, device))
        self.real_images = [e.to(device) for e in exemplars]
        self.flipped_images = [flipped_versions(e) for e in self.real_images] if cfg.augment_flips else None
        self.seed_streams(seed)
        self.mixed = cfg.mixed_precision and device.type == "cuda" and torch.cuda.is_bf16_supported()
        self.steps_done = 0

    def compile_networks(self, steps_left: int) -> bool:
        """Compile the networks a step runs (CUDA only; common/accelerate.py) for a long run or when asked."""
        force = worth_compiling(steps_left)
        self.stats_net = compiled_features(self.stats_net, self.device, force)  # the VGG19 is shared: a wrapper
        return all([compile_in_place(m, self.device, force=force) for m in (self.g, self.d)])

    def step(self) -> dict[str, torch.Tensor]:
        mark_training_step()  # CUDA graph trees (common/accelerate.py): a new step begins
        cfg, dev, g, d = self.cfg, self.device, self.g, self.d
        g.train()
        d.train()
        real = _sample_real(self.real_images, cfg.batch_size, self.crop, cfg, self.data_gen, self.flipped_images)
        local, z, phase, fine = _sample_noise(g, cfg.batch_size, self.grid, self.noise_gen, dev)
        if dev.type == "cuda":
            real = real.contiguous(memory_format=torch.channels_last)
        with autocast(dev, enabled=self.mixed):
            fake = g(local, z, phase, fine)
        # Discriminator: non-saturating loss; spectral norm keeps it Lipschitz.
        with autocast(dev, enabled=self.mixed):  # one pass over real and fake: one power iteration, half the launches
            d_both = d(torch.cat([real, fake.detach().to(real.dtype)])).float()
        d_real, d_fake = d_both[:real.shape[0]], d_both[real.shape[0]:]
        loss_d = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()
        # Generator: fool D + match the exemplar's texture statistics (fast, stable signal).
        with autocast(dev, enabled=self.mixed):
            g_adv = F.softplus(-d(fake).float()).mean()
        stats = (_stats_loss(self.stats_net, fake.float(), real, self.proj_gen) if cfg.stats_loss_weight
                 else g_adv.new_zeros(()))
        loss_g = g_adv + cfg.stats_loss_weight * stats
        self.generator_update(loss_g)
        return {"d": loss_d.detach(), "g_adv": g_adv.detach(), "stats": stats.detach()}



def host_sync_every(device: torch.device) -> int:
    """Steps between reading losses back to the host. The CPU loses nothing by reading
    every step; on a GPU each read stalls the queue of kernels, so read rarely."""
    return 1 if device.type == "cpu" else 25


def _model_config(cfg: TextureGANConfig, fingerprint: str, names: list[str], crop: int, step: int, seed: int,
                  name: str, device: torch.device) -> dict:
    return {"name": name, "version": MODEL_VERSION, "architecture": cfg.architecture(), "training_config": cfg.to_dict(),
            "data_fingerprint": fingerprint, "exemplars": names, "crop_size_used": crop, "steps": step, "seed": seed,
            "stride": cfg.stride, "device": str(device)}


def train_texture_gan(exemplars: Sequence[str | Path | np.ndarray], out_path: str | Path, steps: int, *,
                      config: TextureGANConfig | None = None, seed: int = 0, device=None,
                      progress: ProgressCallback | None = None, cancel: CancelToken | None = None,
                      checkpoint_every: int = 200, resume: bool = True) -> Path:
    """Train on 1..N exemplars; write ``out_path`` (generator) and ``<out>.train.safetensors``.

    With ``resume=True`` an existing training state for the same exemplars and
    config continues up to ``steps`` in total, reproducing an uninterrupted run.
    Cancelling saves both files and raises JobCancelled.
    """
    out = Path(out_path)
    if out.suffix != ".safetensors":
        raise ValueError(f"the model file must end in .safetensors, got {out.name}")
    if int(steps) < 0:
        raise ValueError("steps must be >= 0")
    steps, seed = int(steps), int(seed)
    checkpoint_every = max(1, int(checkpoint_every))
    dev = pick_device(device)
    cfg = config or TextureGANConfig.for_device(dev)
    state_path = training_state_path(out)
    name = out.name.removesuffix(".safetensors")

    arrays, names = load_exemplars(exemplars, cfg.max_exemplar_side)
    crop = effective_crop(cfg, arrays, names)
    fingerprint = fingerprint_arrays(arrays)
    trainer = GANTrainer(cfg, [torch.from_numpy(a.transpose(2, 0, 1).copy()) for a in arrays], crop, seed, dev)
    step = 0
    losses: dict[str, float] = {}

    if resume and state_path.exists():
        state = load_training_state(state_path, "cpu")
        if state.get("data_fingerprint") != fingerprint:
            raise CheckpointError(f"{state_path.name} was trained on different exemplar images; "
                                  "train without resume (or delete it) to start over")
        saved_cfg = {k: v for k, v in state.get("config", {}).items() if k not in _COSMETIC_FIELDS}
        now_cfg = {k: v for k, v in cfg.to_dict().items() if k not in _COSMETIC_FIELDS}
        if saved_cfg != now_cfg or state.get("seed") != seed:
            raise CheckpointError(f"{state_path.name} was trained with different settings or seed; "
                                  "train without resume (or delete it) to start over")
        try:
            trainer.load_state(state, int(state["step"]))
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"{state_path.name} does not fit this model ({exc}); "
                                  "train without resume to start over") from exc
        step = int(state["step"])
        losses = dict(state.get("losses", {}))
    trainer.compile_networks(steps - step)

    def save(at_step: int) -> None:
        save_model_and_state(out, trainer.g_ema.state_dict(),
                             _model_config(cfg, fingerprint, names, crop, at_step, seed, name, dev), KIND,
                             state_path, {"step": at_step, "seed": seed, "config": cfg.to_dict(),
                                          "data_fingerprint": fingerprint, "losses": losses, **trainer.state()})

    if resume and state_path.exists():
        sync_model_with_state(out, "steps", step, save)

    preview_model = TextureGenerator(trainer.g_ema, {"training_config": cfg.to_dict()}, name, dev)
    extra = {"device": str(dev)}

    def preview() -> np.ndarray:
        return preview_model.generate(cfg.preview_size, cfg.preview_size, seed=0, tileable=True)

    report(progress, step, steps, "starting" if step == 0 else f"resumed at step {step}", losses, extra=extra)
    if step >= steps:
        save(step)
        report(progress, step, steps, "already trained", losses, preview(), extra=extra)
        return out

    sync_every = host_sync_every(dev)
    divergence = DivergenceMonitor()
    while step < steps:
        if cancel is not None and cancel.cancelled:
            save(step)
            raise JobCancelled(f"training cancelled at step {step}; checkpoint saved to {out.name}")
        pending = trainer.step()
        step += 1
        checkpoint_now = step % checkpoint_every == 0 or step == steps
        show = step == steps or (cfg.preview_every > 0 and step % cfg.preview_every == 0)
        if checkpoint_now or show or step % sync_every == 0:
            # One host read for all losses; never save weights from a diverged step.
            values = torch.stack([v.float() for v in pending.values()]).tolist()
            losses = dict(zip(pending, values))
            if not all(math.isfinite(v) for v in losses.values()):
                raise RuntimeError(f"training diverged at step {step} (losses {losses}); the last checkpoint "
                                   f"({out.name}) is kept - resume with a lower learning rate")
            # Explosions show on the losses read back (every step on the CPU, every few on a GPU).
            divergence.check(step, sum(losses.values()))
        if checkpoint_now:
            save(step)
        report(progress, step, steps, "", losses, preview() if show else None, extra=extra)
    return out
