"""Training the conditional texture GAN by distillation from the instant synthesizer.

The instant synthesizer (``core.texture_synth``) already makes good tileable textures from one
exemplar, but takes seconds per image. This recipe makes the GAN's CPU training affordable by
learning from it:

1. **targets, once**: ``tiles`` synthesized tileable tiles per material at the exemplar's native
   scale (cached on disk, keyed by the exemplars and the synthesis settings); training crops are cut
   from them with wrap-around (they tile), plus a share of crops of the exemplar itself;
2. **cheap losses first**: per material, the sliced Wasserstein distance of raw pixel patches at every
   stage of the coarse-to-fine generator against the target downscaled to that stage (the layout is
   learnt at the coarse stages) and of VGG19 features of the full-resolution output (texture statistics);
3. **then the adversarial term**: after ``adversarial_from`` steps a label-conditioned PatchGAN
   (one logit map per material) sharpens what the statistics leave soft.

Training is resumable to the bit: the generator, its EMA, the discriminator, both optimisers and all
random generators are saved in ``NAME.train.safetensors``; a stopped run continued gives the same
weights as one uninterrupted run of the same number of steps.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..common.accelerate import compile_in_place, compiled_features, mark_training_step
from ..common.checkpoints import (CheckpointError, fingerprint_arrays, load_training_state, save_model_and_state,
                                  sync_model_with_state)
from ..common.device import adam, host_to_device, pick_device, tensors_to_device
from ..common.jobs import CancelToken, ProgressCallback, timed_training
from ..common.perception import TextureFeatures
from ..common.quality import course_repeat, draw_directions, sliced_wasserstein, sliced_wasserstein_per_sample
from .conditional import CONDITIONAL_VERSION, ConditionalGANConfig, ConditionalGenerator, architecture_of, \
    PARAMETER_KINDS, build_conditional, grow_parameters, grows_parameters, hold_fine_lattice_gates, \
    is_fine_stage_parameter, parameter_kind, stage_downscale
from .generate import KIND
from .train import EMAGANTrainer, load_exemplars, training_state_path

PATCH = 4  # side of the raw pixel patches of the patch loss
PROJECTIONS = 32
_COSMETIC_FIELDS = ("preview_every", "preview_size")


# --------------------------------------------------------------------------- distilled targets

def tiles_cache_path(cache_dir: Path, exemplar: np.ndarray, count: int, size: int, seed: int,
                     steps: int | None = None) -> Path:
    """Where ``synthesized_tiles`` caches these tiles. The synthesizer's version is part of the key: a better
    teacher replaces tiles cached from an older one."""
    from ..texture_synth import SYNTHESIS_VERSION

    settings = json.dumps([fingerprint_arrays([exemplar]), count, size, seed, steps, SYNTHESIS_VERSION])
    return Path(cache_dir) / f"tiles_{hashlib.sha256(settings.encode()).hexdigest()[:20]}.npy"


def synthesized_tiles(exemplar: np.ndarray, count: int, size: int, seed: int, cache_dir: Path | None,
                      steps: int | None = None) -> np.ndarray:
    """``count`` tileable ``size``-px tiles synthesized from ``exemplar`` (uint8 NxSxSx3), cached."""
    from ..texture_synth import synthesize

    path = tiles_cache_path(cache_dir, exemplar, count, size, seed, steps) if cache_dir is not None else None
    if path is not None and path.exists():
        tiles = np.load(path, allow_pickle=False)
        if tiles.shape == (count, size, size, 3):
            return tiles
    tiles = np.stack([np.round(np.clip(synthesize([exemplar], size, size, seed=seed * 1000 + i, tileable=True,
                                                  steps=steps).image, 0, 1) * 255).astype(np.uint8)
                      for i in range(count)])
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, tiles, allow_pickle=False)
        tmp.replace(path)
    return tiles


class TargetSampler:
    """Training targets per material: wrapped crops of its synthesized tiles or crops of its exemplar."""

    def __init__(self, exemplars: list[np.ndarray], tiles: list[np.ndarray], crop: int, exemplar_fraction: float,
                 generator: torch.Generator, device: torch.device, flips: bool = True):
        self.crop, self.fraction, self.gen, self.flips = crop, exemplar_fraction, generator, flips
        self.exemplars = [torch.from_numpy(np.ascontiguousarray(e.transpose(2, 0, 1))).to(device) for e in exemplars]
        self.tiles = [torch.from_numpy(np.ascontiguousarray(t.transpose(0, 3, 1, 2))).to(device) for t in tiles]

    def sample(self, label: int) -> torch.Tensor:
        g, c = self.gen, self.crop
        draw = float(torch.rand(1, generator=g, device="cpu"))
        use_exemplar = draw < self.fraction or self.tiles[label].shape[0] == 0
        if use_exemplar:
            src = self.exemplars[label]
            _, h, w = src.shape
            y = int(torch.randint(h - c + 1, (1,), generator=g, device="cpu"))
            x = int(torch.randint(w - c + 1, (1,), generator=g, device="cpu"))
            out = src[:, y:y + c, x:x + c]
        else:
            stack = self.tiles[label]
            tile = stack[int(torch.randint(stack.shape[0], (1,), generator=g, device="cpu"))]
            _, h, w = tile.shape
            y = int(torch.randint(h, (1,), generator=g, device="cpu"))
            x = int(torch.randint(w, (1,), generator=g, device="cpu"))
            rows = torch.arange(y, y + c, device=tile.device) % h
            cols = torch.arange(x, x + c, device=tile.device) % w
            out = tile.index_select(1, rows).index_select(2, cols).float() / 255.0
        if not self.flips:
            return out
        flips = torch.randint(2, (2,), generator=g, device="cpu").tolist()
        if flips[0]:
            out = out.flip(2)
        if flips[1]:
            out = out.flip(1)
        return out


# --------------------------------------------------------------------------- losses

def patch_sw(fake: torch.Tensor, real: torch.Tensor, gen: torch.Generator | None,
             directions: torch.Tensor | None = None) -> torch.Tensor:
    """Per sample, the sliced Wasserstein between the raw PATCHxPATCH pixel patches of two Nx3xHxW batches
    (an N-vector). ``directions``: drawn beforehand (``patch_directions``)."""
    pf = F.unfold(fake, PATCH)[:, :, :, None]  # N x 3*P*P x L x 1: patches as feature vectors
    pr = F.unfold(real, PATCH)[:, :, :, None]
    return sliced_wasserstein_per_sample(pf, pr, PROJECTIONS, gen, directions)


def patch_directions(stages: int, samples: int, gen: torch.Generator, device: torch.device) -> list[torch.Tensor]:
    """The projections of ``stages`` consecutive ``patch_sw`` calls on RGB batches of ``samples``, drawn as those
    calls would draw them, in one copy to the device."""
    return draw_directions([3 * PATCH * PATCH] * stages, PROJECTIONS, gen, device, samples=samples)


EXEMPLAR_FEATURE_SAMPLES = 1 << 14  # per layer: plenty for the quantiles of 1-D projections
# The recipe's whole-exemplar statistics term (``ConditionalGANConfig.exemplar_stats_weight``): the bundled
# training's since step 69,160 (tools/zoo/gan.py) and *Train From Image*'s.
WHOLE_EXEMPLAR_STATS = {"exemplar_stats_weight": 2.0, "exemplar_stats_crop": 192}


@torch.no_grad()
def exemplar_feature_sample(features: TextureFeatures, exemplar: torch.Tensor, gen: torch.Generator
                            ) -> list[torch.Tensor]:
    """Per layer, a fixed random sample of the VGG19 feature vectors of a whole exemplar (3xHxW in [0, 1], or
    uint8), as 1xCxKx1 (what ``sliced_wasserstein`` takes; its quantile matching handles the sizes)."""
    out = []
    image = exemplar[None].float() / 255.0 if exemplar.dtype == torch.uint8 else exemplar[None].float()
    for f in features(image):
        flat = f[0].flatten(1)
        if flat.shape[1] > EXEMPLAR_FEATURE_SAMPLES:
            keep = torch.randperm(flat.shape[1], generator=gen, device="cpu")[:EXEMPLAR_FEATURE_SAMPLES]
            flat = flat[:, keep.to(flat.device)]
        out.append(flat[None, :, :, None].contiguous())
    return out


def exemplar_sw(features: TextureFeatures, fake: torch.Tensor, reference: list[torch.Tensor],
                gen: torch.Generator) -> torch.Tensor:
    """Per-layer normalised sliced Wasserstein of one image's VGG19 features to an exemplar's feature sample."""
    total = fake.new_zeros(())
    directions = draw_directions([fr.shape[1] for fr in reference], PROJECTIONS, gen, fake.device)  # one copy
    for ff, fr, dirs in zip(features(fake), reference, directions):
        total = total + sliced_wasserstein(ff, fr, PROJECTIONS, directions=dirs) / (fr.pow(2).mean() + 1e-8)
    return total / len(reference)


SPECTRUM_POOL = 3  # amplitude spectra are smoothed over 3x3 frequencies: one sample's speckle, not its peaks
SPECTRUM_CROPS = 64  # exemplar crops averaged into a material's reference spectrum


def amplitude_spectrum(images: torch.Tensor) -> torch.Tensor:
    """Smoothed amplitude spectra (B x C x S x S//2+1) of B x C x S x S images: each channel's mean removed and
    a Hann window applied (exemplar crops do not tile, so unwindowed they would leak edges into every
    frequency), the power averaged over ``SPECTRUM_POOL`` neighbouring frequencies, then its square root."""
    side = images.shape[-1]
    window = torch.hann_window(side, periodic=False, dtype=images.dtype, device=images.device)
    centred = images - images.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.rfft2(centred * (window[:, None] * window[None, :])).abs().pow(2)
    b, c, h, w = power.shape
    power = F.avg_pool2d(power.reshape(b * c, 1, h, w), SPECTRUM_POOL, 1, SPECTRUM_POOL // 2,
                         count_include_pad=False).reshape(b, c, h, w)
    return (power + 1e-12).sqrt()


@torch.no_grad()
def exemplar_spectrum(exemplar: torch.Tensor, side: int, gen: torch.Generator) -> torch.Tensor:
    """A material's reference: the mean smoothed amplitude spectrum (C x side x side//2+1) of up to
    ``SPECTRUM_CROPS`` random side x side crops of its exemplar (C x H x W in [0, 1], or uint8)."""
    image = exemplar.float() / 255.0 if exemplar.dtype == torch.uint8 else exemplar.float()
    _, h, w = image.shape
    if min(h, w) < side:
        raise ValueError(f"the spectrum term needs exemplars of at least {side} px per side, not {h}x{w}")
    ys = torch.randint(h - side + 1, (SPECTRUM_CROPS,), generator=gen, device="cpu").tolist()
    xs = torch.randint(w - side + 1, (SPECTRUM_CROPS,), generator=gen, device="cpu").tolist()
    crops = torch.stack([image[:, y:y + side, x:x + side] for y, x in zip(ys, xs)])
    return amplitude_spectrum(crops).mean(0)


def spectrum_loss(fake: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of a 1 x C x S x S image's smoothed amplitude spectrum from a reference's,
    over the reference's mean square: 0 when the periods and their strengths agree."""
    return (amplitude_spectrum(fake)[0] - reference).pow(2).mean() / (reference.pow(2).mean() + 1e-12)


def spectrum_losses(fakes: torch.Tensor, references: torch.Tensor, weights: list[float]) -> torch.Tensor:
    """``sum(weights[i] * spectrum_loss(fakes[i:i+1], references[i]))`` in one pass over the batch."""
    each = ((amplitude_spectrum(fakes) - references).pow(2).flatten(1).mean(1)
            / (references.pow(2).flatten(1).mean(1) + 1e-12))
    return (each * host_to_device(torch.tensor(weights, dtype=each.dtype, device="cpu"), each.device)).sum()


def course_loss(fake: torch.Tensor, real: torch.Tensor, labels: Sequence[int],
                periods: Sequence[tuple[int, int]]) -> torch.Tensor:
    """``ConditionalGANConfig.course_weight``'s term, summed over the batch: each crop of a material with courses
    by how far its repeat (``course_repeat``) falls short of its real crop's (never pushed past it: a wall's own
    crops do not repeat exactly)."""
    total = fake.new_zeros(())
    for i, label in enumerate(labels):
        axis, period = periods[label]
        if period:
            with torch.no_grad():
                target = course_repeat(real[i:i + 1].float(), axis, period)
            total = total + F.relu(target - course_repeat(fake[i:i + 1].float(), axis, period)).sum()
    return total


def vgg_sw(features: TextureFeatures, fake: torch.Tensor, real: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Per-sample, per-layer normalised sliced Wasserstein of VGG19 features (the batch mixes materials)."""
    with torch.no_grad():
        real_feats = features(real)
    fake_feats = features(fake)
    total = fake.new_zeros(())
    directions = draw_directions([f.shape[1] for f in real_feats], PROJECTIONS, gen, fake.device,
                                 samples=fake.shape[0])  # every layer's, one copy
    for ff, fr, dirs in zip(fake_feats, real_feats, directions):
        energy = fr.flatten(1).pow(2).mean(1) + 1e-8
        total = total + (sliced_wasserstein_per_sample(ff, fr, PROJECTIONS, directions=dirs) / energy).sum()
    return total / (len(fake_feats) * fake.shape[0])


def _widened_moments(moments: dict, placement: list | None, shape: torch.Size) -> dict:
    """A parameter's Adam moments after ``conditional.widen_parameters`` moved its values (``placement``; None:
    not moved). A value multiplied by ``f`` has gradients ``1 / f`` times the old: its first moment is divided by
    ``f``, its second by ``f^2``. The added entries start with none, as a fresh parameter's: their gradients are
    far smaller than the kept entries' (they reach the image through fresh weights), and the tensor's mean second
    moment held them still (grown at 95,906 steps with it, the added rows moved 1e-4 in 300 steps)."""
    if placement is None:
        return moments
    first, second = moments["exp_avg"], moments["exp_avg_sq"]
    wide_first = torch.zeros(shape, dtype=first.dtype, device=first.device)
    wide_second = torch.zeros(shape, dtype=second.dtype, device=second.device)
    for old_index, new_index, factor in placement:
        wide_first[new_index] = first[old_index] / factor
        wide_second[new_index] = second[old_index] / factor ** 2
    return {**moments, "exp_avg": wide_first, "exp_avg_sq": wide_second}


# --------------------------------------------------------------------------- trainer

class MaterialTrainer(EMAGANTrainer):
    """One run's models, optimisers and seeded generators; ``step()`` is one training step."""

    def __init__(self, cfg: ConditionalGANConfig, sampler: TargetSampler, seed: int, device: torch.device,
                 features: TextureFeatures | None = None):
        self.cfg, self.device, self.sampler = cfg, device, sampler
        g, d = build_conditional(cfg, seed)
        g_ema, _ = build_conditional(cfg, seed)
        g_ema.load_state_dict(g.state_dict())
        self.g, self.d, self.g_ema = g.to(device), d.to(device), g_ema.to(device).eval()
        for p in self.g_ema.parameters():
            p.requires_grad_(False)
        # One group per parameter kind the generator has (cell patterns and lattice inputs at their own rates,
        # ``cell_lr_scale`` and ``lattice_lr_scale``); grown kinds are registered last, so the first group is the
        # generator's parameters in the order a model without them has.
        named = list(self.g.named_parameters())
        groups = {kind: [p for n, p in named if parameter_kind(n) == kind] for kind in PARAMETER_KINDS}
        self.group_kinds = [kind for kind in PARAMETER_KINDS if groups[kind]]
        self.opt_g = adam([{"params": groups[kind]} for kind in self.group_kinds], device, lr=cfg.lr_g,
                                      betas=(0.5, 0.99))
        self.opt_d = adam(self.d.parameters(), device, lr=cfg.lr_d, betas=(0.5, 0.99))
        self.features = features if features is not None else (TextureFeatures(device) if cfg.stats_loss_weight
                                                               or cfg.exemplar_stats_weight
                                                               else None)
        self.seed_streams(seed)
        self.steps_done = 0
        for m in (self.g, self.d):  # opt-in, CUDA only (common/accelerate.py)
            compile_in_place(m, device)
        if self.features is not None:  # the VGG19 is shared across the process: a private compiled wrapper
            self.features = compiled_features(self.features, device)
        self._exemplar_features: list[list[torch.Tensor]] | None = None
        self._exemplar_spectra: dict[int, list[torch.Tensor]] = {}

    def exemplar_features(self) -> list[list[torch.Tensor]]:
        """Every material's exemplar feature sample (``exemplar_feature_sample``), made on first use from a
        generator seeded by the exemplars' order alone, so a resumed training has the same ones."""
        if self._exemplar_features is None:
            gen = torch.Generator().manual_seed(len(self.sampler.exemplars))
            self._exemplar_features = [exemplar_feature_sample(self.features, e, gen) for e in self.sampler.exemplars]
        return self._exemplar_features

    def exemplar_spectra(self, side: int) -> list[torch.Tensor]:
        """Every material's reference amplitude spectrum at ``side`` px (``exemplar_spectrum``), made on first use
        from its own generator seeded by the exemplars' count and the side alone: a resumed training has the
        same ones, and no other random stream moves."""
        if side not in self._exemplar_spectra:
            gen = torch.Generator().manual_seed(len(self.sampler.exemplars) * 10007 + side)
            self._exemplar_spectra[side] = [exemplar_spectrum(e, side, gen) for e in self.sampler.exemplars]
        return self._exemplar_spectra[side]

    def spectrum_focus(self, label: int) -> float:
        """The spectrum term's weight for a material (``ConditionalGANConfig.spectrum_focus``)."""
        return self.cfg.spectrum_focus[label] if self.cfg.spectrum_focus else 1.0

    def grow_parameters(self, state: dict) -> None:
        """Turn a saved state of this trainer's generator without some of its grown kinds (cell patterns, lattice
        inputs), or with narrower stages, into one with them (in place): the weights gain the fresh seeded
        parameters and zero gates (widened: ``conditional.widen_parameters``), and the generator's optimiser gets
        one new group per added kind (its own rate) with no moments yet. The discriminator and the random streams
        are unchanged, so the grown training goes on where it stopped."""
        saved_cfg = ConditionalGANConfig.from_dict(state["config"])
        for name in ("g", "g_ema"):
            state[name], placements = grow_parameters(state[name], getattr(self, name), saved_cfg)
        # The optimiser's moments are indexed by position over its groups: map them from the saved generator's
        # parameter order onto the grown one's (a kind may gain parameters between two it had: more lattice
        # stages), and give each added kind a group of its own.
        with torch.random.fork_rng(devices=[]):  # only its parameters' names are wanted
            saved = ConditionalGenerator(saved_cfg)
        old = [[n for n, _ in saved.named_parameters() if parameter_kind(n) == kind] for kind in PARAMETER_KINDS]
        old = [names for names in old if names]
        new = [[n for n, _ in self.g.named_parameters() if parameter_kind(n) == kind] for kind in self.group_kinds]
        opt = state["opt_g"]
        groups = opt["param_groups"]
        if [len(g["params"]) for g in groups] != [len(names) for names in old] or \
                [i for g in groups for i in g["params"]] != list(range(sum(map(len, old)))):
            raise CheckpointError("the generator's optimiser state does not match its parameters before growing")
        old_order = [n for names in old for n in names]
        position = {n: i for i, n in enumerate(n for names in new for n in names)}
        moved = {}
        for i, moments in opt["state"].items():
            name = old_order[int(i)]
            moved[position[name]] = _widened_moments(moments, placements.get(name), state["g"][name].shape)
        opt["state"] = moved
        start = 0
        for k, names in enumerate(new):
            if k == len(groups):
                groups.append({**groups[0]})
            groups[k] = {**groups[k], "params": list(range(start, start + len(names)))}
            start += len(names)
        state["config"] = {**state.get("config", {}),
                           **{k: self.cfg.to_dict()[k] for k in ("g_channels", *ConditionalGANConfig.GROWABLE_FIELDS)}}

    def scaled_update_parameters(self) -> list[torch.Tensor]:
        """The finest stages' parameters when they train at their own rate (``fine_lr_scale``)."""
        if self.cfg.fine_lr_scale == 1.0:
            return []
        n = len(self.cfg.g_channels)
        return [p for name, p in self.g.named_parameters() if is_fine_stage_parameter(name, n)]

    def update_scale(self) -> float:
        return self.cfg.fine_lr_scale

    def _noise(self, labels: torch.Tensor, crop: int | None = None):
        g, n, grid = self.g, labels.shape[0], (crop or self.cfg.crop_size) // self.cfg.stride
        local = torch.randn(n, g.local_dim, grid, grid, generator=self.noise_gen, device="cpu")
        phase = torch.rand(n, g.periodic_dim, generator=self.noise_gen, device="cpu") * (2 * math.pi)
        fine = [torch.randn(n, *shape, generator=self.noise_gen, device="cpu")
                for shape in g.fine_noise_shapes(grid, grid)]
        if g.lattice_stages:  # drawn last: a generator without lattice inputs keeps its random stream
            fine = g.lattice_inputs(fine, torch.rand(n, 2, generator=self.noise_gen, device="cpu"))
        local, phase, *fine = tensors_to_device([local, phase, *fine], self.device)  # one copy, no host wait
        return local, phase, fine

    def step(self) -> dict[str, torch.Tensor]:
        mark_training_step()  # CUDA graph trees (common/accelerate.py): a new step begins
        cfg, g, d = self.cfg, self.g, self.d
        g.train()
        n = cfg.batch_size
        scale = cfg.finish_lr_scale if cfg.finishing(self.steps_done) else 1.0
        # Set every step, so resumes agree; the grown kinds at their own rates.
        own = {"cell": cfg.cell_lr_scale, "lattice": cfg.lattice_lr_scale}
        for kind, group in zip(self.group_kinds, self.opt_g.param_groups):
            group["lr"] = cfg.lr_g * scale * own.get(kind, 1.0)
        for group in self.opt_d.param_groups:
            group["lr"] = cfg.lr_d * scale
        # Labels cycle through the materials from a seeded offset, so every material is seen equally.
        start = int(torch.randint(g.n_materials, (1,), generator=self.data_gen, device="cpu"))
        chosen = ((torch.arange(n, device="cpu") + start) % g.n_materials).tolist()  # host ints: no device reads
        real = torch.stack([self.sampler.sample(k) for k in chosen]).to(self.device)
        labels = host_to_device(torch.tensor(chosen, device="cpu"), self.device)
        local, phase, fine = self._noise(labels)
        canvas = g.build_input(local, g.embedding[labels], phase)
        stages = g.stage_images(canvas, fine)
        fake = stages[-1]
        losses: dict[str, torch.Tensor] = {}
        targets = stage_downscale(real, len(stages))
        patch = fake.new_zeros(())
        for img, tgt, dirs in zip(stages, targets, patch_directions(len(stages), n, self.proj_gen, fake.device)):
            patch = patch + patch_sw(img, tgt, None, dirs).sum()
        patch = patch / (n * len(stages))
        loss_g = cfg.patch_loss_weight * patch
        losses["patch"] = patch.detach()
        spectrum = fake.new_zeros(())
        if cfg.spectrum_weight:  # every crop of the batch against its material's spectrum at the crop's size
            references = self.exemplar_spectra(fake.shape[-1])
            weighed = [(i, f) for i, f in enumerate(map(self.spectrum_focus, chosen)) if f]
            if weighed:
                rows = [i for i, _ in weighed]
                spectrum = spectrum + spectrum_losses(fake[rows], torch.stack([references[chosen[i]] for i in rows]),
                                                      [f for _, f in weighed]) / n
        if cfg.stats_loss_weight:
            k = max(1, min(n, cfg.stats_samples))  # labels cycle, so every material gets its share
            stats = vgg_sw(self.features, fake[:k], real[:k], self.proj_gen)
            loss_g = loss_g + cfg.stats_loss_weight * stats
            losses["stats"] = stats.detach()
        if cfg.exemplar_stats_weight or cfg.spectrum_weight:
            # One larger output of the step's first material (or a focus-weighted draw) against its whole
            # exemplar (the bench's scale): its VGG19 statistics and its spectrum.
            if cfg.exemplar_focus:
                focus = torch.tensor(cfg.exemplar_focus, dtype=torch.float64, device="cpu")
                first = int(torch.multinomial(focus, 1, generator=self.data_gen))
            else:
                first = chosen[0]
            label = host_to_device(torch.tensor([first], device="cpu"), self.device)
            local, phase, fine = self._noise(label, cfg.exemplar_stats_crop)
            big = g.stage_images(g.build_input(local, g.embedding[label], phase), fine, final_only=True)[-1]
            if cfg.exemplar_stats_weight:
                whole = exemplar_sw(self.features, big, self.exemplar_features()[first], self.proj_gen)
                loss_g = loss_g + cfg.exemplar_stats_weight * whole
                losses["exemplar"] = whole.detach()
            focus = self.spectrum_focus(first) if cfg.spectrum_weight else 0.0
            if focus:
                spectrum = spectrum + focus * spectrum_loss(big, self.exemplar_spectra(big.shape[-1])[first])
        if cfg.spectrum_weight:
            loss_g = loss_g + cfg.spectrum_weight * spectrum
            losses["spectrum"] = spectrum.detach()
        if cfg.course_weight and cfg.course_periods:
            courses = course_loss(fake, real, chosen, cfg.course_periods) / n
            loss_g = loss_g + cfg.course_weight * courses
            losses["courses"] = courses.detach()
        adversarial = self.steps_done >= cfg.adversarial_from and cfg.adversarial_weight > 0
        if adversarial:
            d.train()
            loss_d = F.softplus(-d(real, labels)).mean() + F.softplus(d(fake.detach(), labels)).mean()
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_d.step()
            g_adv = F.softplus(-d(fake, labels)).mean()
            loss_g = loss_g + cfg.adversarial_weight * g_adv
            losses["d"], losses["g_adv"] = loss_d.detach(), g_adv.detach()
        self.generator_update(loss_g)
        if cfg.fine_lattice_open:  # both: the moving average of held weights is not held (the gate is bilinear)
            for model in (g, self.g_ema):
                hold_fine_lattice_gates(model, cfg.fine_lattice_open)
        return losses


def train_material_gan(exemplars: Sequence[str | Path | np.ndarray], materials: Sequence[str], out_path: str | Path,
                       steps: int | None = None, *, minutes: float | None = None,
                       config: ConditionalGANConfig | None = None, seed: int = 0, device=None,
                       tiles: int = 16, tile_size: int = 256, synth_steps: int | None = None,
                       cache_dir: str | Path | None = None, progress: ProgressCallback | None = None,
                       cancel: CancelToken | None = None, checkpoint_minutes: float = 4.0,
                       extra_config: dict | None = None, state_path: str | Path | None = None,
                       warm_start: str | Path | None = None,
                       initial_generator: dict[str, torch.Tensor] | None = None) -> dict:
    """Train (or continue) a conditional texture GAN over ``materials`` (one exemplar each).

    Stops at ``steps`` total steps or after ``minutes`` of wall time, whichever comes first, always
    with a checkpoint; returns {"steps", "seconds", "losses"} (seconds: the total training time).
    ``state_path`` (default ``NAME.train.safetensors`` beside the model) holds the training state;
    ``warm_start`` names another run's state (same architecture, other sizes, e.g. the CPU run's for a
    GPU profile) whose weights and step start this run when it has no state of its own.
    ``initial_generator``: generator weights (this config's architecture) that a fresh run starts from, at step 0
    with a fresh discriminator (``start_from_materials``: a trained materials GAN fine-tuned to new exemplars).
    """
    out = Path(out_path)
    if len(exemplars) != len(materials) or not materials:
        raise ValueError("one exemplar per material is needed")
    if steps is None and minutes is None:
        raise ValueError("give steps, minutes or both")
    began = time.perf_counter()
    dev = pick_device(device)
    cfg = config or ConditionalGANConfig(n_materials=len(materials))
    if cfg.n_materials != len(materials):
        raise ValueError(f"config has {cfg.n_materials} materials, {len(materials)} given")
    arrays, _ = load_exemplars(list(exemplars), cfg.max_exemplar_side)
    fingerprint = fingerprint_arrays(arrays)
    cache = Path(cache_dir) if cache_dir is not None else None
    if cfg.exemplar_fraction >= 1.0:  # every crop from the exemplars: no teacher tiles to synthesize
        tiles = 0
    target_tiles = [synthesized_tiles(a, tiles, min(tile_size, *a.shape[:2]) if tiles else tile_size, seed, cache,
                                      synth_steps) if tiles else np.zeros((0, 1, 1, 3), np.uint8) for a in arrays]
    crop = min(cfg.crop_size, *(min(a.shape[:2]) // cfg.stride * cfg.stride for a in arrays))
    if crop != cfg.crop_size:
        raise ValueError(f"exemplars must be at least {cfg.crop_size} px per side for crop_size {cfg.crop_size}")
    sampler = TargetSampler(arrays, target_tiles, crop, cfg.exemplar_fraction if tiles else 1.0,
                            torch.Generator(), dev, flips=cfg.augment_flips)
    trainer = MaterialTrainer(cfg, sampler, seed, dev)
    sampler.gen = trainer.data_gen  # one data stream, saved with the state
    state_path = Path(state_path) if state_path is not None else training_state_path(out)
    step, losses, trained_seconds = 0, {}, 0.0
    if warm_start is not None and not state_path.exists():
        warm = load_training_state(warm_start, "cpu")
        if architecture_of(warm["config"]) != cfg.architecture():
            raise CheckpointError(f"{Path(warm_start).name} has another architecture; it cannot warm-start this run")
        for name in ("g", "d", "g_ema"):
            getattr(trainer, name).load_state_dict(warm[name])
        step = trainer.steps_done = int(warm["step"])
        trained_seconds = float(warm.get("trained_seconds", 0.0))
    if initial_generator is not None and warm_start is None and not state_path.exists():
        for net in (trainer.g, trainer.g_ema):
            # Lattice inputs the starting model lacks (the exemplar's own) keep their fresh weights.
            missing, unexpected = net.load_state_dict({k: v.float() for k, v in initial_generator.items()},
                                                      strict=False)
            if unexpected or any(parameter_kind(k) != "lattice" for k in missing):
                raise CheckpointError(f"the starting generator does not fit: missing {missing}, unexpected "
                                      f"{unexpected}")
            if missing:  # the exemplar's own lattice: its gates start open (a grown lattice's start closed)
                with torch.no_grad():
                    for gate in net.lattice_gates:
                        gate.bias.fill_(FINE_TUNE_LATTICE_GATE)
    if state_path.exists():
        state = load_training_state(state_path, "cpu")
        # The schedule may change between sessions (a finishing phase added to a running training), and a state
        # saved before it existed has none of its fields.
        free = _COSMETIC_FIELDS + cfg.SCHEDULE_FIELDS + cfg.SIZE_FIELDS
        # Fields added since the state was saved take their defaults (as when the model file is loaded).
        saved = {k: v for k, v in ConditionalGANConfig.from_dict(state.get("config", {})).to_dict().items()
                 if k not in free} if "n_materials" in state.get("config", {}) else {}
        now = {k: v for k, v in cfg.to_dict().items() if k not in free}
        if saved != now and grows_parameters(saved, now):
            trainer.grow_parameters(state)
            saved = now
        if state.get("data_fingerprint") != fingerprint or saved != now or state.get("seed") != seed:
            raise CheckpointError(f"{state_path.name} was trained on other exemplars or settings; "
                                  "delete it to start over")
        step = int(state["step"])
        trainer.load_state(state, step)
        losses = dict(state.get("losses", {}))
        trained_seconds = float(state.get("trained_seconds", 0.0))

    recipe = ("distilled from texture_synth" if tiles else "the exemplars' own crops") + \
        ("" if cfg.augment_flips else ", never mirrored")

    def save(at_step: int, seconds: float, losses: dict) -> None:
        model_config = {"name": out.name.removesuffix(".safetensors"), "version": CONDITIONAL_VERSION,
                        "architecture": cfg.architecture(), "training_config": cfg.to_dict(),
                        "materials": list(materials), "data_fingerprint": fingerprint, "steps": at_step,
                        "seed": seed, "stride": cfg.stride, "crop_size_used": crop,
                        "training_seconds": round(seconds, 1), "recipe": recipe,
                        "distilled_tiles": tiles, "device": str(dev), **(extra_config or {})}
        save_model_and_state(out, trainer.g_ema.state_dict(), model_config, KIND, state_path,
                             {"step": at_step, "seed": seed, "config": cfg.to_dict(), "data_fingerprint": fingerprint,
                              "losses": losses, "trained_seconds": seconds, **trainer.state()})

    if state_path.exists():
        sync_model_with_state(out, "steps", step, lambda s: save(s, trained_seconds, losses))
    return timed_training(trainer.step, save, step, steps, minutes, began, losses, trained_seconds,
                          checkpoint_minutes=checkpoint_minutes, name=out.name, progress=progress, cancel=cancel)



def distilled_config(fields: dict | None, n_materials: int) -> dict | None:
    """A job's (or ``--config``'s) fields for the distilled recipe, checked like any config and as a whole
    ``ConditionalGANConfig``; ``train_one_material`` lays them over the recipe's defaults. None: the defaults."""
    if not fields:
        return None
    from ..common.checkpoints import check_config_values
    check_config_values("config", KIND, fields)
    fields = dict(fields)
    if "g_channels" in fields and "g_convs" not in fields:  # one conv per stage unless told
        fields["g_convs"] = [1] * len(fields["g_channels"])
    ConditionalGANConfig.from_dict({**fields, "n_materials": n_materials})  # raises on a bad value now
    return fields


def bundled_materials_path() -> Path:
    """The bundled materials GAN (models/texture_gan/materials.safetensors): what *Train From Image* fine-tunes."""
    return Path(__file__).resolve().parents[2] / "models" / "texture_gan" / "materials.safetensors"


def start_from_materials(model_path: str | Path, exemplars: Sequence[np.ndarray],
                         materials: Sequence[str] | None = None) -> tuple[dict, dict[str, torch.Tensor], list[str]]:
    """What fine-tuning a trained materials GAN (``model_path``, the bundled one or any conditional model) to new
    exemplars starts from: (its architecture's config fields, its generator's weights with one embedding row per
    exemplar, the materials those rows came from). ``materials``: each exemplar's starting material by name (what
    ``start_trials`` picked); by default the nearest (``nearest_materials``): the generator already draws courses,
    cells and grain and cracks, so a new exemplar starts from the closest of them instead of from noise, and the
    structure is what takes long to learn (a FiLM row recolours in a few steps). In colour a procedural red brick
    wall was nearest the grey-beige cobblestones, and 100 steps from them drew cells (2.18x its crops' distance);
    from the brick wall 1.35x, from scratch 4.76x."""
    architecture, model = _materials_model(model_path)
    if materials is None:
        materials = [ranked[0] for ranked in _rank_materials(model, exemplars)]
    if len(materials) != len(exemplars) or any(name not in model.materials for name in materials):
        raise ValueError(f"one starting material per exemplar, of {', '.join(model.materials)}; got {materials}")
    rows = [model.generator.embedding.detach()[model.materials.index(name)].float() for name in materials]
    # Not its lattice inputs: their frequencies are one bundled material's weave (fabric's 32 px blocks and its
    # threads), and from them 100 steps on a bark photograph drew its fine grain as a regular weave.
    weights = {k: v.detach().float().clone() for k, v in model.generator.state_dict().items()
               if parameter_kind(k) != "lattice"}
    weights["embedding"] = torch.stack(rows)
    return architecture, weights, list(materials)


def nearest_materials(model_path: str | Path, exemplars: Sequence[np.ndarray]) -> list[list[str]]:
    """Each exemplar's materials of the materials GAN at ``model_path``, nearest first: the VGG19 texture distance
    of each material's output (seed 0, as large as the exemplar up to 128 px) to the exemplar, both in grey with the
    same mean and contrast (structure, not colour: a fine-tune recolours in a few steps)."""
    return _rank_materials(_materials_model(model_path)[1], exemplars)


def _materials_model(model_path: str | Path):
    """(the fine-tune's architecture fields, the materials GAN at ``model_path`` on the CPU); refuses a model that
    is not a materials GAN."""
    from ..common.checkpoints import load_checkpoint
    from .materials import MaterialTextureGenerator

    tensors, config = load_checkpoint(Path(model_path), expected_kind=KIND, device="cpu")
    architecture = fine_tune_architecture(config, Path(model_path).name)
    return architecture, MaterialTextureGenerator.from_checkpoint(Path(model_path), tensors, config,
                                                                  torch.device("cpu"))


def _rank_materials(model, exemplars: Sequence[np.ndarray]) -> list[list[str]]:
    from ..common.quality import vgg_texture_distance

    ranked = []
    for exemplar in exemplars:
        side = max(model.stride, min(128, *exemplar.shape[:2]) // model.stride * model.stride)
        distances = [vgg_texture_distance(_grey(model.generate(side, side, seed=0, material=name)), _grey(exemplar))
                     for name in model.materials]
        ranked.append([model.materials[i] for i in np.argsort(distances, kind="stable")])
    return ranked


def _grey(rgb: np.ndarray) -> np.ndarray:
    """Luminance as grey RGB with mean 0.5 and standard deviation 0.2: structure, not colour or contrast."""
    grey = np.asarray(rgb, np.float32)[..., :3].mean(axis=-1, keepdims=True)
    grey = (grey - grey.mean()) / (grey.std() + 1e-6) * 0.2 + 0.5
    return np.clip(np.repeat(grey, 3, axis=-1), 0.0, 1.0)


def fine_tune_architecture(config: dict, name: str, lattice_frequencies: Sequence = ()) -> dict:
    """The config fields of a model fine-tuned from a materials GAN with this model ``config``: its architecture
    but its material count and lattice inputs (``start_from_materials``); ``lattice_frequencies``: the new
    exemplars' own (``exemplar_lattice_fields``)."""
    arch = config.get("architecture") or {}
    if "n_materials" not in arch:
        raise CheckpointError(f"{name} is not a materials GAN; only one can be fine-tuned to new exemplars")
    fields = {k: v for k, v in arch.items() if k in ConditionalGANConfig.ARCHITECTURE_FIELDS and k != "n_materials"}
    return {**fields, "lattice_frequencies": tuple(map(tuple, lattice_frequencies))}


# Train From Image on an exemplar that repeats on a lattice (brick courses, tiles: what the instant synthesizer's
# ``structure.find_lattice`` finds) gives the generator that lattice's waves as inputs, as the bundled fabric's
# weave has, and the spectrum term that makes it draw on them (the VGG19 statistics do not see where bricks
# repeat). On the bench's brick wall, 300 steps from the bundled model: without them the courses wave and the
# bricks come out square (lattice regularity 0.10 against the wall's 0.85, VGG19 ratio 1.08); with the lattice
# and no spectrum term 0.33-0.44 (0.94); with both, training seeds 0-2, 0.92-0.94 (0.74-0.80): straight courses,
# bricks of the wall's length. Only the coarse lattice stages take these (``conditional.lattice_stage_frequencies``):
# a finer frequency would cost every output pixel.
# A fine-tune's fresh lattice gates start open, at this for every channel. Closed (0, as when a lattice is grown
# into a running training, so its images do not change), whether the generator used them by 300 steps depended on
# the training seed (regularity 0.74 / 0.11 / 0.37).
FINE_TUNE_LATTICE_GATE = 1.0
EXEMPLAR_LATTICE_REACH = 2  # reciprocal lattice points m b1 + n b2 with |m|, |n| <= 2
# Only a lattice the exemplar repeats on closely (autocorrelation at every repeat vector at least this): drawn and
# rendered patterns (0.84-0.98 for the procedural walls and weaves). Photographs' lattices are loose (0.30-0.60
# over the project's brick, tile and plank photographs: bricks vary in length, courses in height) and
# `find_lattice` may pick a vector a few px off; on a pale brick wall (0.41 / 0.39) its waves cut the bricks
# short (VGG19 ratio 1.64 against 1.07 without them, 300 steps).
EXEMPLAR_LATTICE_MIN_STRENGTH = 0.7
EXEMPLAR_LATTICE_RECIPE = {"lattice_lr_scale": 4.0, "spectrum_weight": 2.0}


def exemplar_lattice_fields(arrays: Sequence[np.ndarray], stride: int, n_stages: int) -> dict:
    """Config fields for exemplars' own lattices: their frequencies (one list for the model, each material's
    gates pick its own), the lattice inputs' rate and the spectrum term for the materials with a lattice alone
    (``spectrum_focus``). Empty when no exemplar repeats on a lattice, or the generator has no coarse lattice
    stage: such a run trains as before."""
    from ..texture_synth.structure import find_lattice, lattice_frequencies
    from .conditional import LATTICE_NYQUIST, LATTICE_STAGES
    coarse = [i for i in LATTICE_STAGES if 0 < i < n_stages - 1]
    if not coarse:
        return {}
    limit = LATTICE_NYQUIST * 2 ** max(coarse) / stride
    lattices = [find_lattice(np.asarray(a)) for a in arrays]
    lattices = [lattice if lattice and min(lattice.strengths) >= EXEMPLAR_LATTICE_MIN_STRENGTH else None
                for lattice in lattices]
    frequencies: list[tuple[float, float]] = []
    for lattice in lattices:
        for f in lattice_frequencies(lattice, limit, EXEMPLAR_LATTICE_REACH) if lattice else ():
            if f not in frequencies:
                frequencies.append(f)
    if not frequencies:
        return {}
    return {"lattice_frequencies": tuple(frequencies[:32]), **EXEMPLAR_LATTICE_RECIPE,
            "spectrum_focus": tuple(1.0 if lattice else 0.0 for lattice in lattices)}


def train_one_material(exemplars: Sequence[str | Path | np.ndarray], out_path: str | Path, steps: int, *,
                       config=None, seed: int = 0, device=None, progress: ProgressCallback | None = None,
                       cancel: CancelToken | None = None, checkpoint_every: int = 200, resume: bool = True,
                       tiles: int = 4, start_from: str | Path | None = None,
                       start_trial_steps: int | None = None) -> Path:
    """*Train From Image* with the distillation recipe: each exemplar becomes one material of the model
    (one exemplar: a one-material model). ``config``: a ``ConditionalGANConfig`` (as it is), a dict of fields
    over the recipe's defaults, or None (the defaults: the bundled recipe's architecture and whole-exemplar term,
    its crops fitted to the smallest exemplar). Signature of ``train_texture_gan``. ``start_from``: a trained
    materials GAN to fine-tune (its architecture, its weights, each exemplar's starting material's embedding)
    instead of starting from random weights; a run that resumes its own state ignores it. The starting material:
    the best of short trials from the nearest few (``start_trials``) in a run long enough, else the nearest;
    ``start_trial_steps`` overrides the trials' length (0: none). The model's config records the pick
    (``started_from``)."""
    from ..common.checkpoints import read_checkpoint_config
    from ..common.images import load_image
    from ..common.perception import cache_dir
    from ..common.jobs import part_progress
    from .start_trials import StartPick, remove_trials, run_trials, trial_steps_for

    items = [exemplars] if isinstance(exemplars, (str, Path, np.ndarray)) else list(exemplars)
    names = []
    for i, item in enumerate(items):
        stem = Path(load_image(item).source or "").stem if not isinstance(item, np.ndarray) else ""
        name = stem or f"material_{i + 1}"
        names.append(name if name not in names else f"{name}_{i + 1}")
    out = Path(out_path)
    state = training_state_path(out)
    if not resume:
        state.unlink(missing_ok=True)
        remove_trials(out)
    # The exemplars' sizes pick the crops and, for a fine-tune, its starting materials: read them once.
    arrays = (None if isinstance(config, ConditionalGANConfig) and start_from is None
              else load_exemplars(items, ConditionalGANConfig.max_exemplar_side)[0])
    lattice = {}
    if start_from is not None:  # its architecture, resumed or not (the state was saved with it)
        start_config = read_checkpoint_config(start_from)
        shape = ConditionalGANConfig.from_dict({**(start_config.get("architecture") or {}), "n_materials": 1})
        lattice = exemplar_lattice_fields(arrays, shape.stride, len(shape.g_channels))
        architecture = fine_tune_architecture(start_config, Path(start_from).name,
                                              lattice.get("lattice_frequencies", ()))
        if not state.exists():
            need = PATCH * shape.stride
            small = [a.shape[:2] for a in arrays if min(a.shape[:2]) < need]
            if small:
                h, w = small[0]
                raise ValueError(f"fine-tuning {Path(start_from).name} needs exemplars of at least {need} px per "
                                 f"side (one is {w}x{h}); train a smaller image from scratch (the Distilled recipe)")
        if isinstance(config, ConditionalGANConfig):
            config = config.to_dict()
        config = {**dict(config or {}), **architecture}
    if not isinstance(config, ConditionalGANConfig):
        # A fine-tune's exemplar lattice (measured there; from scratch the gates would start closed, untried).
        fields = {**lattice, **dict(config or {})}  # a job's own fields win
        base = ConditionalGANConfig.from_dict({**fields, "n_materials": len(items)})
        smallest = min(min(a.shape[:2]) for a in arrays) // base.stride * base.stride
        # At least PATCH pixels at the coarsest stage (the patch loss's side); smaller exemplars are refused.
        crop = fields.get("crop_size", max(PATCH * base.stride, min(base.crop_size, smallest)))
        whole = max(crop, min(WHOLE_EXEMPLAR_STATS["exemplar_stats_crop"], smallest))
        config = ConditionalGANConfig.from_dict({"crop_size": crop, "exemplar_stats_crop": whole,
                                                 "exemplar_stats_weight": WHOLE_EXEMPLAR_STATS["exemplar_stats_weight"],
                                                 **fields, "n_materials": len(items)})
    every_minutes = 4.0 if checkpoint_every >= 200 else 0.5
    common = dict(config=config, seed=seed, device=device, tiles=tiles, cache_dir=cache_dir() / "texture_gan_tiles",
                  cancel=cancel, checkpoint_minutes=every_minutes)
    initial, extra, report = None, {}, progress
    if start_from is not None and state.exists():
        remove_trials(out)  # left by a run stopped while it made its pick (they are deleted after it)
        started = read_checkpoint_config(out).get("started_from") if out.is_file() else None
        extra = {"started_from": started} if started else {}
    elif start_from is not None:
        trial_steps = trial_steps_for(steps, start_trial_steps)
        if trial_steps:
            def trial(path: Path, n: int, weights: dict, trial_progress) -> None:
                train_material_gan(items, names, path, n, initial_generator=weights, progress=trial_progress,
                                   **common)

            pick = run_trials(Path(start_from), arrays, out, steps, trial_steps, trial, progress, cancel)
            offset = pick.extra_steps(trial_steps)
            report = part_progress(progress, offset, steps + offset, f"from {', '.join(pick.materials)}")
        else:
            _, weights, picked = start_from_materials(start_from, arrays)
            pick = StartPick(picked, None, weights)
        initial = pick.weights
        extra = {"started_from": pick.record(Path(start_from).name, start_config.get("steps"))}
    train_material_gan(items, names, out, steps, progress=report, initial_generator=initial, extra_config=extra,
                       **common)
    return out
