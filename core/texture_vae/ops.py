"""Inference on a trained texture VAE: encode, decode, reconstruct, vary, blend.

Sizes. The latent grid has one cell per f x f pixels (f = ``config.downsample``,
8 by default). An image whose side is not a multiple of f is resampled
*periodically* (bicubic on a circularly padded copy) to the nearest multiple
(at least f) before encoding, and decoded output is resampled the same way to
the exact requested size. The scale change is below f/2 pixels per side and
the wrap-around stays seamless.

Other output sizes (``decode``/``vary``/``blend`` with ``width``/``height``,
or blend inputs of different sizes) never crop: an input is encoded at its own
size and its latent grid is brought to the output's cell count by
``fit_latents``: repeated a whole number of times (the count closest to the
target) and then resampled periodically to the exact cell count. The texture
keeps its scale up to that last stretch (at most half a repeat), and the
result always tiles if the input does. A variation of a small texture at a
larger size draws fresh noise for every cell, so it does not repeat.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..common.checkpoints import build_checked, check_architecture, load_checkpoint
from ..common.device import (adam, autocast, free_device_memory, is_out_of_memory, loss_network_autocast,
                             pick_device, seeded_generator)
from ..common.images import MIN_SIDE, ImageError, from_tensor, to_tensor, validate_array
from ..common.jobs import CancelToken, ProgressCallback, check_cancel, report
from .model import TextureVAEConfig, TextureVAENet

KIND = "texture_vae"
# Latent refinement (``TextureVAE.refine``): Adam on the encoder's latents so that the decoded image matches the
# input where it matters to a texture: its layout (the L1 of 8x8-pixel means: where the bricks and stones are,
# not their detail, which the decoder draws from its own noise) and its look (VGG19 Gram matrices at
# relu1_1-relu3_1), with a pull toward the prior the decoder knows. A pixel L1 at full resolution made the
# stochastic materials worse (grass's variation ratio 1.09 -> 2.64, its sharpness 0.84 -> 0.74): it asks the
# latents for detail they do not hold, and they leave the prior to fake it.
REFINE_LR = 0.05
REFINE_CELL = 8
REFINE_LAYOUT_WEIGHT = 2.0
REFINE_PRIOR_WEIGHT = 0.02
# relu4_1 as well: grass, gravel and brick wall closer, bark, fabric and cracked ground further, eight materials'
# mean 1.030 -> 1.017 for 1.6x the time, cobblestones level (docs/training_notes.md, forty-third session).
REFINE_LAYERS = ("relu1_1", "relu2_1", "relu3_1")
MAX_REFINE_STEPS = 1000
# A decoder that draws randomness of its own (the GAN-prior VAE's detail noise, the phases of its periodic channels,
# the shift of its lattice inputs) takes it from a seed: no latent holds it, and no refinement step can move it. On a
# woven fabric a seed that does not fit the encoded layout gives blocks of crossed threads (the weave's blocks sit
# on the lattice inputs, its threads on the noise). Refinement therefore first picks the seed too: of this many
# (the given one and seeds derived from it), the one whose decoding of the encoder's latents matches the input best
# by the refinement's own loss; the latents are refined, and the result decoded, with it. Bundled materials VAE,
# the bench (strength 0.5, 30 steps, 3 seeds): fabric's variation ratio 1.84 -> 1.73, cracked ground 0.81 -> 0.73,
# cobblestones 2.65 -> 2.58, gravel 1.99 -> 1.94, stone bricks 1.36 -> 1.32; brick wall, grass and bark within
# 0.02 the other way; nine materials' geometric mean 1.246 -> 1.215. Which candidates come up decides how far
# fabric moves (another set of eight: 1.58). A grid of 16 lattice shifts with the picked seed's noise never fitted
# better than the picked seed's own shift.
# Costs that many decoder and VGG19 forward passes, a few refinement steps' worth.
REFINE_SEED_CANDIDATES = 8
# A texture far from everything the model can draw gets variations and blends of what it can draw. The refinement's
# loss after its steps says how far (``TextureVAE.fit_warning_loss``, per model kind): on the bundled materials VAE,
# 30 steps, the bundled materials' own crops end at 0.05-0.17 (two crops each) and photographs it never saw at
# 1.0-6.8 (13 tune and validation photographs: bricks, tiles, bark, leaves, grass, paving), their variations
# 14-38x the photographs' own crops' distance (dry ground, close to the cracked ground it knows, 0.23: 2.4x).


# --------------------------------------------------------------------------- size helpers

def resample_periodic(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bicubic resampling of NxCxHxW data treated as periodic (the result tiles if x does)."""
    h, w = x.shape[-2:]
    if (h, w) == (height, width):
        return x
    pad = 2  # bicubic taps reach two pixels
    reps_y, reps_x = -(-pad // h) + 1, -(-pad // w) + 1  # circular F.pad needs pad <= size
    src = x.repeat(1, 1, reps_y, reps_x) if (h < pad or w < pad) else x
    xp = F.pad(src, (pad, pad, pad, pad), mode="circular")
    hp, wp = xp.shape[-2:]
    ys = (torch.arange(height, device=x.device, dtype=torch.float32) + 0.5) * h / height - 0.5 + pad
    xs = (torch.arange(width, device=x.device, dtype=torch.float32) + 0.5) * w / width - 0.5 + pad
    gy = (2 * ys + 1) / hp - 1
    gx = (2 * xs + 1) / wp - 1
    grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], dim=-1)
    grid = grid.unsqueeze(0).expand(x.shape[0], -1, -1, -1).to(x.dtype)
    return F.grid_sample(xp, grid, mode="bicubic", padding_mode="border", align_corners=False)


