"""AdaIN decoder training that reaches quality on a CPU: cached targets, a time budget, resumable anywhere.

Huang & Belongie's losses (relu4_1 content against the AdaIN target, mean/std
style over relu1_1..relu4_1, learning rate ``lr / (1 + decay * step)``), with
everything frozen computed once: the content crops' relu4_1 features come from
a ``CropPool``, the paintings' statistics are measured once per painting (at
two sizes, plus recoloured copies for palettes the paintings lack). A step runs
only the decoder and one VGG19 pass over its output. A few hundred cheap steps
of pixel reconstruction first give the decoder a working VGG inverse.

``train_adain_budgeted`` trains for a number of minutes, checkpoints every few
minutes (model + optimizer + step + sampling generator + history) and on
SIGTERM, and continues from that checkpoint next time, bit for bit on the CPU.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from ..common.device import adam, pick_device
from ..common.images import load_image, to_srgb
from ..common.perception import Perception, load_perception, mean_std
from .adain import (DEFAULT_MAX_GAIN, ENCODER_LAYER, MODEL_KIND, STYLE_LOSS_LAYERS, AdaINDecoder, DecoderConfig,
                    adain)
from .crop_pool import (Budget, CropPool, PhasedRecipe, content_files, describe_files, load_content,
                        painting_statistics, painting_variants, refresh_pool)
from .losses import lattice_energy, per_crop_content_distance, stability_noise
from .resumable import ResumableRun

StyleStats = dict[str, tuple[torch.Tensor, torch.Tensor]]  # layer -> (N x C x 1 x 1 means, stds)


@dataclass
class AdaINRecipe(PhasedRecipe):
    decoder: dict = field(default_factory=lambda: DecoderConfig((128, 64, 32), (2, 1, 0), 1).as_dict())
    # (first step, crop size, batch, crops per pool): 128-px crops, then a finishing phase at 256 px.
    phases: tuple = ((0, 128, 4, 384), (2400, 256, 2, 96))
    pool_steps: int = 300  # a fresh pool of crops (and their features) every this many steps
    learning_rate: float = 2e-4  # 5e-4: losses flat and noisy from step 600 to 1600
    lr_decay: float = 5e-5  # the reference's lr / (1 + decay * step)
    # 10 (the paper's): content distance 1.0-1.9 at 1389 steps, the frames repainted. 5 until step 1,210;
    # 2 from step 7,782, on a decoder that reconstructs well.
    style_weight: float = 2.0
    warmup_steps: int = 1000  # pixel reconstruction steps (no VGG pass: ~5x cheaper) before the paper's losses
    # With the paper's losses alone this narrow decoder forgot how to invert VGG: at 1600 steps it could not
    # give back a frame even at alpha 0.01 (content distance 0.96-1.22, blotches). Every later step also
    # decodes ``batch`` unstylized crops back to their pixels (MSE, this weight), which keeps it an inverse.
    pixel_weight: float = 200.0
    # Steps from this one on train reconstruction only (no AdaIN losses): pixels plus relu1_1/relu2_1 features
    # of unstylized crops (a quarter of a full VGG pass), as WCT's decoders are trained. At 1210 steps the
    # paper's losses still drew black outlines over a blurred frame even at alpha 0.01 (content distance
    # 0.72-0.82), so this CPU recipe first makes the decoder a sharp VGG inverse; None: never.
    reconstruction_from: int | None = 1210
    # ... until this step; after it the paper's losses come back at ``style_weight`` (with the pixel term), now
    # that the decoder is a sharp inverse: reconstruction alone kept it one (content 0.62-0.71 at 7,782 steps)
    # but moved only what relu4_1 carries, so Starry Night's strokes never came (style cut -4..12 %).
    reconstruction_until: int | None = 7782
    reconstruction_feature_weight: float = 1.0  # per layer, over the crop's own feature energy
    # The unstylized crop's own relu4_1 features, kept (squared distance over the crop's feature energy, the
    # bench's content measure one layer lower; cached, so free). The paper's content loss pulls only towards the
    # AdaIN target, so at 9,895 steps the decoder repainted a render's flat areas (content 2.1-2.3 on renders
    # against a target of 1.0, Starry Night). 0 until step 10,158; 1 until 10,752 (Starry Night's render
    # 2.08 -> 1.71, The Kiss's 1.01 -> 0.86, both style cuts up 2-5 points); 2 until 16,241; 4 since: with the
    # gain-limited targets (from 15,440) the bench's renders went over the content target again (16,193 steps:
    # Starry Night 1.16, Composition VII 1.22) while their cuts were 55 % and 69 %, far over the 40 % asked.
    content_keep_weight: float = 4.0
    style_sizes: tuple = (512, 320)  # longer side of each painting when measuring its statistics
    recoloured: int = 2  # hue/saturation-jittered copies of each painting per size
    checkpoint_seconds: float = 180.0
    bf16_autocast: bool = False  # CUDA only (the gpu profile)
    # "per_layer": losses on features divided by the layer's mean activation over the paintings. The raw Caffe
    # VGG's deeper layers are ~100x larger, so unscaled ("none") losses hardly see relu1_1/relu2_1: washed-out
    # colours and 8-px grid artefacts. "per_channel" (each channel by its own mean, as in the reference's
    # normalised VGG) lifts near-dead edge filters up to 100x (1e4 in the squared loss): after 1157 steps its
    # decoder drew grey embossed edges (content distance 1.2-1.9).
    loss_scaling: str = "per_layer"
    # Stability (as the multi-style network's, multistyle_train.MultiStyleRecipe): each crop's relu4_1 features
    # again with faint grain added to its pixels (losses.stability_noise; one encoder pass without gradient), both
    # painted in the step's style; the mean squared difference of the two decoded images costs this much. Why:
    # at 14,735 steps a 1 % grain on the frame changed the output by 7-9x as much in its worst 16 px cell
    # (quality.grain_gain; the bench's photo and render, Starry Night and Great Wave), drawn as a fine
    # cross-hatching over a render's flat floor and a photo's concrete. 0 until step ``stability_from``.
    stability_weight: float = 300.0
    stability_from: int = 14735
    stability_noise: float = 0.015
    # From this step on (None: never) the training's AdaIN targets are gain-limited as inference's are
    # (``adain(..., max_gain=DEFAULT_MAX_GAIN)``): the decoder learns to paint from the capped features it is given
    # at inference, where a render's weak features (a third of a photo's energy) are amplified at most 1.25x.
    # Why: with the limit only at inference, the 15,440-step decoder cut Starry Night's held-out render by 39.8 %
    # (target 40 %) and Composition VII's and Four Girls' validation renders by 36-38 %, the style loss having
    # been met in training by the uncapped (2-12x) targets alone.
    capped_targets_from: int | None = 15440
    # The decoder's faint grid locked to its 8-px upsampling lattice (losses.phase_locked over 9 x 9 cells, 72 px:
    # a photo's own detail averages out there): its energy in the stylized output costs this much from step
    # ``lattice_from``. Why: at 15,921 steps the spectrum's lines at multiples of 1/8 cycle per pixel held
    # 0.8-3.3 % of a stylized frame's energy against 0.1-0.26 % in the frame (1.5e-4..5e-4 of this energy
    # against 5e-6..5e-5 in 256 px crops); a filter after the decoder also took 10-14 % of the detail.
    lattice_weight: float = 3000.0
    lattice_from: int | None = 15921
    lattice_cells: int = 9

    def reconstructing(self, step: int) -> bool:
        """Whether ``step`` (past the warm-up) trains reconstruction only."""
        return (self.reconstruction_from is not None and step >= self.reconstruction_from
                and (self.reconstruction_until is None or step < self.reconstruction_until))


def cached_adain_losses(encoder: Perception, decoder: AdaINDecoder, content_feats: torch.Tensor,
                        style_stats: StyleStats, scales: dict[str, torch.Tensor] | None = None,
                        keep: list | None = None, decoded: list | None = None, max_gain: float | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's (content, style) losses from cached relu4_1 content features and painting statistics.

    Equal to ``adain.adain_losses`` on the crops and paintings those came from when ``scales`` is None
    (tests/core/test_fast_style_training.py); ``scales`` (per layer, C) divides every feature channel first.
    ``keep``, when given, receives ``per_crop_content_distance`` of the same output (no second VGG pass);
    ``decoded`` receives the decoded images. ``max_gain``: the AdaIN target's gain limit (``adain``).
    """
    target = adain(content_feats, *style_stats[ENCODER_LAYER], max_gain=max_gain)
    out = decoder(target)
    if decoded is not None:
        decoded.append(out)
    out_feats = encoder(out, STYLE_LOSS_LAYERS)

    def scaled(name: str, t: torch.Tensor) -> torch.Tensor:
        return t if scales is None else t / scales[name].view(1, -1, 1, 1).to(t.dtype)

    l_content = F.mse_loss(scaled(ENCODER_LAYER, out_feats[ENCODER_LAYER]), scaled(ENCODER_LAYER, target))
    l_style = content_feats.new_zeros(())
    for name in STYLE_LOSS_LAYERS:
        om, os_ = mean_std(out_feats[name])
        sm, ss = style_stats[name]
        l_style = l_style + F.mse_loss(scaled(name, om), scaled(name, sm)) + F.mse_loss(scaled(name, os_),
                                                                                         scaled(name, ss))
    if keep is not None:
        keep.append(per_crop_content_distance(out_feats[ENCODER_LAYER], content_feats))
    return l_content, l_style


