"""Conditional texture GAN: one generator for many materials, picked (or mixed) by label.

The periodic spatial generator of ``model.py`` with three changes:

* **material embedding**: a learned table of one vector per material takes the place of the global
  code. It enters the input canvas (broadcast channels, and the wave vectors of the periodic noise are
  derived from it) and modulates every stage (FiLM: per-channel scale and shift from the embedding), so
  a weighted mix of two embeddings interpolates the materials; a pure label's weights give exactly that
  material's embedding, so the endpoints of an interpolation are the pure materials.
* **coarse to fine**: every stage has its own RGB head and the image is built as the coarsest stage's
  RGB, upsampled and refined by each finer stage's residual (a multi-scale generator). Training scores
  every stage against the target downscaled to its resolution, so the layout is learnt at the coarse
  stages and the finer ones add detail.
* the condition is read back from the canvas inside ``body`` (its embedding channels are constant over
  space), so tiling, the out-of-memory fallback and the periodic resize of ``generate.py`` work
  unchanged: a canvas carries everything the image depends on.

Every convolution still pads circularly: tileable by construction, any size in one pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..common.patchgan import PatchDiscriminator
from .model import (CircularUpsample, Generator, PixelNorm, TextureGANConfig, _conv, init_weights, pixel_norm_scale,
                    run_stage)

CONDITIONAL_VERSION = 2
LATTICE_STAGES = (1, 2)  # the coarse stages that take every lattice frequency they can (8 and 4 px per pixel)
LATTICE_NYQUIST = 0.4  # a stage takes a frequency up to this many cycles per its pixel (0.5: aliasing)


def coarse_lattice_stages(n_stages: int) -> list[int]:
    """The stages of ``LATTICE_STAGES`` a generator of ``n_stages`` has, never its last."""
    return [i for i in LATTICE_STAGES if 0 < i < n_stages - 1]


def lattice_stage_frequencies(frequencies: Sequence[Sequence[float]], stride: int, n_stages: int
                              ) -> dict[int, list[int]]:
    """Which lattice frequencies (indices) each stage takes. The coarse stages (``LATTICE_STAGES``, never the
    last) take every one under their Nyquist: a block lattice placed at two scales. A frequency too fine for all
    of them (a weave's threads, a few px apart) goes to the coarsest finer stage that can carry it, and to that
    one alone: the full-resolution stages pay for each channel at every output pixel."""
    def carries(i: int, f: Sequence[float]) -> bool:
        return max(map(abs, f)) * stride / 2 ** i <= LATTICE_NYQUIST
    coarse_stages = coarse_lattice_stages(n_stages)
    finer_stages = [i for i in range(1, n_stages) if i not in coarse_stages]
    stages: dict[int, list[int]] = {}
    for i in coarse_stages:
        keep = [k for k, f in enumerate(frequencies) if carries(i, f)]
        if keep:
            stages[i] = keep
    taken = {k for keep in stages.values() for k in keep}
    for k, f in enumerate(frequencies):
        finer = [i for i in finer_stages if carries(i, f)]
        if k not in taken and finer:
            stages.setdefault(finer[0], []).append(k)
    return dict(sorted(stages.items()))


@dataclass
class ConditionalGANConfig(TextureGANConfig):
    """``global_dim`` is the embedding width; ``n_materials`` rows in the embedding table."""

    n_materials: int = 1
    global_dim: int = 32
    local_dim: int = 16
    g_channels: tuple[int, ...] = (128, 64, 32, 16, 8)  # stride 16: a wide receptive field for courses and cells
    # Convolutions per stage: the two finest stages (1/2 and full resolution) hold most pixels,
    # one conv each keeps 2048^2 in one pass affordable on a CPU.
    g_convs: tuple[int, ...] = (2, 2, 2, 1, 1)
    d_channels: tuple[int, ...] = (32, 64, 128, 128)
    crop_size: int = 96
    batch_size: int = 4
    lr_g: float = 5e-4
    lr_d: float = 2e-4
    patch_loss_weight: float = 1.0  # sliced Wasserstein of raw pixel patches at every stage (cheap, coarse-to-fine)
    stats_loss_weight: float = 1.0  # sliced Wasserstein of VGG19 features of the full-resolution output
    stats_samples: int = 1  # of the batch, this many get the VGG19 term (it costs ~4x the rest of a step on a CPU)
    # The adversarial term, once ``adversarial_from`` steps are done (0: the discriminator is neither used nor
    # trained). A schedule field: the bundled CPU training dropped it at 156,151 steps (``tools/zoo/gan.py``).
    adversarial_weight: float = 0.05
    adversarial_from: int = 1500
    # Share of the training crops that are crops of the exemplar itself, the rest crops of the teacher's tiles (a
    # schedule field: the bundled CPU training went to 1.0, no teacher, at its step 183,837; tools/zoo/gan.py).
    exemplar_fraction: float = 0.25
    # A finishing phase: from this step on (None: never) both learning rates are ``finish_lr_scale`` of
    # ``lr_g``/``lr_d`` and the generator's moving average spans longer (``finish_ema_decay``). At batch 4 with
    # one VGG19 sample a step, the full rates leave the generator wandering: between checkpoints 7,000 steps
    # apart single materials moved by 30-40 % either way (cobblestones 4.5 -> 6.3, rust 3.0 -> 1.7).
    # A resumed training may change these (``SCHEDULE_FIELDS``); the trainer sets the rates every step.
    finish_from: int | None = None
    finish_lr_scale: float = 0.25
    finish_ema_decay: float = 0.999
    # Cell patterns: each finer stage may add, after its first convolution, a learnt pattern that repeats every
    # canvas cell (16 px at full resolution), a per-material mix of ``cell_rank`` patterns (0: none). Bilinear
    # upsampling from the canvas gives a stage no way to know where in its cell a pixel lies, so a weave locked
    # to the cell (render_fabric: threads every 8/3 px, a checker of 8 px blocks) could not be drawn: the
    # generator's spectrum had no power at the weave's 8 px period (the exemplar: 30x its neighbourhood).
    # Periodic with the canvas, so tiling and any size are unchanged. A trained model without them grows them
    # (``grow_parameters``): every material's gate starts at zero, so the grown model starts as the old one, and
    # each material takes up the patterns only as far as its own gradients ask (gates that started random put the
    # fabric's patterns on every material: at 8x the rate the nine-material score went 2.11 -> 2.79 in 2,000 steps).
    cell_rank: int = 0
    # The cell patterns' learning rate over the generator's (a schedule field): grown into a training in its
    # finishing phase, at its quarter rate they moved 0.05 in 2,000 steps while a stage's activations are 0.4-7.
    cell_lr_scale: float = 1.0
    # The exemplar's own statistics at the judge's scale (0: off): each step one output of
    # ``exemplar_stats_crop`` px (of the step's first material) is pulled toward the VGG19 features of that
    # material's whole exemplar (a fixed sample of them), by the per-layer normalised sliced Wasserstein.
    # The 96 px crops' statistics alone leave the large-scale ones loose: at 56,119 steps the GAN's outputs
    # were within 1.6 of the exemplars' own 96 px crops on 8 of 9 materials (cobblestones 1.31, fabric
    # 1.82), but at 256 px 1.5-4.9 (the bench's scale). A schedule field: a running training may take it up.
    exemplar_stats_weight: float = 0.0
    exemplar_stats_crop: int = 192
    # Which material the whole-exemplar term takes each step: () the step's first label (every material
    # alike), else one weight per material, drawn from that distribution. The term is the costly half of a
    # step; weighting it toward the materials furthest from their exemplars gives them more of it (a schedule
    # field: the bundled training took it up at 79,907 steps, where its six-seed score had been flat since 77,163).
    exemplar_focus: tuple[float, ...] = ()
    # Amplitude spectra against the exemplar's (0: off; ``distill.spectrum_loss``): each training crop's and the
    # whole-exemplar output's, each against its material's reference at its own size.
    # The VGG19 statistics see which features occur, not where they repeat: a woven fabric has sharp spectral
    # peaks at its weave and block periods (a 192 px crop's smoothed amplitude spectrum is within 0.008 of the
    # exemplar's mean), the generator at 82,486 steps had none of them (0.89: 113x the crops' own scatter), while
    # on irregular materials it sat at 0.9-1.5x the crops' own (Liu et al. 2016's spectrum constraint, as a loss).
    # A schedule field: a running training may take it up. Tried from step 85,900 at 0.5 and 2 and not kept (the
    # irregular materials lost their crops' own scatter; tools/zoo/gan.py).
    spectrum_weight: float = 0.0
    # The spectrum term's weight per material (a schedule field; () every material alike): the term serves the
    # materials with a lattice (their spectra have sharp peaks) and costs the irregular ones their crops' scatter.
    spectrum_focus: tuple[float, ...] = ()
    # Lattice inputs: (fy, fx) frequencies in cycles per output pixel (() : none). Stages 1 and 2 (8 and 4 px per
    # pixel at stride 16) each get cos/sin channels of those under their Nyquist, all shifted by one random
    # translation per image, then projected into the stage after its first convolution, gated per material.
    # Why: a woven fabric's blocks repeat every 32 px, twice the canvas cell. On the canvas grid a 32 px period
    # is its Nyquist, where the periodic channels' random phase sets an amplitude and never a position, and the
    # cell patterns repeat every 16 px: the generator drew the weave's threads in random patches (its spectrum
    # 111x the exemplar crops' scatter). On a finer stage's grid the sines' phase is a true shift, and one shift
    # shared by every frequency keeps their sum a lattice-periodic pattern (a Fourier series) the stage can draw.
    # Quantised to whole periods over a tileable canvas. A trained model without them grows them
    # (``grow_parameters``): every gate starts at zero, so the grown model draws what the old one drew. One with
    # some takes more after its own: their projection columns start at zero (``extend_lattice_parameters``).
    lattice_frequencies: tuple[tuple[float, float], ...] = ()
    # The lattice inputs' learning rate over the generator's (a schedule field), as ``cell_lr_scale``.
    lattice_lr_scale: float = 1.0
    # The two finest stages' learning rate over the generator's (a schedule field: their convolutions, RGB heads,
    # noise gains and FiLM rows). They draw every pixel's detail, where the judge finds the GAN furthest from its
    # exemplars (relu2_1: 2-4x the crops' own on cobblestones and gravel at 92k steps); stages widened into a
    # finishing-phase training (``widen_parameters``) grow their added channels at the quarter rate by ~2e-3 in
    # 3,000 steps. Applied to the Adam update itself (its step size does not follow the gradients' scale).
    fine_lr_scale: float = 1.0
    # Per material, whether its gates on the fine lattice stages (not ``coarse_lattice_stages``: the
    # full-resolution stage that carries a weave's threads) may open; () every one may. A closed material's gate
    # is held at zero after every update (``hold_fine_lattice_gates``), so the threads stay the weave's own.
    # Why: bark, rust and cracked ground took the fabric's thread inputs as detail, each cancelling their grid in
    # its own way, and a 50/50 mix of two of them cancelled nothing: a woven mesh (thread power 1,176 in rust +
    # cobblestones against 9 in rust alone). The gate is affine in the embedding, so it is zero on every mix of
    # closed materials, too.
    # A schedule field: a running training may take it up (its first step closes the gates).
    fine_lattice_open: tuple[bool, ...] = ()
    # Courses (0: off; ``distill.course_loss``): per material (axis, period in px) of its courses, (0, 0) for
    # none. The mean profile of a wall's luminance across its courses (averaged along ``axis``) repeats one period
    # on; each training crop of such a material is pulled up to its real crop's repeat. Why: the VGG19 statistics
    # and the patch terms do not see where a line runs, and the bundled brick wall's columns waved and broke (at
    # 96 px its crops repeat 0.41 where its teacher's repeat 0.92: waving is not only long-range).
    # A schedule field: a running training may take it up. Tried and not in the recipe: it thinned the bed joints
    # (a column's profile repeats better without them) and cost the walls' look (tools/zoo/gan.py).
    course_weight: float = 0.0
    course_periods: tuple[tuple[int, int], ...] = ()

    ARCHITECTURE_FIELDS = ("local_dim", "global_dim", "periodic_dim", "g_channels", "d_channels", "n_materials",
                           "g_convs", "cell_rank", "lattice_frequencies")
    SCHEDULE_FIELDS = ("finish_from", "finish_lr_scale", "finish_ema_decay", "cell_lr_scale", "exemplar_stats_weight",
                       "exemplar_stats_crop", "exemplar_focus", "spectrum_weight", "spectrum_focus", "lattice_lr_scale",
                       "fine_lr_scale", "adversarial_weight", "fine_lattice_open", "course_weight", "course_periods",
                       "exemplar_fraction", "augment_flips")
    # The sizes of a step: a GPU run trains bigger batches of bigger crops than the CPU, and either continues the
    # other's state (the networks are fully convolutional; nothing saved depends on them).
    SIZE_FIELDS = ("crop_size", "batch_size")
    # Architecture fields a trained model may take up on resume, with the value that means "none".
    GROWABLE_FIELDS = {"cell_rank": 0, "lattice_frequencies": []}

    def __post_init__(self) -> None:
        super().__post_init__()
        self.g_convs = tuple(int(c) for c in self.g_convs)
        if len(self.g_convs) != len(self.g_channels) or min(self.g_convs) < 1:
            raise ValueError("g_convs needs one count (>= 1) per generator stage")
        if self.n_materials < 1 or self.global_dim < 1:
            raise ValueError("a conditional texture GAN needs at least one material and global_dim >= 1")
        if not 0 < self.finish_lr_scale <= 1 or not 0 <= self.finish_ema_decay < 1:
            raise ValueError("finish_lr_scale must be in (0, 1] and finish_ema_decay in [0, 1)")
        if not 0 <= self.cell_rank <= 64 or not 0 < self.cell_lr_scale <= 100:
            raise ValueError("cell_rank must be in [0, 64] and cell_lr_scale in (0, 100]")
        self.exemplar_focus = tuple(float(w) for w in self.exemplar_focus)
        if self.exemplar_focus and (len(self.exemplar_focus) != self.n_materials or min(self.exemplar_focus) < 0
                                    or sum(self.exemplar_focus) <= 0):
            raise ValueError(f"exemplar_focus needs {self.n_materials} non-negative weights (not all zero), "
                             f"or none")
        if not 0 <= self.exemplar_stats_weight <= 100 or self.exemplar_stats_crop % self.stride or \
                not self.stride <= self.exemplar_stats_crop <= 1024:
            raise ValueError("exemplar_stats_weight must be in [0, 100] and exemplar_stats_crop a multiple of the "
                             "stride up to 1024")
        if not 0 <= self.spectrum_weight <= 100:
            raise ValueError("spectrum_weight must be in [0, 100]")
        self.spectrum_focus = tuple(float(w) for w in self.spectrum_focus)
        if self.spectrum_focus and (len(self.spectrum_focus) != self.n_materials or
                                    not all(0 <= w <= 100 for w in self.spectrum_focus)):
            raise ValueError(f"spectrum_focus needs {self.n_materials} weights in [0, 100], or none")
        try:
            self.lattice_frequencies = tuple((float(fy), float(fx)) for fy, fx in self.lattice_frequencies)
        except (TypeError, ValueError) as exc:
            raise ValueError("lattice_frequencies must be (fy, fx) pairs") from exc
        if len(self.lattice_frequencies) > 32 or any(not (math.isfinite(f) and abs(f) < 0.5)
                                                     for pair in self.lattice_frequencies for f in pair) \
                or any(fy == fx == 0 for fy, fx in self.lattice_frequencies):
            raise ValueError("lattice_frequencies: at most 32 non-zero (fy, fx) pairs, each |f| < 0.5 cycles per px")
        if not 0 < self.lattice_lr_scale <= 100:
            raise ValueError("lattice_lr_scale must be in (0, 100]")
        if not 0 < self.fine_lr_scale <= 100:
            raise ValueError("fine_lr_scale must be in (0, 100]")
        if not all(isinstance(v, (bool, int)) and v in (0, 1) for v in self.fine_lattice_open) or \
                len(self.fine_lattice_open) not in (0, self.n_materials):
            raise ValueError(f"fine_lattice_open needs {self.n_materials} true/false values, or none")
        self.fine_lattice_open = tuple(bool(v) for v in self.fine_lattice_open)
        try:
            self.course_periods = tuple((int(axis), int(period)) for axis, period in self.course_periods)
        except (TypeError, ValueError) as exc:
            raise ValueError("course_periods must be (axis, period) pairs") from exc
        if not 0 <= self.course_weight <= 100 or len(self.course_periods) not in (0, self.n_materials) or \
                any(axis not in (0, 1) or not (period == 0 or 4 <= period <= 512)
                    for axis, period in self.course_periods):
            raise ValueError(f"course_weight must be in [0, 100] and course_periods {self.n_materials} (axis 0 or 1, "
                             f"period 0 or 4-512 px) pairs, or none")

    def finishing(self, step: int) -> bool:
        """Whether ``step`` is in the finishing phase."""
        return self.finish_from is not None and step >= self.finish_from

    def ema_decay_at(self, step: int) -> float:
        return self.finish_ema_decay if self.finishing(step) else self.ema_decay


class ConditionalGenerator(Generator):
    def __init__(self, cfg: ConditionalGANConfig):
        super().__init__(cfg)
        act = lambda: nn.LeakyReLU(0.2)  # noqa: E731
        stages, cin = [], cfg.noise_channels
        for i, (cout, convs) in enumerate(zip(cfg.g_channels, cfg.g_convs)):
            layers: list[nn.Module] = [CircularUpsample()] if i else []
            for _ in range(convs):
                layers += [_conv(cin, cout), act(), PixelNorm()]
                cin = cout
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.n_materials = cfg.n_materials
        self.embedding = nn.Parameter(torch.zeros(cfg.n_materials, cfg.global_dim, device="cpu"))
        self.film = nn.ModuleList([nn.Linear(cfg.global_dim, 2 * c) for c in cfg.g_channels])
        self.to_rgbs = nn.ModuleList([nn.Conv2d(c, 3, 1) for c in cfg.g_channels])
        del self.to_rgb  # one head per stage instead
        self.upsample = CircularUpsample()
        self.cell_rank = cfg.cell_rank
        if cfg.cell_rank:  # registered last: a model without them keeps its parameter order (optimiser states)
            # Stage i (i >= 1) has 2^i x 2^i pixels per canvas cell; build_conditional: small patterns, zero gates.
            self.cell_patterns = nn.ParameterList([
                nn.Parameter(torch.zeros(cfg.cell_rank, c, 2 ** i, 2 ** i, device="cpu"))
                for i, c in enumerate(cfg.g_channels) if i > 0])
            self.cell_gates = nn.ModuleList([nn.Linear(cfg.global_dim, cfg.cell_rank)
                                             for i in range(1, len(cfg.g_channels))])
        # Lattice inputs (after the cell patterns, for the same reason): per stage, the frequencies under its
        # Nyquist with a margin, a projection of their cos/sin channels and a per-material, per-channel gate.
        self.lattice_frequencies = torch.tensor(cfg.lattice_frequencies, dtype=torch.float64,
                                                device="cpu").reshape(-1, 2)
        self.lattice_stages = lattice_stage_frequencies(cfg.lattice_frequencies, self.stride, len(cfg.g_channels))
        if self.lattice_stages:
            self.lattice_projections = nn.ParameterList([
                nn.Parameter(torch.zeros(cfg.g_channels[i], 2 * len(keep), device="cpu"))
                for i, keep in self.lattice_stages.items()])
            self.lattice_gates = nn.ModuleList([nn.Linear(cfg.global_dim, cfg.g_channels[i])
                                                for i in self.lattice_stages])

    def lattice_inputs(self, fine: Sequence[torch.Tensor], where: torch.Tensor,
                       quantize_to: tuple[int, int] | None = None) -> list[torch.Tensor]:
        """``fine`` (the per-stage noise) with each lattice stage's cos/sin channels appended: the lattice
        translated by ``where`` (Bx2, (ty, tx) as fractions of the canvas: a uniform draw in [0, 1) is a uniform
        shift), sampled at the stage's pixel centres. With ``quantize_to=(h, w)`` (the canvas in cells) the
        frequencies are rounded to whole periods over it, so a tileable canvas stays tileable. Built for the whole
        canvas, so tiles cut from it agree."""
        out = list(fine)
        for i, keep in self.lattice_stages.items():
            f = self.lattice_frequencies[keep]  # K x 2, cycles per output pixel
            noise = fine[i - 1]
            b, _, h, w = noise.shape
            pixel = self.stride / 2 ** i
            t = where.to("cpu", f.dtype) * torch.tensor([h * pixel, w * pixel], dtype=f.dtype, device="cpu")
            if quantize_to is not None:
                size = torch.tensor([quantize_to[0] * self.stride, quantize_to[1] * self.stride], dtype=f.dtype,
                                    device="cpu")
                f = torch.round(f * size) / size
            # Stage pixel j covers output pixels [j p, (j + 1) p): its centre is at (j + 0.5) p - 0.5.
            yy = (torch.arange(h, dtype=f.dtype, device="cpu") + 0.5) * pixel - 0.5
            xx = (torch.arange(w, dtype=f.dtype, device="cpu") + 0.5) * pixel - 0.5
            # exp(2 pi i f.(p - t)) is a product of one row and one column factor: the phases in float64 (reduced
            # to a turn, so exact at any size). Its cos and sin are then rank-2 products of the factors' parts, one
            # small matrix product per image written straight into the stage's input (at 2048^2 no per-pixel
            # complex tensor, no concatenation).
            def factor(freq: torch.Tensor, pos: torch.Tensor, offset: torch.Tensor) -> tuple[torch.Tensor, ...]:
                turns = freq[None, :, None] * (pos[None, None, :] - offset[:, None, None])  # B x K x n
                angle = (turns - torch.round(turns)) * (2 * math.pi)
                return tuple(a.to(noise.device, noise.dtype) for a in (torch.cos(angle), torch.sin(angle)))
            (ry, iy), (rx, ix) = factor(f[:, 0], yy, t[:, 0]), factor(f[:, 1], xx, t[:, 1])
            rows = torch.stack([torch.stack([ry, -iy], -1), torch.stack([iy, ry], -1)], 1)  # B x 2 x K x h x 2
            columns = torch.stack([rx, ix], -2)[:, None]  # B x 1 x K x 2 x w: cos (first K), sin (next K) rows
            n = noise.shape[1]
            stage = torch.empty(b, n + 2 * len(keep), h, w, dtype=noise.dtype, device=noise.device)
            stage[:, :n] = noise
            for j in range(b):  # one shift for every image, or one each
                k = j if len(rows) > 1 else 0
                torch.matmul(rows[k], columns[k], out=stage[j, n:].view(2, len(keep), h, w))
            out[i - 1] = stage
        return out

    def add_lattice(self, i: int, x: torch.Tensor, lattice: torch.Tensor, cond: torch.Tensor,
                    cond_map: torch.Tensor | None) -> torch.Tensor:
        """``x`` (stage ``i``'s first convolution's output) plus its lattice channels projected and gated per
        channel by the material (per pixel with ``cond_map``)."""
        k = list(self.lattice_stages).index(i)
        projection, gate = self.lattice_projections[k].to(x.dtype), self.lattice_gates[k]
        if cond_map is None and x.shape[0] == 1 and x.is_contiguous() and not (torch.is_grad_enabled()
                                                                               and x.requires_grad):
            # Inference on one image: the gates folded into the projection, added in place (2048^2: one pass).
            folded = projection * gate(cond).to(x.dtype)[0][:, None]
            return x.add_(F.conv2d(lattice.to(x.dtype), folded[:, :, None, None]))
        term = F.conv2d(lattice.to(x.dtype), projection[:, :, None, None])
        if cond_map is None:
            scale = gate(cond).to(x.dtype)[:, :, None, None]
        else:
            scale = F.conv2d(cond_map.to(x.dtype), gate.weight[:, :, None, None].to(x.dtype), gate.bias.to(x.dtype))
        return x + scale * term

    def add_cell_pattern(self, i: int, x: torch.Tensor, cond: torch.Tensor, cond_map: torch.Tensor | None
                         ) -> torch.Tensor:
        """``x`` (stage ``i``'s first convolution's output) plus the material's cell pattern, repeated over every
        canvas cell (in place without gradients: no full-size copy at 2048^2). ``cond_map``: per-pixel
        embeddings at the stage's resolution (the spatial path), else ``cond`` (BxG) for the whole image."""
        if not self.cell_rank or i == 0:
            return x
        patterns = self.cell_patterns[i - 1].to(x.dtype)  # R x C x s x s
        gate = self.cell_gates[i - 1]
        b, c, h, w = x.shape
        side = patterns.shape[-1]
        if h % side or w % side:
            raise ValueError(f"stage {i} is {h}x{w}, not whole canvas cells of {side} px")
        if cond_map is None:
            mixed = torch.einsum("br,rcyx->bcyx", gate(cond).to(x.dtype), patterns)  # B x C x s x s
            term = mixed[:, :, None, :, None, :]
        else:
            gates = F.conv2d(cond_map.to(x.dtype), gate.weight[:, :, None, None].to(x.dtype), gate.bias.to(x.dtype))
            cells = gates.unflatten(3, (w // side, side)).unflatten(2, (h // side, side))  # B x R x h/s x s x w/s x s
            term = torch.einsum("brhywx,rcyx->bchywx", cells, patterns)
        if torch.is_grad_enabled() and x.requires_grad or not x.is_contiguous():
            return (x.unflatten(3, (w // side, side)).unflatten(2, (h // side, side)) + term).flatten(2, 3).flatten(3, 4)
        x.unflatten(3, (w // side, side)).unflatten(2, (h // side, side)).add_(term)
        return x

    def run_stage_at(self, i: int, x: torch.Tensor, cond: torch.Tensor, cond_map: torch.Tensor | None,
                     upto: int | None = None, lattice: torch.Tensor | None = None) -> torch.Tensor:
        """Stage ``i``'s layers (``upto``: the first ``upto`` of them), its cell pattern and lattice inputs
        (``lattice``: its channels from ``lattice_inputs``) after the first convolution."""
        stage = self.stages[i]
        layers = stage if upto is None else stage[:upto]
        has_lattice = i in self.lattice_stages
        if i == 0 or not (self.cell_rank or has_lattice):
            return run_stage(layers, x, self.fused_upsampling)
        x = self.add_cell_pattern(i, run_stage(stage[:2], x, self.fused_upsampling), cond, cond_map)
        if has_lattice:
            if lattice is None or lattice.shape[1] != 2 * len(self.lattice_stages[i]):
                raise ValueError(f"stage {i} needs its lattice channels: build the per-stage inputs with "
                                 "lattice_inputs")
            x = self.add_lattice(i, x, lattice, cond, cond_map)
        return layers[2:](x) if len(layers) > 2 else x

    def mix(self, weights: torch.Tensor) -> torch.Tensor:
        """Bx(n_materials) non-negative weights (rows summing to 1) -> BxG embeddings."""
        return weights.to(self.embedding.dtype) @ self.embedding

    def condition_of(self, canvas: torch.Tensor) -> torch.Tensor:
        """The embedding the canvas was built with (its broadcast channels are constant over space)."""
        return canvas[:, self.local_dim:self.local_dim + self.global_dim, 0, 0]

    def stage_images(self, x: torch.Tensor, fine: Sequence[torch.Tensor], final_only: bool = False,
                     spatial: bool = False) -> list[torch.Tensor]:
        """Every stage's image (coarsest first), in [0, 1]; the last one is the output (``final_only``: just it).

        ``spatial``: the canvas's embedding channels may vary over space (a material painted through a mask, the
        texture VAE's decoder): FiLM is then applied per pixel from the embedding map, upsampled with the
        stages. On a constant map it gives the plain path's image (to float rounding)."""
        cond = self.condition_of(x)
        cond_map = x[:, self.local_dim:self.local_dim + self.global_dim] if spatial else None
        images, rgb = [], None
        last = len(self.stages) - 1
        for i, stage in enumerate(self.stages):
            if spatial and i > 0:
                cond_map = self.upsample(cond_map)
            if i == last > 0 and final_only and self.fused_upsampling and x.shape[0] == 1 and \
                    isinstance(stage[-1], PixelNorm) and not spatial:
                delta = self._folded_last_stage(stage, x, fine[i - 1], cond)
            else:
                x = self.run_stage_at(i, x, cond, cond_map, lattice=fine[i - 1][:, 1:] if i else None)
                if i > 0:
                    x = x + self.noise_gains[i - 1] * fine[i - 1][:, :1].to(x.dtype)
                if spatial:
                    film = self.film[i]
                    gamma, beta = F.conv2d(cond_map.to(x.dtype), film.weight[:, :, None, None].to(x.dtype),
                                           film.bias.to(x.dtype)).chunk(2, dim=1)
                else:
                    gamma, beta = self.film[i](cond).to(x.dtype)[:, :, None, None].chunk(2, dim=1)
                x = x * (1 + gamma) + beta
                delta = self.to_rgbs[i](x)
            rgb = delta if rgb is None else self.upsample(rgb) + delta
            if i == last or not final_only:
                images.append(torch.tanh(rgb) * 0.5 + 0.5)
        return images

    def body(self, x: torch.Tensor, fine: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.stage_images(x, fine, final_only=True)[-1]

    def _folded_last_stage(self, stage: nn.Sequential, x: torch.Tensor, noise: torch.Tensor, cond: torch.Tensor
                           ) -> torch.Tensor:
        """The full-resolution stage's RGB residual (batch of one) with everything after its activation folded
        into the 1x1 head: PixelNorm's per-pixel scale, the noise, FiLM and the head are all linear per pixel, so
        ``head(film(pn(s) + g*n)) = r * (W' s) + (W' g) n + b'`` with ``W' = W diag(1 + gamma)``,
        ``b' = b + W beta`` and ``r`` PixelNorm's scale. Only 3 channels, not the stage's, meet the
        per-pixel arithmetic at 2048^2 (inference; the same numbers as the plain path to float rounding)."""
        i = len(self.stages) - 1
        s = self.run_stage_at(i, x, cond, None, upto=len(stage) - 1, lattice=noise[:, 1:])
        noise = noise[:, :1]
        gamma, beta = self.film[i](cond)[0].chunk(2)
        head = self.to_rgbs[i]
        w = head.weight[:, :, 0, 0]
        w_film = w * (1 + gamma)[None, :]
        bias = head.bias + w @ beta
        gain = w_film @ self.noise_gains[i - 1].flatten()
        r = pixel_norm_scale(s)
        out = F.conv2d(s, w_film[:, :, None, None].to(s.dtype)).mul_(r)
        out.add_(noise.to(s.dtype) * gain.to(s.dtype)[None, :, None, None])
        return out.add_(bias.to(s.dtype)[None, :, None, None])

    def margin_noise_pixels(self) -> int:
        # The RGB skip path upsamples as the main path does and its 1x1 heads reach nothing: same margin.
        return super().margin_noise_pixels()


def build_conditional(cfg: ConditionalGANConfig, seed: int):
    """Seeded generator (and the label-projection discriminator) for ``cfg``."""
    gen = torch.Generator().manual_seed(int(seed))
    with torch.random.fork_rng(devices=[]):
        g, d = ConditionalGenerator(cfg), MaterialDiscriminator(cfg)
    init_weights(g, gen)
    init_weights(d, gen)
    with torch.no_grad():
        g.embedding.copy_(torch.randn(g.embedding.shape, generator=gen, device="cpu"))
        for lin in g.film:  # start as identity modulation; FiLM learns its departures
            lin.weight.mul_(0.1)
        for head in g.to_rgbs:  # the RGB heads add up over the stages: small, so tanh starts unsaturated
            head.weight.mul_(0.1)
        if cfg.cell_rank:
            for pattern in g.cell_patterns:  # small, so a gate's first steps add little
                pattern.copy_(0.05 * torch.randn(pattern.shape, generator=gen, device="cpu"))
            for gate in g.cell_gates:  # zero: no material has them until its own gradients open its gate
                gate.weight.zero_()
                gate.bias.zero_()
        if g.lattice_stages:
            for projection in g.lattice_projections:  # unit-variance channels in, ~0.5 out per open gate
                projection.copy_(torch.randn(projection.shape, generator=gen, device="cpu")
                                 * (0.5 / math.sqrt(projection.shape[1])))
            for gate in g.lattice_gates:  # closed, as the cell patterns' gates
                gate.weight.zero_()
                gate.bias.zero_()
        if cfg.periodic_dim:
            last = g.wave_mlp[-1]
            last.weight.mul_(0.1)
            k0 = (torch.rand(last.bias.shape, generator=gen, device="cpu") * 2 - 1) * 0.2
            last.bias.copy_(torch.atanh(2 * k0))
        side = 2 ** (len(cfg.d_channels) + 1)
        for _ in range(10):  # settle the spectral-norm power iteration
            d(torch.zeros(1, 3, side, side, device="cpu"), torch.zeros(1, dtype=torch.long, device="cpu"))
    return g, d


def fine_lattice_gate_indices(g: ConditionalGenerator) -> list[int]:
    """Positions in ``g.lattice_gates`` of the fine lattice stages (those not ``coarse_lattice_stages``)."""
    coarse = coarse_lattice_stages(len(g.stages))
    return [k for k, i in enumerate(g.lattice_stages) if i not in coarse]


@torch.no_grad()
def hold_fine_lattice_gates(g: ConditionalGenerator, open_materials: Sequence[bool]) -> None:
    """``ConditionalGANConfig.fine_lattice_open``, in place: each fine lattice stage's gate (affine in the
    embedding: W e + b) moved by the least change of (W, b) that makes it zero for every closed material and leaves
    every open one's as it was. Exact while the embedding rows with a 1 appended are independent (the bundled
    model: 9 rows of 33); an affine gate that is zero on the closed rows is zero on all their mixes."""
    if len(open_materials) != g.n_materials:
        raise ValueError(f"{len(open_materials)} open/closed values for {g.n_materials} materials")
    closed = torch.tensor([not o for o in open_materials], device=g.embedding.device)
    fine = fine_lattice_gate_indices(g)
    if not fine or not bool(closed.any()):
        return
    rows = torch.cat([g.embedding.double(), g.embedding.new_ones(g.n_materials, 1, dtype=torch.float64)], 1)
    solve = torch.linalg.pinv(rows)  # (G+1) x M
    for k in fine:
        gate = g.lattice_gates[k]
        affine = torch.cat([gate.weight.double(), gate.bias.double()[:, None]], 1)  # C x (G+1)
        now = rows @ affine.T  # M x C: every material's gate
        wanted = torch.where(closed[:, None], torch.zeros_like(now), now)
        affine = affine + (solve @ (wanted - now)).T
        gate.weight.copy_(affine[:, :-1])
        gate.bias.copy_(affine[:, -1])


def architecture_of(config: dict[str, Any]) -> dict[str, Any]:
    """A saved GAN config's architecture with every field, those added since it was saved at their defaults."""
    return ConditionalGANConfig.from_dict(config).architecture()


# Parameter kinds in registration order: each grown kind is registered after the ones before it, so a model
# without it keeps its parameter order (and its optimiser states), and each kind has its own optimiser group.
PARAMETER_KINDS = ("base", "cell", "lattice")


def parameter_kind(name: str) -> str:
    if name.startswith(("cell_patterns.", "cell_gates.")):
        return "cell"
    if name.startswith(("lattice_projections.", "lattice_gates.")):
        return "lattice"
    return "base"


def is_fine_stage_parameter(name: str, n_stages: int, fine: int = 2) -> bool:
    """Whether a generator parameter belongs to its ``fine`` finest stages (of ``n_stages``): the stage's
    convolutions (``stages.k``), RGB head (``to_rgbs.k``), FiLM rows (``film.k``) and noise gain (``noise_gains``
    counts from stage 1). Lattice inputs keep their own rate."""
    parts = name.split(".")
    if len(parts) < 2 or not parts[1].isdigit():
        return False
    index = int(parts[1]) + (1 if parts[0] == "noise_gains" else 0)
    return parts[0] in ("stages", "to_rgbs", "film", "noise_gains") and index >= n_stages - fine


def is_grown_parameter(name: str) -> bool:
    return parameter_kind(name) != "base"


def _canonical(value: Any) -> Any:
    return [_canonical(v) for v in value] if isinstance(value, (list, tuple)) else value


def _adds_lattice_frequencies(saved: dict[str, Any], now: dict[str, Any]) -> bool:
    """Whether ``now``'s lattice frequencies are ``saved``'s with more after them: each saved frequency stays on
    the stages it was on (a stage's added ones come after its own, ``extend_lattice_parameters``), and a stage
    that gains its first ones is finer than all of ``saved``'s (the lattice parameters are registered in stage
    order, so every saved one keeps its name)."""
    old, new = (_canonical(c.get("lattice_frequencies") or []) for c in (saved, now))
    if not old or len(new) <= len(old) or new[:len(old)] != old:
        return False
    cfg = ConditionalGANConfig.from_dict(now)
    before = lattice_stage_frequencies(old, cfg.stride, len(cfg.g_channels))
    after = lattice_stage_frequencies(new, cfg.stride, len(cfg.g_channels))
    return all(after.get(i, [])[:len(keep)] == keep for i, keep in before.items()) and \
        min(set(after) - set(before), default=max(before, default=0) + 1) > max(before, default=0)


def _widens_stages(saved: dict[str, Any], now: dict[str, Any]) -> bool:
    """Whether ``now``'s generator stages are ``saved``'s, as many, none narrower and some wider."""
    old, new = (_canonical(c.get("g_channels") or []) for c in (saved, now))
    return len(old) == len(new) > 0 and old != new and all(n >= o for o, n in zip(old, new))


def grows_parameters(saved: dict[str, Any], now: dict[str, Any]) -> bool:
    """Whether architecture ``now`` is ``saved`` (a trained model's) with cell patterns or lattice inputs added
    (or more lattice frequencies after its own), or some stages widened, and nothing else changed: the
    architecture changes a training may take up on resume (``grow_parameters``)."""
    growable = ConditionalGANConfig.GROWABLE_FIELDS

    def grows(k: str) -> bool:
        if k == "g_channels":
            return _widens_stages(saved, now)
        return k in growable and bool(now.get(k)) and (not saved.get(k, growable[k]) or (
            k == "lattice_frequencies" and _adds_lattice_frequencies(saved, now)))

    differ = {k for k in set(saved) | set(now) if _canonical(saved.get(k, growable.get(k)))
              != _canonical(now.get(k, growable.get(k)))}
    return bool(differ) and all(grows(k) for k in differ)


# Where a widened parameter's old values went: (index into the old tensor, index into the new one, the factor
# they were multiplied by). An optimiser's moments follow them (``MaterialTrainer.grow_parameters``).
Placement = list[tuple[tuple[slice, ...], tuple[slice, ...], float]]


def widen_parameters(weights: dict[str, torch.Tensor], saved: ConditionalGANConfig, grown: ConditionalGenerator
                     ) -> tuple[dict[str, torch.Tensor], dict[str, Placement]]:
    """A generator's weights (architecture ``saved``) on ``grown``'s wider stages, drawing the same images, and
    where each changed parameter's old values went.

    A widened stage's added channels start at exactly zero (their convolution rows, biases, noise gains, FiLM
    shifts, lattice gates and cell patterns zero), so each PixelNorm's mean square over the wider stage is the old
    one times ``c / c'``, and the kept channels come out ``k = sqrt(c' / c)`` times larger. Everything that reads
    them is divided by ``k`` (the next stage's first convolution, the RGB head), and what is added to them after
    the norm multiplied by ``k`` (noise gains, FiLM shifts), so the image is the old one to float rounding. The
    weights that read the added channels are ``grown``'s fresh seeded ones: through them the added channels'
    rows get gradients from the first step (Net2WiderNet's function-preserving widening, Chen et al. 2016, with
    zeros in place of copies: PixelNorm would not keep copies' sum)."""
    old_c, new_c = tuple(saved.g_channels), tuple(grown.cfg.g_channels)
    if old_c == new_c:
        return dict(weights), {}
    fresh = grown.state_dict()
    gain = [math.sqrt(n / o) for o, n in zip(old_c, new_c)]
    out, placements = dict(weights), {}
    every = slice(None)

    def put(name: str, parts: Placement, base: str) -> None:
        """``name`` as ``grown``'s fresh tensor (``base`` "fresh") or zeros, the old values placed by ``parts``."""
        new = fresh[name].clone() if base == "fresh" else torch.zeros_like(fresh[name])
        for old_index, new_index, factor in parts:
            new[new_index] = weights[name][old_index] * factor
        out[name], placements[name] = new, parts

    lattice_stages = list(lattice_stage_frequencies(saved.lattice_frequencies, saved.stride, len(old_c)))
    for i, stage in enumerate(grown.stages):
        co = old_c[i]
        kept = (slice(0, co),)
        convs = [j for j, m in enumerate(stage) if isinstance(m, nn.Conv2d)]
        for n, j in enumerate(convs):
            ci, scale = ((saved.noise_channels, 1.0) if i == 0 else (old_c[i - 1], 1 / gain[i - 1])) if n == 0 \
                else (co, 1 / gain[i])
            put(f"stages.{i}.{j}.weight", [((every, every), (slice(0, co), slice(0, ci)), scale)], "fresh")
            out[f"stages.{i}.{j}.weight"][co:] = 0  # the added output channels start at zero; their inputs' stay fresh
            put(f"stages.{i}.{j}.bias", [(kept, kept, 1.0)], "zeros")
        if i > 0:
            put(f"noise_gains.{i - 1}", [((every, every), (every, slice(0, co)), gain[i])], "zeros")
        for part in ("weight", "bias"):  # FiLM: scales (gamma) as they were, shifts (beta) times k
            put(f"film.{i}.{part}", [(kept, kept, 1.0), ((slice(co, 2 * co),), (slice(new_c[i], new_c[i] + co),),
                                                         gain[i])], "zeros")
        put(f"to_rgbs.{i}.weight", [((every, every), (every, slice(0, co)), 1 / gain[i])], "fresh")
        if i in lattice_stages:
            k = lattice_stages.index(i)
            put(f"lattice_projections.{k}", [(kept, kept, 1.0)], "fresh")
            for part in ("weight", "bias"):
                put(f"lattice_gates.{k}.{part}", [(kept, kept, 1.0)], "zeros")
        if i > 0 and saved.cell_rank:
            put(f"cell_patterns.{i - 1}", [((every, every), (every, slice(0, co)), 1.0)], "zeros")
    wrong = [k for k in weights if out[k].shape != fresh[k].shape]
    if wrong:
        raise ValueError(f"these weights do not widen onto the grown generator: {', '.join(wrong[:4])}")
    return out, placements


def extend_lattice_parameters(weights: dict[str, torch.Tensor], saved: ConditionalGANConfig,
                              grown: ConditionalGenerator) -> tuple[dict[str, torch.Tensor], dict[str, Placement]]:
    """A generator's weights (architecture ``saved``) with ``grown``'s added lattice frequencies on the stages that
    had some already, and where each changed projection's old columns went. A stage's channels are its
    frequencies' cosines, then their sines, so the old cosine and sine columns keep their places among their own
    kind; the added columns start at zero, so the image is the old one, and their gradients (through every
    material's open gate) reach them from the first step, slowly where those gates disagree (the bundled
    training's added columns: a norm of 0.01 after 400 steps; docs/training_notes.md, thirty-ninth session)."""
    before = lattice_stage_frequencies(saved.lattice_frequencies, saved.stride, len(saved.g_channels))
    out, placements, every = dict(weights), {}, slice(None)
    for k, (i, keep) in enumerate(before.items()):
        wide = grown.lattice_stages.get(i, [])
        if wide == keep:
            continue
        if wide[:len(keep)] != keep:
            raise ValueError(f"stage {i}'s lattice frequencies are not its saved ones with more after them")
        name, n, m = f"lattice_projections.{k}", len(keep), len(wide)
        old = weights[name]
        parts = [((every, slice(0, n)), (every, slice(0, n)), 1.0),  # cosines
                 ((every, slice(n, 2 * n)), (every, slice(m, m + n)), 1.0)]  # sines
        new = old.new_zeros(old.shape[0], 2 * m)
        for old_index, new_index, factor in parts:
            new[new_index] = old[old_index] * factor
        out[name], placements[name] = new, parts
    return out, placements


def grow_parameters(weights: dict[str, torch.Tensor], grown: ConditionalGenerator,
                    saved: ConditionalGANConfig | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Placement]]:
    """A generator's weights (architecture ``saved``; ``None``: ``grown``'s) without some grown kinds, or with
    narrower stages, or fewer lattice frequencies, made ``grown``'s: widened stages as ``widen_parameters``, added
    frequencies on a stage's lattice as ``extend_lattice_parameters``, added kinds ``grown``'s fresh ones (seeded
    patterns and projections, zero gates). The grown generator draws what the old one drew (widened: to float
    rounding) until training opens the gates and fills the added channels. Also returns where the moved
    parameters' old values went."""
    saved = saved or grown.cfg
    weights, placements = widen_parameters(weights, saved, grown)
    weights, extended = extend_lattice_parameters(weights, saved, grown)
    if placements and extended:
        raise ValueError("widen the stages and add lattice frequencies in two resumes, not one")
    placements = {**placements, **extended}
    fresh = grown.state_dict()
    extra = set(fresh) - set(weights)
    if not (extra or placements) or not all(is_grown_parameter(k) for k in extra) or set(weights) - set(fresh) \
            or any(weights[k].shape != fresh[k].shape for k in weights):
        raise ValueError("these weights are not the grown generator's without its added parameters")
    return {**{k: fresh[k] for k in extra}, **weights}, placements


class MaterialDiscriminator(PatchDiscriminator):
    """PatchGAN with one logit map per material; a crop is scored by its own material's map."""

    def __init__(self, cfg: ConditionalGANConfig):
        super().__init__(cfg.d_channels, maps=cfg.n_materials)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = super().forward(x)
        return logits.gather(1, labels[:, None, None, None].expand(-1, 1, *logits.shape[2:]))


def mix_weights(materials: Sequence[str], mix: dict[str, float] | str | None) -> torch.Tensor:
    """1x(n) weights from a material name or a {name: weight} mix (normalised to sum 1)."""
    names = list(materials)
    if mix is None:
        mix = {names[0]: 1.0}
    if isinstance(mix, str):
        mix = {mix: 1.0}
    w = torch.zeros(1, len(names), device="cpu")
    for name, value in mix.items():
        if name not in names:
            raise ValueError(f"unknown material {name!r}; this model has: {', '.join(names)}")
        value = float(value)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"material weight for {name!r} must be >= 0, got {value}")
        w[0, names.index(name)] += value
    if float(w.sum()) <= 0:
        raise ValueError("material weights must not all be 0")
    return w / w.sum()


def parse_mix(text: str) -> dict[str, float]:
    """'brick:0.7,grass:0.3' -> {'brick': 0.7, 'grass': 0.3}."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, weight = part.rpartition(":")
        if not name:
            raise ValueError(f"--mix entries are NAME:WEIGHT, got {part!r}")
        try:
            out[name] = out.get(name, 0.0) + float(weight)
        except ValueError as exc:
            raise ValueError(f"--mix: {weight!r} is not a number") from exc
    return out


def config_from_architecture(arch: dict[str, Any]) -> ConditionalGANConfig:
    return ConditionalGANConfig.from_dict(arch)


def stage_downscale(target: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """The target at every stage's resolution (coarsest first), area-averaged."""
    out = [target]
    for _ in range(levels - 1):
        out.append(F.avg_pool2d(out[-1], 2))
    return out[::-1]