def grid_size(pixels: int, factor: int) -> int:
    """Latent cells for ``pixels``: the nearest whole number of cells, at least one."""
    return max(1, int(round(pixels / factor)))


def fit_latents(z: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Bring a latent grid to rows x cols cells, periodically (see the module docstring)."""
    h, w = z.shape[-2:]
    if (h, w) == (rows, cols):
        return z
    reps_y, reps_x = max(1, int(round(rows / h))), max(1, int(round(cols / w)))
    z = z.repeat(1, 1, reps_y, reps_x)
    return resample_periodic(z, rows, cols)


def check_rgb(rgb: np.ndarray, name: str = "image") -> np.ndarray:
    """Validate an HxWx3 (or HxW / HxWx1..4) array; return float32 HxWx3 in [0, 1]."""
    if not isinstance(rgb, np.ndarray):
        raise ImageError(f"{name}: expected a numpy array (HxWx3 float in [0, 1]), got {type(rgb).__name__}")
    a = validate_array(rgb, name)
    if a.shape[2] in (1, 2):
        a = np.repeat(a[..., :1], 3, axis=2)
    return np.clip(a[..., :3], 0.0, 1.0).astype(np.float32)


def check_mask(mask: np.ndarray) -> np.ndarray:
    """HxW (or HxWxC, channels averaged) mask in [0, 1] -> float32 HxW."""
    m = np.asarray(mask)
    if m.ndim == 3:
        m = validate_array(m, "mask")[..., :3].mean(axis=2) if m.shape[2] in (1, 2, 3, 4) else None
    elif m.ndim == 2:
        m = validate_array(m, "mask")[..., 0]
    else:
        m = None
    if m is None:
        raise ValueError(f"mask must be an HxW (or HxWxC) array, got shape {np.asarray(mask).shape}")
    if m.min() < -1e-4 or m.max() > 1 + 1e-4:
        raise ValueError(f"mask values must lie in [0, 1] (0 = first image, 1 = second), "
                         f"got range [{m.min():.3g}, {m.max():.3g}]")
    return np.clip(m, 0.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------- model wrapper

class TextureVAE:
    """A loaded texture VAE. All images are float32 HxWx3 sRGB in [0, 1]."""

    decoder_draws_noise = False  # whether decoding draws randomness the latents do not hold (a seed picks it)
    # Refinement loss above which a vary or blend warns that the image is far from what the model draws (None: the
    # kind was not measured; a Train From Image variation model knows one texture, whatever it was given).
    fit_warning_loss: float | None = None

    def __init__(self, net: TextureVAENet, config: TextureVAEConfig, name: str = "texture_vae",
                 device: torch.device | None = None, metadata: dict | None = None):
        self.device = device or torch.device("cpu")
        self.net = net.to(self.device).eval()
        self.config = config
        self.name = name
        self.metadata = metadata or {}
        self.last_device = str(self.device)  # where the last encode/decode ran (the CPU after a fallback)
        self._perceptions: dict[str, torch.nn.Module] = {}  # refine's VGG19 per device, loaded on first use
        # An image's refinement targets while one call uses them (``_encoded_for_decoding``): the seed choice,
        # the refinement and the fit check read the same image, and each VGG19 pass over it costs a step.
        self._targets_memo: dict[tuple[int, str], tuple[torch.Tensor, tuple]] | None = None

    @classmethod
    def load(cls, path: str | os.PathLike, device=None) -> "TextureVAE":
        dev = pick_device(device)
        tensors, meta = load_checkpoint(path, expected_kind=KIND, device="cpu")
        if isinstance(meta.get("config"), dict) and "decoder" in meta["config"] and cls is TextureVAE:
            from .gan_prior_ops import GANPriorVAE  # a VAE onto the materials GAN's canvas

            return GANPriorVAE.from_checkpoint(Path(path), tensors, meta, dev)
        check_architecture(Path(path).name, KIND, meta.get("config"))
        try:
            config = TextureVAEConfig.from_dict(meta.get("config", {}))
        except (TypeError, ValueError) as exc:
            from ..common.checkpoints import CheckpointError
            raise CheckpointError(f"{Path(path).name}: its texture VAE config is invalid ({exc})") from exc
        net = build_checked(Path(path).name, KIND, meta["config"], tensors, lambda: TextureVAENet(config))
        return cls(net, config, meta.get("name") or Path(path).stem, dev, meta)

    @property
    def downsample(self) -> int:
        return self.config.downsample

    # ---- running on the device, falling back to the CPU when it runs out of memory
    def _run(self, fn, *tensors: torch.Tensor) -> torch.Tensor:
        self.last_device = str(self.device)
        try:
            with torch.no_grad(), autocast(self.device, self.config.amp):
                return fn(self.net, *[t.to(self.device) for t in tensors]).float()
        except RuntimeError as exc:
            cpu_net = self._cpu_net_after(exc, "finishing this image on the CPU (slower)")
            self.last_device = "cpu"
            with torch.no_grad():
                return fn(cpu_net, *[t.cpu() for t in tensors]).float()

    def _cpu_net_after(self, exc: RuntimeError, what: str) -> torch.nn.Module:
        """A CPU copy of the network to finish on after the device ran out of memory (``exc``); any other error,
        or one on the CPU already, is raised again."""
        if self.device.type == "cpu" or not is_out_of_memory(exc):
            raise exc
        free_device_memory(self.device)
        warnings.warn(f"texture VAE: the {self.device.type} device ran out of memory; {what}", RuntimeWarning,
                      stacklevel=4)
        cpu_net = self._fresh_net()
        cpu_net.load_state_dict({k: v.cpu() for k, v in self.net.state_dict().items()})
        return cpu_net.eval()

    def _fresh_net(self) -> torch.nn.Module:
        """An untrained network of this model's architecture, on the CPU (the out-of-memory fallback)."""
        return TextureVAENet(self.config)

    def mix_latents(self, latents: Sequence[torch.Tensor], weights: Sequence[torch.Tensor | float]) -> torch.Tensor:
        """``blend``'s combination of latent grids: the weighted sum (weights: numbers or per-cell maps)."""
        return sum(w * z for w, z in zip(weights, latents))

    @property
    def prior_channels(self) -> int:
        """How many leading latent channels have the N(0, 1) prior (all of them here)."""
        return self.config.latent_channels

    def refine(self, z: torch.Tensor, x: torch.Tensor, steps: int, seed: int = 0,
               cancel: CancelToken | None = None, progress: ProgressCallback | None = None) -> torch.Tensor:
        """The latents ``z`` of image ``x`` (1x3xHxW, the size ``z`` decodes to) after ``steps`` Adam steps toward
        a decoding (with ``seed``'s detail noise) whose layout and look match ``x`` (see ``REFINE_*``): an
        encoder's one guess (amortised inversion) refined by optimisation, as GAN inversion is done when
        faithfulness matters (Zhu et al. 2016; In-Domain GAN Inversion, 2020). Returns them on the CPU; a device
        that runs out of memory hands the refinement to the CPU, as ``_run`` does."""
        steps = _check_refine_steps(steps)
        if steps == 0:
            return z
        try:
            return self._refine_on(self.device, self.net, z, x, steps, seed, cancel, progress)
        except RuntimeError as exc:
            cpu_net = self._cpu_net_after(exc, "refining this image on the CPU (slower)")
            return self._refine_on(torch.device("cpu"), cpu_net, z, x, steps, seed, cancel, progress)

    def _perception(self, device: torch.device) -> torch.nn.Module:
        from ..common.perception import load_perception

        if str(device) not in self._perceptions:
            self._perceptions[str(device)] = load_perception(device)
        return self._perceptions[str(device)]

    def _refine_targets(self, vgg: torch.nn.Module, image: torch.Tensor, device: torch.device
                        ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """What the refinement matches in ``image`` (on ``device``): its layout (8x8-pixel means) and look (Grams);
        computed once per image and device while ``_targets_memo`` is kept."""
        from ..common.perception import gram_matrix

        key = (id(image), str(device))
        if self._targets_memo is not None and key in self._targets_memo:
            return self._targets_memo[key][1]
        x = image.to(device, torch.float32)
        with torch.no_grad():
            layout = F.avg_pool2d(x, REFINE_CELL, ceil_mode=True)
            with loss_network_autocast(device):  # as the decodings' features are (``_refine_loss``)
                feats = vgg(x, REFINE_LAYERS)
            targets = layout, {k: gram_matrix(v.float()) for k, v in feats.items()}
        if self._targets_memo is not None:  # the image is held beside them, so its id stays its own
            self._targets_memo[key] = (image, targets)
        return targets

    def _refine_loss(self, net: torch.nn.Module, vgg: torch.nn.Module, latents: torch.Tensor,
                     targets: tuple[torch.Tensor, dict[str, torch.Tensor]], seed: int) -> torch.Tensor:
        from ..common.perception import gram_matrix

        layout, grams = targets
        out = net.decode(latents, seed=int(seed))
        loss = REFINE_LAYOUT_WEIGHT * (F.avg_pool2d(out, REFINE_CELL, ceil_mode=True) - layout).abs().mean()
        loss = loss + REFINE_PRIOR_WEIGHT * latents[:, :self.prior_channels].pow(2).mean()
        with loss_network_autocast(out.device):  # bf16 where native; the Grams in fp32
            feats = vgg(out, REFINE_LAYERS)
        return loss + sum((gram_matrix(feats[k].float()) - g).pow(2).sum() / g.pow(2).sum().clamp_min(1e-12)
                          for k, g in grams.items())

    def _refine_on(self, device: torch.device, net: torch.nn.Module, z: torch.Tensor, x: torch.Tensor, steps: int,
                   seed: int, cancel: CancelToken | None, progress: ProgressCallback | None) -> torch.Tensor:
        vgg = self._perception(device)
        targets = self._refine_targets(vgg, x, device)
        latents = z.detach().to(device, torch.float32).clone().requires_grad_(True)
        optimiser = adam([latents], device, lr=REFINE_LR)
        for step in range(steps):
            check_cancel(cancel)
            loss = self._refine_loss(net, vgg, latents, targets, seed)
            # Gradients for the latents only: the networks stay as they are and keep no .grad.
            (grad,) = torch.autograd.grad(loss, [latents])
            latents.grad = grad
            optimiser.step()
            report(progress, step + 1, steps, "refining the latents")
        return latents.detach().cpu()

    def _seed_candidates(self) -> int:
        """How many seeds ``decoder_seed`` decodes (0: it keeps the given one without decoding)."""
        return REFINE_SEED_CANDIDATES if self.decoder_draws_noise and REFINE_SEED_CANDIDATES > 1 else 0

    def decoder_seed(self, latents: Sequence[torch.Tensor], images: Sequence[torch.Tensor], seed: int = 0,
                     cancel: CancelToken | None = None, progress: ProgressCallback | None = None) -> int:
        """Of ``candidate_seeds(seed)``, the seed whose decodings of ``latents`` match ``images`` (1x3xHxW each, the
        sizes the latents decode to) best by the refinement's loss, summed over the images (see
        ``REFINE_SEED_CANDIDATES``); ``seed`` itself for a decoder that draws no randomness of its own. Reports
        one progress step per candidate."""
        if not self._seed_candidates():
            return int(seed)
        try:
            return self._decoder_seed_on(self.device, self.net, latents, images, seed, cancel, progress)
        except RuntimeError as exc:
            cpu_net = self._cpu_net_after(exc, "choosing the decoder's noise on the CPU (slower)")
            return self._decoder_seed_on(torch.device("cpu"), cpu_net, latents, images, seed, cancel, progress)

    def _decoder_seed_on(self, device: torch.device, net: torch.nn.Module, latents: Sequence[torch.Tensor],
                         images: Sequence[torch.Tensor], seed: int, cancel: CancelToken | None,
                         progress: ProgressCallback | None) -> int:
        vgg = self._perception(device)
        targets = [self._refine_targets(vgg, x, device) for x in images]
        zs = [z.to(device, torch.float32) for z in latents]
        candidates, losses = candidate_seeds(seed), []
        with torch.no_grad():
            for k, candidate in enumerate(candidates):
                check_cancel(cancel)
                losses.append(sum(float(self._refine_loss(net, vgg, z, t, candidate)) for z, t in zip(zs, targets)))
                report(progress, k + 1, len(candidates), "choosing the decoder's noise")
        return candidates[int(np.argmin(losses))]

    def fit_loss(self, z: torch.Tensor, x: torch.Tensor, seed: int = 0) -> float:
        """The refinement's loss of latents ``z`` against image ``x`` (1x3xHxW, the size ``z`` decodes to), decoded
        with ``seed``: how far what the model draws for them is from the image (see ``fit_warning_loss``)."""
        def on(device: torch.device, net: torch.nn.Module) -> float:
            vgg = self._perception(device)
            targets = self._refine_targets(vgg, x, device)
            with torch.no_grad():
                return float(self._refine_loss(net, vgg, z.to(device, torch.float32), targets, seed))
        try:
            return on(self.device, self.net)
        except RuntimeError as exc:
            return on(torch.device("cpu"), self._cpu_net_after(exc, "measuring the fit on the CPU (slower)"))

    def far_from_model(self, what: str) -> str:
        """The warning for an image (``what``) whose refinement ended above ``fit_warning_loss``."""
        known = getattr(self, "materials", None)
        drawn = f"the materials this model knows ({', '.join(known)})" if known else "what this model knows"
        return (f"{what} is far from {drawn}: the result draws those, not it. For a texture of your own, train a "
                "Variation Model from it (Train From Image).")

    def _encoded_for_decoding(self, images: Sequence[np.ndarray], refine_steps: int, seed: int,
                              cancel: CancelToken | None, progress: ProgressCallback | None,
                              warn: Callable[[str], None] | None = None) -> tuple[list[torch.Tensor], int]:
        """Each image's latents and the seed to decode them with: with ``refine_steps``, the seed ``decoder_seed``
        picks (from ``seed``) and the latents refined with it; one progress bar over the choice and every image's
        refinement. ``warn`` hears of each refined image the model cannot draw (``fit_warning_loss``)."""
        steps = _check_refine_steps(refine_steps)
        xs = [self._encoder_input(check_rgb(a, f"image {i + 1}")) for i, a in enumerate(images)]
        zs = [self._run(lambda net, t: net.encode(t)[0], x).cpu() for x in xs]
        if steps == 0:
            return zs, int(seed)
        self._targets_memo = {}
        try:
            return self._refined(xs, zs, steps, seed, cancel, progress, warn)
        finally:
            self._targets_memo = None

    def _refined(self, xs: list[torch.Tensor], zs: list[torch.Tensor], steps: int, seed: int,
                 cancel: CancelToken | None, progress: ProgressCallback | None,
                 warn: Callable[[str], None] | None) -> tuple[list[torch.Tensor], int]:
        """``_encoded_for_decoding``'s refinement of images ``xs`` from their encodings ``zs``."""
        choice = self._seed_candidates()
        total = choice + len(xs) * steps

        def bar(offset: int) -> ProgressCallback | None:
            if progress is None:
                return None
            return lambda p: report(progress, offset + p.step, total, p.message)
        seed = self.decoder_seed(zs, xs, seed, cancel, bar(0))
        refined = [self.refine(z, x, steps, seed, cancel, bar(choice + i * steps))
                   for i, (z, x) in enumerate(zip(zs, xs))]
        if warn is not None and self.fit_warning_loss is not None:
            for i, (z, x) in enumerate(zip(refined, xs)):
                if self.fit_loss(z, x, seed) > self.fit_warning_loss:
                    warn(self.far_from_model("The image" if len(xs) == 1 else f"Image {i + 1}"))
        return refined, seed

    def _encoder_input(self, a: np.ndarray) -> torch.Tensor:
        """Image ``a`` as the 1x3xHxW tensor the encoder reads: resized (periodically) to whole latent cells."""
        f = self.downsample
        return resample_periodic(to_tensor(a), grid_size(a.shape[0], f) * f, grid_size(a.shape[1], f) * f)

    # ---- public operations
    def encode(self, rgb: np.ndarray, refine_steps: int = 0, seed: int = 0, cancel: CancelToken | None = None,
               progress: ProgressCallback | None = None) -> torch.Tensor:
        """Posterior mean latents, 1 x C x h x w (h, w = image size / f, rounded), on the CPU; with
        ``refine_steps``, refined (``refine``) toward the image as decoded with ``seed``'s detail noise."""
        a = check_rgb(rgb)
        steps = _check_refine_steps(refine_steps)
        x = self._encoder_input(a)
        z = self._run(lambda net, t: net.encode(t)[0], x).cpu()
        return self.refine(z, x, steps, seed, cancel, progress)  # 0 steps: z as it is

    def decode(self, latents: torch.Tensor, width: int | None = None, height: int | None = None,
               seed: int = 0) -> np.ndarray:
        """Decode a 1xCxhxw (or Cxhxw) latent grid. Without a size: h*f x w*f pixels. ``seed``: the detail
        noise of a decoder that draws some (the GAN-prior VAE's; same seed, same image).

        With ``width``/``height`` the grid is fitted to the nearest cell count
        with ``fit_latents`` (repeated, then stretched periodically), decoded,
        and resampled periodically to exactly ``width`` x ``height``.
        """
        z = torch.as_tensor(latents, dtype=torch.float32)
        if z.dim() == 3:
            z = z.unsqueeze(0)
        if z.dim() != 4 or z.shape[0] != 1 or z.shape[1] != self.config.latent_channels:
            raise ValueError(f"latents must have shape 1x{self.config.latent_channels}xhxw, got {tuple(z.shape)}")
        if not torch.isfinite(z).all():
            raise ValueError("latents contain NaN or infinite values")
        f = self.downsample
        out_h = int(height) if height is not None else z.shape[2] * f
        out_w = int(width) if width is not None else z.shape[3] * f
        _check_size(out_w, out_h)
        z = fit_latents(z, grid_size(out_h, f), grid_size(out_w, f))
        x = self._run(lambda net, t: net.decode(t, seed=int(seed)), z).cpu()
        x = resample_periodic(x, out_h, out_w).clamp(0.0, 1.0)
        return from_tensor(x)

    def reconstruct(self, rgb: np.ndarray, refine_steps: int = 0) -> np.ndarray:
        """Encode (``refine_steps``: see ``refine``) then decode at the input's own size."""
        a = check_rgb(rgb)
        (z,), seed = self._encoded_for_decoding([a], refine_steps, 0, None, None)
        return self.decode(z, a.shape[1], a.shape[0], seed=seed)

    def vary(self, rgb: np.ndarray, strength: float, seed: int = 0,
             width: int | None = None, height: int | None = None, refine_steps: int = 0,
             cancel: CancelToken | None = None, progress: ProgressCallback | None = None,
             warn: Callable[[str], None] | None = None) -> np.ndarray:
        """A variation of ``rgb``: its latents plus seeded noise scaled by ``strength``.

        The input is encoded at its own size and its latents fitted to the output
        size (``fit_latents``); then noise is added: ``strength`` x (per-channel
        spatial std of the image's own latents) x N(0, 1) at every cell, so
        strength 1 perturbs each cell as much as the texture itself varies from
        place to place. Strength 0 returns exactly ``reconstruct`` (at the input's
        size); the same seed with a larger strength moves the same direction,
        further. 0.25-1 gives "same wall, different bricks"; 2 and more drifts
        toward the other textures the model was trained on.

        ``refine_steps`` > 0: the input's latents are first refined toward it (``refine``: its layout and look),
        so the variation starts from a faithful reconstruction rather than the encoder's one guess; each step
        runs the decoder and VGG19 forward and backward at the input's size. A decoder with randomness of its own
        is then decoded with the seed ``decoder_seed`` picked from ``seed`` (``REFINE_SEED_CANDIDATES`` forward
        passes first); the perturbation still follows ``seed``. ``warn`` hears if the refined reading is still far
        from the image (``fit_warning_loss``): the model cannot draw it, and the variations will not look like it.
        """
        strength = _check_strength(strength)
        a = check_rgb(rgb)
        out_h = int(height) if height is not None else a.shape[0]
        out_w = int(width) if width is not None else a.shape[1]
        _check_size(out_w, out_h)
        f = self.downsample
        (z,), decoder_seed = self._encoded_for_decoding([a], refine_steps, seed, cancel, progress, warn)
        z = fit_latents(z, grid_size(out_h, f), grid_size(out_w, f))
        if strength > 0:
            z = self.perturb(z, strength, seed)
        return self.decode(z, out_w, out_h, seed=decoder_seed)

    def perturb(self, z: torch.Tensor, strength: float, seed: int) -> torch.Tensor:
        """``vary``'s move of the latents (``strength`` > 0)."""
        return z + strength * variation_noise(z, seed)

    def blend(self, images: Sequence[np.ndarray], t: float = 0.5, mask: np.ndarray | None = None,
              width: int | None = None, height: int | None = None,
              weights: Sequence[float] | None = None, refine_steps: int = 0,
              cancel: CancelToken | None = None, progress: ProgressCallback | None = None,
              warn: Callable[[str], None] | None = None) -> np.ndarray:
        """Blend textures in latent space and decode.

        * Two images, no mask, no weights: z = (1 - t) z_A + t z_B; t=0 gives
          A's reconstruction, t=1 B's.
        * ``weights`` (one per image, >= 0, not all 0; normalised to sum 1): the
          weighted mean of all images' latents; ``t`` is ignored.
        * ``mask`` (HxW in [0, 1], exactly two images): per cell
          z = (1 - m) z_A + m z_B, the mask resized (stretched, area-averaged) to
          the latent grid; mask 0 shows images[0], 1 shows images[1], and ``t`` is
          ignored (it is still checked to lie in [0, 1]).

        Output size: ``width`` x ``height`` if given, else images[0]'s size; each
        input is encoded at its own size and its latents fitted to the output
        grid with ``fit_latents`` (the mask applies to that grid). ``refine_steps`` > 0: each input's latents
        are refined toward it first (``refine``), so each side of the blend keeps its own layout and look; ``warn``
        hears of each input the model cannot draw (``fit_warning_loss``).
        """
        t = float(t)
        if not np.isfinite(t) or not 0.0 <= t <= 1.0:
            raise ValueError(f"blend factor t must lie in [0, 1], got {t}")
        if isinstance(images, np.ndarray) or len(images) < 2:
            raise ValueError("blend needs a sequence of at least two images")
        checked = [check_rgb(im, f"image {i + 1}") for i, im in enumerate(images)]
        out_h = int(height) if height is not None else checked[0].shape[0]
        out_w = int(width) if width is not None else checked[0].shape[1]
        _check_size(out_w, out_h)
        f = self.downsample
        steps = _check_refine_steps(refine_steps)

        encoded, decoder_seed = self._encoded_for_decoding(checked, steps, 0, cancel, progress, warn)
        latents = [fit_latents(z, grid_size(out_h, f), grid_size(out_w, f)) for z in encoded]
        if mask is not None:
            if len(latents) != 2:
                raise ValueError(f"a mask blends exactly two images (mask 0 = first, 1 = second), got {len(latents)}")
            m = torch.from_numpy(check_mask(mask))[None, None]
            rows, cols = latents[0].shape[-2:]
            m = F.interpolate(m, size=(rows, cols), mode="bilinear", antialias=True, align_corners=False)
            m = m.clamp(0.0, 1.0)
            z = self.mix_latents(latents, [1.0 - m, m])
        else:
            if weights is None:
                if len(latents) != 2:
                    raise ValueError("blending more than two images needs weights (one per image)")
                w = [1.0 - t, t]
            else:
                w = [float(v) for v in weights]
                if len(w) != len(latents):
                    raise ValueError(f"got {len(w)} weights for {len(latents)} images")
                if any((not np.isfinite(v)) or v < 0 for v in w) or sum(w) <= 0:
                    raise ValueError("blend weights must be non-negative and not all zero")
                total = sum(w)
                w = [v / total for v in w]
            kept = [(wi, zi) for wi, zi in zip(w, latents) if wi != 0.0]
            z = self.mix_latents([zi for _, zi in kept], [wi for wi, _ in kept])
            if len(w) == 2 and w[1] == 0.0:
                z = latents[0]  # exact endpoint, no rounding from the weighted sum
            elif len(w) == 2 and w[0] == 0.0:
                z = latents[1]
        return self.decode(z, out_w, out_h, seed=decoder_seed)


def variation_scale(z: torch.Tensor) -> torch.Tensor:
    """Per-sample, per-channel noise scale: the spatial std of the latents themselves.

    A small floor keeps flat inputs (1-cell grids, solid colours) variable;
    channels the decoder ignores stay harmless.
    """
    scale = z.float().std(dim=(2, 3), keepdim=True, unbiased=False)
    return torch.maximum(scale, 0.05 * scale.mean() + 1e-3)  # a device tensor: no host round trip


def _check_refine_steps(steps) -> int:
    if isinstance(steps, (int, np.integer)) and not isinstance(steps, bool) and 0 <= steps <= MAX_REFINE_STEPS:
        return int(steps)
    raise ValueError(f"refine steps must be a whole number from 0 to {MAX_REFINE_STEPS}, not {steps!r}")


def candidate_seeds(seed: int, count: int | None = None) -> list[int]:
    """``seed`` and ``count - 1`` seeds derived from it (``REFINE_SEED_CANDIDATES`` in all by default)."""
    count = REFINE_SEED_CANDIDATES if count is None else int(count)
    derived = [int(np.random.SeedSequence([int(seed) % 2 ** 63, k]).generate_state(1)[0]) for k in range(1, count)]
    return [int(seed)] + derived


def variation_noise(z: torch.Tensor, seed: int) -> torch.Tensor:
    """Seeded unit-strength perturbation for latents ``z`` (see ``TextureVAE.vary``)."""
    eps = torch.randn(z.shape, generator=seeded_generator(int(seed), "cpu"), dtype=torch.float32, device="cpu")
    return eps.to(z.device) * variation_scale(z)


def _check_strength(strength: float) -> float:
    s = float(strength)
    if not np.isfinite(s) or s < 0:
        raise ValueError(f"variation strength must be 0 or more (0 = the reconstruction), got {strength}")
    return s


def _check_size(width: int, height: int, max_pixels: int = 8192 * 8192) -> None:
    if width < MIN_SIDE or height < MIN_SIDE:
        raise ValueError(f"output size must be at least {MIN_SIDE}x{MIN_SIDE} pixels, got {width}x{height}")
    if width * height > max_pixels:
        raise ValueError(f"output size {width}x{height} is more than {max_pixels:,} pixels; choose a smaller size")


def load_texture_vae(path: str | os.PathLike, device=None) -> TextureVAE:
    return TextureVAE.load(path, device)