RECONSTRUCTION_LAYERS = ("relu1_1", "relu2_1")


def reconstruction_losses(encoder: Perception, decoder: AdaINDecoder, content_feats: torch.Tensor,
                          crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(pixel MSE, low-level feature MSE over each layer's energy) of crops decoded from their own features."""
    out = decoder(content_feats).float()
    mine = encoder(out, RECONSTRUCTION_LAYERS)
    with torch.no_grad():
        theirs = encoder(crops, RECONSTRUCTION_LAYERS)
    features = sum(F.mse_loss(mine[n], theirs[n]) / (theirs[n].pow(2).mean() + 1e-8) for n in RECONSTRUCTION_LAYERS)
    return F.mse_loss(out, crops), features / len(RECONSTRUCTION_LAYERS)


def channel_scales(stats: dict[str, tuple[torch.Tensor, torch.Tensor]], per_layer: bool = False
                   ) -> dict[str, torch.Tensor]:
    """Per layer, each channel's mean activation over every painting variant (dead channels floored);
    ``per_layer``: every channel of a layer gets the layer's mean activation."""
    out = {}
    for name, (means, _) in stats.items():
        c = means.mean(dim=0)
        out[name] = torch.full_like(c, float(c.mean()) + 1e-8) if per_layer else c.clamp_min(
            1e-2 * float(c.mean()) + 1e-8)
    return out


def _stats_cache_key(painting_files: Sequence[Path], recipe: AdaINRecipe, seed: int, encoder: Perception) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([[p.name for p in painting_files], list(recipe.style_sizes), recipe.recoloured, seed,
                         encoder.spec(), encoder.source]).encode())
    for p in painting_files:
        h.update(p.read_bytes())
    return h.hexdigest()[:20]


def painting_stats_table(encoder: Perception, painting_files: Sequence[Path], recipe: AdaINRecipe, seed: int,
                         device, cache_dir: Path | None = None, log: Callable[[str], None] = print
                         ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per layer (K x C means, K x C stds) over every painting variant; cached on disk when ``cache_dir`` is set."""
    from safetensors.torch import load_file, save_file

    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"adain_stats_{_stats_cache_key(painting_files, recipe, seed, encoder)}.safetensors"
        if path.is_file():
            flat = load_file(str(path))
            return {n: (flat[f"{n}.mean"], flat[f"{n}.std"]) for n in STYLE_LOSS_LAYERS}
    t0 = time.monotonic()
    generator = torch.Generator().manual_seed(seed)
    images = []
    for p in painting_files:
        images += painting_variants(to_srgb(load_image(p)).rgb, recipe.style_sizes, recipe.recoloured, generator)
    table = painting_statistics(encoder, images, STYLE_LOSS_LAYERS, device)
    log(f"painting statistics: {len(images)} variants of {len(painting_files)} paintings in "
        f"{time.monotonic() - t0:.0f} s")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({f"{n}.{k}": t.contiguous() for n, (m, s) in table.items() for k, t in (("mean", m), ("std", s))},
                  str(path))
    return table


def train_adain_budgeted(model_path: str | Path, state_path: str | Path, content_folders: Sequence[str | Path],
                         painting_files: Sequence[str | Path], minutes: float, *, recipe: AdaINRecipe | None = None,
                         seed: int = 0, device=None, profile: str = "cpu", max_steps: int | None = None,
                         warm_start: str | Path | None = None, cache_dir: Path | None = None,
                         held_out: Sequence[str] = (), content_limit: int | None = None,
                         log: Callable[[str], None] = print) -> dict:
    """Train for ``minutes`` (or until ``max_steps``), continuing from ``state_path``; returns a summary."""
    recipe = recipe or AdaINRecipe()
    budget = Budget(minutes, recipe.checkpoint_seconds)  # the minutes count from here, loading included
    dev = pick_device(device)
    model_path, state_path = Path(model_path), Path(state_path)
    paintings = [Path(p) for p in painting_files]
    files = content_files(content_folders)[:content_limit]
    content_info = describe_files(files)
    encoder = load_perception(dev, "max")
    decoder_cfg = DecoderConfig.from_dict(recipe.decoder)
    identity = {"decoder": decoder_cfg.as_dict(), "seed": seed, "encoder": encoder.spec()}

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        decoder = AdaINDecoder(decoder_cfg)
    decoder = decoder.to(dev).train()
    optimizer = adam(decoder.parameters(), dev, lr=recipe.learning_rate)
    generator = torch.Generator().manual_seed(seed)
    run = ResumableRun(model_path, state_path, MODEL_KIND, identity, decoder, optimizer, generator, dev, profile,
                       content_info, log)
    run.config_fn = lambda step: {"name": "adain", "decoder": decoder_cfg.as_dict(), "encoder": encoder.spec(),
                                  "encoder_source": encoder.source, "training": asdict(recipe), "seed": seed,
                                  "paintings": [p.name for p in paintings], "held_out_paintings": list(held_out)}
    step = run.resume(warm_start)
    if budget.exhausted():  # --minutes 0: only (re)write the model file from the state, without loading data
        run.save(step)
        return run.summary(step, None)
    t_load = time.monotonic()
    images = load_content(files)
    stats = painting_stats_table(encoder, paintings, recipe, seed, dev, cache_dir, log)
    n_variants = next(iter(stats.values()))[0].shape[0]
    pool = CropPool(images, encoder, (ENCODER_LAYER,), seed, dev)
    if recipe.loss_scaling not in ("none", "per_layer", "per_channel"):
        raise ValueError(f"loss_scaling must be none, per_layer or per_channel, not {recipe.loss_scaling!r}")
    scales = None if recipe.loss_scaling == "none" else {
        n: c.to(dev) for n, c in channel_scales(stats, recipe.loss_scaling == "per_layer").items()}
    run.session["loss_scaling"] = recipe.loss_scaling
    previous = run.history[-1].get("loss_scaling", "none") if run.history else recipe.loss_scaling
    if previous != recipe.loss_scaling and step >= recipe.warmup_steps:
        # Adam's moments at the old loss's scale would mis-size the steps for hundreds of steps.
        optimizer.state.clear()
        log(f"loss scaling changed ({previous} -> {recipe.loss_scaling}): optimizer moments restarted")
    log(f"{len(images)} content images, {len(paintings)} paintings ({n_variants} variants) ready in "
        f"{time.monotonic() - t_load:.0f} s")
    autocast = recipe.bf16_autocast and dev.type == "cuda"
    with budget:
        while run.continues(step, max_steps, budget):
            crop, batch, pool_count, t0 = refresh_pool(pool, recipe, step, log)
            idx = torch.randint(pool_count, (batch,), generator=generator, device="cpu")
            sidx = torch.randint(n_variants, (batch,), generator=generator, device="cpu")
            for group in optimizer.param_groups:
                group["lr"] = recipe.learning_rate / (1.0 + recipe.lr_decay * step)
            feats = pool.features[ENCODER_LAYER][idx].to(dev)
            if step == recipe.warmup_steps > 0 or (step > 0 and recipe.reconstructing(step - 1)
                                                   and not recipe.reconstructing(step)):
                # Adam's moments at the previous loss's scale would mis-size the first steps of the next one.
                optimizer.state.clear()
            optimizer.zero_grad(set_to_none=True)
            l_pixel = torch.zeros((), device=dev)
            l_keep = torch.zeros((), device=dev)
            l_stable = torch.zeros((), device=dev)
            l_lattice = torch.zeros((), device=dev)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
                if step < recipe.warmup_steps:
                    l_content = F.mse_loss(decoder(feats).float(), pool.crops[idx].to(dev))
                    l_style = l_content.new_zeros(())
                elif recipe.reconstructing(step):
                    l_pixel, l_content = reconstruction_losses(encoder, decoder, feats, pool.crops[idx].to(dev))
                    l_content = recipe.reconstruction_feature_weight * l_content
                    l_style = l_content.new_zeros(())
                else:
                    style = {n: (m[sidx].to(dev)[..., None, None], s[sidx].to(dev)[..., None, None])
                             for n, (m, s) in stats.items()}
                    kept: list = []
                    decoded: list = []
                    cap = (DEFAULT_MAX_GAIN if recipe.capped_targets_from is not None
                           and step >= recipe.capped_targets_from else None)
                    l_content, l_style = cached_adain_losses(encoder, decoder, feats, style, scales, kept, decoded,
                                                             cap)
                    l_keep = kept[0]
                    if recipe.stability_weight > 0 and step >= recipe.stability_from:
                        crops = pool.crops[idx].to(dev)
                        grain = stability_noise(crops.shape, recipe.stability_noise, generator).to(dev)
                        with torch.no_grad():
                            grainy = encoder(crops + grain, (ENCODER_LAYER,))[ENCODER_LAYER]
                        l_stable = (decoder(adain(grainy, *style[ENCODER_LAYER], max_gain=cap)).float()
                                    - decoded[0].float()).pow(2).mean()
                    if recipe.lattice_weight > 0 and recipe.lattice_from is not None and step >= recipe.lattice_from:
                        l_lattice = lattice_energy(decoded[0].float(), cells=recipe.lattice_cells).mean()
                    if recipe.pixel_weight > 0:  # unstylized crops decoded back to themselves: no VGG pass
                        rid = torch.randint(pool_count, (batch,), generator=generator, device="cpu")
                        l_pixel = F.mse_loss(decoder(pool.features[ENCODER_LAYER][rid].to(dev)).float(),
                                             pool.crops[rid].to(dev))
            loss = (l_content.float() + recipe.style_weight * l_style.float() + recipe.pixel_weight * l_pixel.float()
                    + recipe.content_keep_weight * l_keep.float() + recipe.stability_weight * l_stable.float()
                    + recipe.lattice_weight * l_lattice.float())
            run.optimize(step, loss, f"AdaIN training diverged at step {step}; the checkpoint before it is kept")
            step += 1
            run.end_step(step, t0, budget, (lambda s_per_step: (
                f"step {step}: content {float(l_content.detach()):.4f} style {float(l_style.detach()):.4f} "
                f"pixel {float(l_pixel.detach()):.4f} keep {float(l_keep.detach()):.3f} stable {float(l_stable.detach()):.5f} "
                f"lattice {float(l_lattice.detach()):.2e} "
                f"{s_per_step:.2f} s/step, crop {crop}, batch {batch}"))
                if step % 25 == 0 or step == recipe.warmup_steps else None)
    return run.finish(step, budget)
