"""Texture GAN benchmark: training speed, generation time, seams and texture statistics.

A model is trained briefly inside the bench on one procedural exemplar (bricks),
so every row is measured in this run, next to a baseline from the same run:

* training steps/s vs the same step without the statistics loss (GAN only);
* generation time per size vs one whole-canvas pass on the CPU (the default tiles there), vs 512 px tiles on CUDA;
* seam score of tileable output vs naive tiling of the exemplar (its own wrap seam);
* texture statistics distance vs a random crop of the exemplar (the real thing);
* copied-patch fraction vs a random crop (which is 100% copy by definition).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from core.common.procedural import make_exemplar
from core.common.quality import copy_check, pooled_seam_score, seam_score, vgg_texture_distance
from core.texture_gan import TextureGANConfig, load_texture_gan, train_texture_gan
from core.texture_synth.structure import find_lattice, lattice_regularity

from .report import BenchContext, time_pair

FAMILY = "texture_gan"


def _train(ctx: BenchContext, exemplar: np.ndarray, steps: int, config: TextureGANConfig, path: Path) -> float:
    """Train ``steps`` steps; return steps/s measured after a short warm-up."""
    warmup = min(3, steps)
    train_texture_gan([exemplar], path, warmup, config=config, seed=0, device=ctx.device, resume=False,
                      checkpoint_every=10 ** 9)
    if ctx.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    train_texture_gan([exemplar], path, steps, config=config, seed=0, device=ctx.device, resume=True,
                      checkpoint_every=10 ** 9)
    if ctx.device.type == "cuda":
        torch.cuda.synchronize()
    return (steps - warmup) / max(1e-9, time.perf_counter() - start)


def run(ctx: BenchContext) -> None:
    cuda = ctx.device.type == "cuda"
    work = Path(ctx.work_dir) / "texture_gan"
    work.mkdir(parents=True, exist_ok=True)
    side = 128 if ctx.quick else 256
    exemplar = make_exemplar("bricks", side, seed=0)
    if ctx.quick:
        steps = 12
        config = TextureGANConfig(g_channels=(64, 32, 16, 8), crop_size=32, batch_size=2, stats_scales=3,
                                  preview_every=0)
    elif cuda:
        steps = 3000  # ~ the "usable model in < 3 min on an H100" budget; see the minutes row
        config = TextureGANConfig(batch_size=16, preview_every=0)
    else:
        steps = 250  # the CPU recipe for the bundled models (4-8 min on 2 shared cores)
        config = TextureGANConfig(preview_every=0)

    # ---- training speed
    model_path = work / "bench_bricks.safetensors"
    start = time.perf_counter()
    steps_per_s = _train(ctx, exemplar, steps, config, model_path)
    minutes = (time.perf_counter() - start) / 60
    gan_only = TextureGANConfig(**{**config.to_dict(), "stats_loss_weight": 0.0})
    base_steps_per_s = _train(ctx, exemplar, steps if ctx.quick else 30, gan_only, work / "bench_gan_only.safetensors")
    ctx.add(family=FAMILY, name=f"train steps/s (crop {config.crop_size}, batch {config.batch_size})",
            value=steps_per_s, unit="steps/s", baseline_name="GAN-only step (no stats loss)",
            baseline_value=base_steps_per_s, note=f"{steps} steps in {minutes:.2f} min")
    ctx.add(family=FAMILY, name=f"train {steps} steps on one {side}px exemplar", value=minutes, unit="min",
            target="usable model in < 3 min on H100" if cuda else "", note="wall time incl. warm-up")

    model = load_texture_gan(model_path, device=ctx.device)

    # ---- generation time
    sizes = ([128, 256] if ctx.quick else [512, 1024, 2048]) if not cuda else ([512, 1024] if ctx.quick else [1024, 2048, 4096])
    for size in sizes:
        # CUDA: against 512 px tiles. CPU: against the path before the fused upsampling (model.upsample_conv),
        # which also tiled in 512 px from 512^2 up.
        base_name = "same in 512px tiles" if cuda else "unfused, 512px tiles (the previous CPU path)"
        def unfused(size=size):
            model.generator.fused_upsampling = cuda
            try:
                return model.generate(size, size, seed=1, tile_size=512 if size > 512 else None)
            finally:
                model.generator.fused_upsampling = True

        # Three alternating repeats at every size: one 2048^2 pair on a shared CPU once read 5.3 s against the
        # baseline's 3.4 s, where repeated pairs give 3.8-4.0 s against 4.8-4.9 s.
        t, t_base = time_pair(lambda: model.generate(size, size, seed=1), unfused, ctx.device, repeats=3)
        target = "< 0.5 s on H100" if (cuda and size == 4096) else ""
        ctx.add(family=FAMILY, name=f"generate {size}x{size} tileable", value=t, unit="s",
                baseline_name=base_name, baseline_value=t_base, target=target, note=model.last_message)

    # ---- quality
    crop = side // 2
    rng = np.random.default_rng(0)
    seeds = range(2 if ctx.quick else 6)
    # One wrap border is a single sample of the column-boundary statistics, so
    # average the score over many seeds before comparing it with 1.0.
    seam_seeds = range(4 if ctx.quick else 24)
    # phase-matched: the wrap border falls between upsampled cells, so it is compared with those boundaries
    seam_gen = pooled_seam_score([model.generate(256, 256, seed=s) for s in seam_seeds], model.stride)
    seam_plain = pooled_seam_score([model.generate(256, 256, seed=s, tileable=False) for s in seam_seeds])
    seam_naive = seam_score(exemplar)  # tiling the exemplar 2x2 shows exactly its wrap-around border
    ctx.add(family=FAMILY, name="seam score, tileable output (1.0 = seamless)", value=seam_gen, unit="ratio",
            baseline_name="exemplar tiled 2x2", baseline_value=seam_naive, target="within 2% of 1.0",
            note=f"phase-matched (period {model.stride}); non-tileable output: {seam_plain:.3f}; 256px, "
                 f"pooled over {len(seam_seeds)} seeds")

    gen_dist, crop_dist = [], []
    for s in seeds:
        gen_dist.append(vgg_texture_distance(model.generate(crop, crop, seed=s), exemplar))
        y, x = rng.integers(0, side - crop + 1, 2)
        crop_dist.append(vgg_texture_distance(exemplar[y:y + crop, x:x + crop], exemplar))
    ctx.add(family=FAMILY, name=f"VGG19 texture distance to exemplar ({crop}px)", value=float(np.mean(gen_dist)),
            unit="swd", target="<= 1.6x the crops'", baseline_name="random crop of exemplar", baseline_value=float(np.mean(crop_dist)),
            note="lower is closer; the crop is the real texture")

    _train_from_image(ctx, exemplar, crop, float(np.mean(gen_dist)), float(np.mean(crop_dist)), steps)

    y, x = rng.integers(0, side - crop + 1, 2)
    copied = copy_check(model.generate(crop, crop, seed=11), [exemplar]).copied_fraction
    copied_crop = copy_check(exemplar[y:y + crop, x:x + crop], [exemplar]).copied_fraction
    ctx.add(family=FAMILY, name="copied-patch fraction", value=copied, unit="fraction",
            baseline_name="random crop of exemplar", baseline_value=copied_crop, note="near 0 = new texture, not a copy")

    _materials_training_step(ctx)
    _bundled_materials(ctx)


# The panel's Train From Image fine-tunes the bundled materials GAN (its default recipe), 2,000 steps by default;
# the row measures the first 100 (on this wall 300 steps read 0.74-0.80x, 2026-12-04; docs/training_notes.md).
FINE_TUNE_STEPS = 100
PANEL_STEPS = 2000  # blender_addon/properties.py NeuralTrainSettings.steps (a test keeps the two in step)


def _train_from_image(ctx: BenchContext, exemplar: np.ndarray, crop: int, spatial_distance: float,
                      crop_distance: float, spatial_steps: int) -> None:
    """*Train From Image* as the panel sends it: the bundled materials GAN fine-tuned to the same procedural
    exemplar (``recipe="finetune"``: distilled from instant synthesis, starting from the material nearest the
    exemplar), the same seeds and crops as the per-texture GAN above, whose distance is the same-run baseline."""
    if ctx.quick:
        return
    from core.texture_gan.distill import bundled_materials_path, train_one_material

    source = bundled_materials_path()
    if not source.is_file():
        print("bench_texture_gan: no Train From Image row: the bundled materials GAN is missing", flush=True)
        return
    path = Path(ctx.work_dir) / "texture_gan" / "bench_train_from_image.safetensors"
    start = time.perf_counter()
    train_one_material(exemplar, path, FINE_TUNE_STEPS, seed=0, device=ctx.device, resume=False, start_from=source)
    minutes = (time.perf_counter() - start) / 60
    model = load_texture_gan(path, device=ctx.device)
    distance = float(np.mean([vgg_texture_distance(model.generate(crop, crop, seed=s), exemplar) for s in range(6)]))
    ctx.add(family=FAMILY, name=f"Train From Image (fine-tuned bundled materials GAN, {FINE_TUNE_STEPS} of the "
                                f"panel's {PANEL_STEPS:,} steps): VGG19 SW ratio ({crop}px)",
            value=distance / crop_distance, unit="x crops", target="<= 1.6",
            baseline_name=f"the per-texture GAN above ({spatial_steps} steps), same crops",
            baseline_value=spatial_distance / crop_distance,
            note=f"{minutes:.1f} min wall time incl. the teacher tiles; from scratch the same recipe measured "
                 f"4.76x at 100 steps and 1.81x at 500 (2026-12-04)")
    # The courses: the VGG19 statistics barely see whether they run straight (wavy walls read ~1.1x too).
    lattice = find_lattice(exemplar)
    side = exemplar.shape[0]
    regularity = float(np.mean([lattice_regularity(model.generate(side, side, seed=s), lattice) for s in range(6)]))
    own = lattice_regularity(exemplar, lattice)
    ctx.add(family=FAMILY, name=f"Train From Image ({FINE_TUNE_STEPS} steps): lattice regularity ({side}px)",
            value=regularity / own, unit="x exemplar", target=">= 0.75",
            baseline_name="the exemplar's own (autocorrelation at its repeat vectors)", baseline_value=1.0,
            note=f"exemplar {own:.2f}, outputs {regularity:.2f} (6 seeds); 300 steps of the same fine-tune without "
                 "the exemplar's lattice inputs read 0.10 (0.12x) on 2026-12-04: waving courses, square bricks")


def _materials_training_step(ctx: BenchContext) -> None:
    """One step of the bundled materials GAN's recipe (core/texture_gan/distill.py: nine materials, the CPU
    profile's sizes, adversarial term on), against the same step with the sliced Wasserstein losses sorting
    through ``torch.sort`` instead of ``quality.sort_rows`` (numpy's SIMD sort), and against the same step with the
    losses' VGG19 in the plain layout rather than channels-last, each pair timed alternately."""
    if ctx.quick or ctx.device.type != "cpu":
        return
    from core.common import quality
    from core.texture_gan.conditional import ConditionalGANConfig
    from core.texture_gan.distill import MaterialTrainer, TargetSampler
    from core.texture_gan.train import load_exemplars
    from tools.zoo.gan import MATERIALS, SEED, load_materials

    arrays, _ = load_exemplars(load_materials(MATERIALS, None), ConditionalGANConfig.max_exemplar_side)
    no_tiles = [np.zeros((0, 1, 1, 3), np.uint8)] * len(arrays)  # exemplar crops: the step's cost is the same

    def trainer_of(cfg: ConditionalGANConfig) -> MaterialTrainer:
        sampler = TargetSampler(arrays, no_tiles, cfg.crop_size, 1.0, torch.Generator(), ctx.device)
        trainer = MaterialTrainer(cfg, sampler, SEED, ctx.device)
        sampler.gen = trainer.data_gen
        # Past ``adversarial_from``: the term is on where ``cfg`` weighs it (the default config's step), off in
        # the bundled recipe since its step 156,151 (tools/zoo/gan.py), as each trains now.
        trainer.steps_done = cfg.adversarial_from
        return trainer

    cfg = ConditionalGANConfig(n_materials=len(MATERIALS))
    trainer = trainer_of(cfg)
    fast_sort = quality.sort_rows

    def steps(sort, trainer: MaterialTrainer = trainer) -> None:
        quality.sort_rows = sort
        try:
            for _ in range(4):
                trainer.step()
        finally:
            quality.sort_rows = fast_sort

    fast, slow = time_pair(lambda: steps(fast_sort), lambda: steps(lambda x: torch.sort(x, dim=1).values),
                           ctx.device, repeats=3)
    ctx.add(family=FAMILY, name=f"materials GAN training step (crop {cfg.crop_size}, batch {cfg.batch_size})",
            value=4 / fast, unit="steps/s", baseline_name="the same step sorting with torch.sort",
            baseline_value=4 / slow, note=f"{torch.get_num_threads()} torch threads; sorting was a third of a step")
    # The losses' VGG19 under the CPU's bf16 autocast runs channels-last (core/common/perception.py); against
    # the plain layout, whose every convolution output and gradient oneDNN copies back (same results, bit for bit).
    # The bundled model's own recipe (tools/zoo/gan.py: its whole-exemplar term at 384 px is most of a step).
    from core.common import perception
    from core.common.device import loss_precision
    from tools.zoo.gan import cpu_recipe

    recipe = trainer_of(ConditionalGANConfig(n_materials=len(MATERIALS), **cpu_recipe()))
    layout = perception.bf16_loss_channels_last

    def plain_steps() -> None:
        perception.bf16_loss_channels_last = lambda h: False
        try:
            steps(fast_sort, recipe)
        finally:
            perception.bf16_loss_channels_last = layout

    fast, slow = time_pair(lambda: steps(fast_sort, recipe), plain_steps, ctx.device, repeats=3)
    ctx.add(family=FAMILY, name=f"materials GAN training step, the bundled recipe, losses' VGG19 channels-last "
                                f"(crop {recipe.cfg.crop_size}, batch {recipe.cfg.batch_size})",
            value=4 / fast, unit="steps/s", baseline_name="the same step with the VGG19 in the plain layout",
            baseline_value=4 / slow,
            note=f"{torch.get_num_threads()} torch threads; losses' VGG19 here: {loss_precision(ctx.device)}"
                 " (fp32: the plain layout in both)")


# One output's ratio scatters with its seed (the bundled cobblestones, 24 seeds: 1.25-2.34, coefficient of variation
# 0.17): three, the bench's count until the forty-seventh session, read seeds 0-2 at 1.92 where 24 read 1.68.
MATERIALS_GAN_SEEDS = 8


def _bundled_materials(ctx: BenchContext) -> None:
    """The bundled materials GAN (models/texture_gan/materials.safetensors; the training's model when none is
    bundled), per material, against the exemplar's own random crops (same run) and the instant synthesizer it
    was distilled from. (The single-texture rows above train a GAN on a procedural exemplar inside the bench.)"""
    if ctx.quick:
        return
    from tools.eval_materials import evaluate
    from tools.model_quality import BASELINE_CROPS
    from tools.zoo.gan import measured_model

    model_path, which = measured_model()
    if model_path is None:
        print(f"bench_texture_gan: no materials GAN rows: {which}", flush=True)
        return
    # 512 seam outputs of 256 px: fewer scatter the ratio of an exactly periodic generator by up to 0.2
    # (tools/eval_materials.evaluate). MATERIALS_GAN_SEEDS outputs per material for the ratio.
    rows, extra, _ = evaluate(model_path, None, None, seeds=MATERIALS_GAN_SEEDS, seam_seeds=512, time_2048=True,
                              seam_side=256)
    for r in rows:
        ctx.add(family=FAMILY, name=f"materials GAN VGG19 SW ratio {r['material']} ({r['crop_px']}px)",
                value=r["gan_ratio"], unit="x crops", target="<= 1.6", baseline_name="instant synthesis (teacher)",
                baseline_value=r.get("instant_ratio"),
                note=f"distance / the mean distance of {BASELINE_CROPS} of the exemplar's own random crops; "
                     f"{MATERIALS_GAN_SEEDS} seeds; the teacher: its {r['instant_tiles']} tiles; {which}, "
                     f"{extra['steps']} steps"
                     + (f"; through its noise filter (white noise: {r['gan_ratio_white_noise']:.2f})"
                        if "gan_ratio_white_noise" in r else ""))
        if "courses" in r:
            c = r["courses"]
            filtered = (f"; through its noise filter (tools/fit_noise_filters.py), the same seeds through white noise: "
                        f"{c['gan_white_noise']:.2f}, ratio {r['gan_ratio_white_noise']:.2f}"
                        if "gan_white_noise" in c else "")
            ctx.add(family=FAMILY, name=f"materials GAN course regularity {r['material']}", value=c["gan"],
                    unit="correlation", baseline_name="instant synthesis (its teacher tiles, mean)",
                    baseline_value=c["instant"],
                    note=f"the mean profile across the courses against itself one period on ({c['period']} px, the "
                         f"exemplar's); 1.0: straight, even courses; the exemplar's own crops (straightened): "
                         f"{c['crops']:.2f}; not seen by the VGG19 ratio; {which}, {extra['steps']} steps{filtered}")
            white_large = (f"; the same seeds through white noise: {c['gan_white_noise_large']:.2f}"
                           if "gan_white_noise_large" in c else "")
            ctx.add(family=FAMILY, name=f"materials GAN course regularity {r['material']} at {c['large_px']}px",
                    value=c["gan_large"], unit="correlation",
                    baseline_name="instant synthesis at that size (its teacher's seeds), mean",
                    baseline_value=c["instant_large"],
                    note=f"twice the row above's size, the exemplar's whole side: as many courses as a wall in a "
                         f"scene shows, where the noise filters are fitted; the straightened exemplar itself: "
                         f"{c['exemplar_large']:.2f}; {MATERIALS_GAN_SEEDS} seeds{white_large}")
        low, high = min(r["gan_seam_rolled"]), max(r["gan_seam_rolled"])
        ctx.add(family=FAMILY, name=f"materials GAN seam {r['material']}", value=r["gan_seam"], unit="ratio",
                target="<= 1.02", baseline_name="same outputs rolled (an inner boundary as the border), mean",
                baseline_value=float(sum(r["gan_seam_rolled"]) / len(r["gan_seam_rolled"])),
                note=f"phase-matched, 256px, pooled over 512 seeds; rolled by 1/4, 1/2, 3/4: {low:.3f}-{high:.3f} "
                     f"(the measure's spread where there is no seam); non-tileable output: "
                     f"{r['gan_seam_plain']:.2f} (where there is one)")
    ctx.add(family=FAMILY, name="materials GAN wrap error (image of a 2x2-tiled canvas vs the image tiled 2x2)",
            value=extra["gan_wrap_error"], unit="max |diff|", target="<= 1e-4",
            note="exact seam check, every material; the seam ratios above estimate it statistically")
    ctx.add(family=FAMILY, name="materials GAN generate 2048x2048 tileable", value=extra["gan_2048_seconds"],
            unit="s", target="<= 3 s on the CPU")
