"""The CUDA bench rows of issue 20, one at a time, each written as soon as it is measured.

``python -m benchmarks.gpu_rows --device cuda --rows gan_train,... --jsonl rows.jsonl [--tiny]``

Each row measures one of the GPU targets (texture GAN training steps/s at batch 16, 4096² tileable generation,
fast style 1080p fp16, AdaIN 1080p, optimisation of a 1080p frame, instant synthesis 512² and 2048², VAE training
steps/s) next to a baseline: the same call on this machine's CPU where that takes seconds, else the previous
CPU figure from ``docs/bench.json``. A row that misses its target (or has none and asks) is profiled once (``torch.profiler``, the top
operators by device time) so the report says what the time is spent on. ``--tiny`` is the rehearsal: the same
calls at toy sizes on the CPU, in seconds.

The runner appends ``{"row", "status": "started"}`` before each row and the finished row after it, so
``tools.gpu_run`` can kill a row that hangs and restart with the rest (a failing row never stops the others).
"""

from __future__ import annotations

import argparse
import json
import os
import time
import traceback
from pathlib import Path
from typing import Callable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
PREVIOUS = ROOT / "docs" / "bench.json"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_seconds(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def _training_steps_per_s(train: Callable[[Path, int, torch.device, bool], object], device: torch.device,
                          steps: int, path: Path) -> float:
    """Steps per second of ``train(path, total_steps, device, resume)`` continuing a one-step run (the warm-up:
    kernels chosen, VGG19 on the device); the timed run includes its checkpoint write."""
    train(path, 1, device, False)
    _sync(device)
    start = time.perf_counter()
    train(path, 1 + steps, device, True)
    _sync(device)
    return steps / (time.perf_counter() - start)


def _steady_steps_per_s(train: Callable[[Path, int, torch.device, bool], object], device: torch.device,
                        steps: int, path: Path) -> tuple[float, float, int]:
    """(steady, whole, steps done): after a one-step warm-up, a resumed run of ``steps // 4`` steps and one of
    ``steps``; both pay the same start (models built, state read, compiled graphs looked up or made again) and
    checkpoint write, so their difference is the steps alone (the steady rate a long training sees). ``whole``:
    the longer run with its fixed costs, the figure the second H200 run reported."""
    lead = max(1, steps // 4)
    train(path, 1, device, False)
    _sync(device)
    times = []
    for done, more in ((1, lead), (1 + lead, steps)):
        start = time.perf_counter()
        train(path, done + more, device, True)
        _sync(device)
        times.append(time.perf_counter() - start)
    steady = (steps - lead) / max(times[1] - times[0], 1e-9)
    return steady, steps / times[1], 1 + lead + steps


# Steps of the profiled call of a training row: it continues the row's own state, so the profile shows steady
# steps (the first H200 run profiled a one-step run from scratch: its thousands of copies were the setup and the
# checkpoint write, not the steps).
PROFILE_STEPS = 5


def _steady_steps_call(train: Callable[[Path, int, torch.device, bool], object], path: Path, device: torch.device,
                       done: int) -> Callable[[], object]:
    """The profiled call: ``PROFILE_STEPS`` more steps from the timed run's state (and one checkpoint write)."""
    return lambda: train(path, done + PROFILE_STEPS, device, True)


def _previous_cpu(name: str) -> float | None:
    """The last committed CPU figure of a bench row (docs/bench.json), or None."""
    try:
        rows = json.loads(PREVIOUS.read_text())["rows"]
    except (OSError, ValueError, KeyError):
        return None
    return next((r["value"] for r in rows if r["name"] == name and r["device"] == "cpu"), None)


def _frame(width: int, height: int) -> np.ndarray:
    from core.common.images import resize_rgb
    from core.style.data import render_like_scene

    return np.clip(resize_rgb(render_like_scene(256, 3), width, height), 0, 1).astype(np.float32)


# --------------------------------------------------------------------------- rows
# Each returns the row's fields plus "call": one representative call, profiled when the target is missed.

def gan_train(device: torch.device, tiny: bool) -> dict:
    from core.common.procedural import make_exemplar
    from core.texture_gan import TextureGANConfig, train_texture_gan

    work = Path(_WORK) / "gan_train"
    work.mkdir(parents=True, exist_ok=True)
    exemplar = make_exemplar("bricks", 96 if tiny else 256, seed=0)
    config = (TextureGANConfig(g_channels=(32, 16, 8), d_channels=(16, 32), crop_size=32, batch_size=2,
                               stats_scales=2, preview_every=0) if tiny
              else TextureGANConfig(batch_size=16, crop_size=128, preview_every=0))

    def train(path: Path, steps: int, dev: torch.device, resume: bool):
        return train_texture_gan([exemplar], path, steps, config=config, seed=0, device=dev, resume=resume,
                                 checkpoint_every=10 ** 9)

    steps = 4 if tiny else 160
    value, whole, done = _steady_steps_per_s(train, device, steps, work / "dev.safetensors")
    cpu = (_training_steps_per_s(train, torch.device("cpu"), 2, work / "cpu.safetensors")
           if device.type != "cpu" else None)
    return dict(name=f"texture GAN training (batch {config.batch_size}, crop {config.crop_size})", value=value,
                unit="steps/s", target="≥ 30 steps/s", target_value=30.0, better="higher",
                baseline_name="same steps on this machine's CPU", baseline_value=cpu,
                note=f"steady steps (two resumed runs' difference); a whole run of {steps} steps with its start and "
                     f"checkpoint write: {whole:.3g} steps/s; profile: {PROFILE_STEPS} steady steps",
                call=_steady_steps_call(train, work / "dev.safetensors", device, done))


def gan_materials_train(device: torch.device, tiny: bool) -> dict:
    """The recipe the bundled materials GAN and *Train From Image* train with (``distill.train_one_material``:
    patch, VGG19 and whole-exemplar terms, adversarial), on exemplar crops alone (no teacher tiles to
    synthesize first). No target of its own: the issue's target is the plain GAN's; this says what the
    product's recipe gets."""
    from core.common.procedural import make_exemplar
    from core.texture_gan.distill import train_one_material

    work = Path(_WORK) / "gan_materials_train"
    work.mkdir(parents=True, exist_ok=True)
    exemplar = make_exemplar("bricks", 96 if tiny else 256, seed=0)
    config = (dict(g_channels=(16, 8, 4), g_convs=(1, 1, 1), d_channels=(8, 16), local_dim=4, global_dim=4,
                   periodic_dim=2, crop_size=32, batch_size=2, stats_loss_weight=0.0, exemplar_stats_weight=0.0,
                   adversarial_from=1) if tiny
              else dict(batch_size=16, crop_size=128, adversarial_from=0))

    def train(path: Path, steps: int, dev: torch.device, resume: bool):
        return train_one_material([exemplar], path, steps, config=config, seed=0, device=dev, resume=resume,
                                  tiles=0)

    steps = 3 if tiny else 60
    value = _training_steps_per_s(train, device, steps, work / "dev.safetensors")
    cpu = (_training_steps_per_s(train, torch.device("cpu"), 2, work / "cpu.safetensors")
           if device.type != "cpu" else None)
    return dict(name=f"materials GAN training, distilled recipe (batch {config['batch_size']}, crop "
                     f"{config['crop_size']})", value=value, unit="steps/s", target="", target_value=None,
                better="higher", profile_always=True, baseline_name="same steps on this machine's CPU", baseline_value=cpu,
                note=f"profile: {PROFILE_STEPS} steady steps",
                call=_steady_steps_call(train, work / "dev.safetensors", device, 1 + steps))


def gan_generate_4096(device: torch.device, tiny: bool) -> dict:
    from core.texture_gan import load_texture_gan

    size = 128 if tiny else 4096
    from tools.zoo.gan import BUNDLED

    bundled = ROOT / "models" / BUNDLED  # the bundled materials GAN
    model = load_texture_gan(bundled, device=device)
    value = _median_seconds(lambda: model.generate(size, size, seed=1), device, repeats=1 if tiny else 3)
    note = model.last_message
    if device.type != "cpu":
        cpu_model = load_texture_gan(bundled, device="cpu")
        base = _median_seconds(lambda: cpu_model.generate(size, size, seed=1), torch.device("cpu"), 1, warmup=0)
        base_name = "same call on this machine's CPU"
    else:
        base, base_name = (_previous_cpu("materials GAN generate 2048x2048 tileable"),
                           "2048² on the 2-core CPU (docs/bench.json)")
    return dict(name=f"texture GAN generate {size}² tileable (bundled materials GAN)", value=value, unit="s",
                target="≤ 0.3 s", target_value=0.3, better="lower", baseline_name=base_name, baseline_value=base,
                note=note, call=lambda: model.generate(size, size, seed=1))


def fast_style_1080p(device: torch.device, tiny: bool) -> dict:
    from core.common.images import to_tensor
    from core.style.multistyle import default_multistyle_path, load_fast_style

    w, h = (128, 72) if tiny else (1920, 1080)
    # The bundled multi-style network (what the panel's fast styles run), one of its styles; the first GPU run
    # measured the single-style net of the previous bundle (11.9 ms), which is smaller.
    path, style = default_multistyle_path(), "starry_night"
    model = load_fast_style(path, device, style)
    x = to_tensor(_frame(w, h)).to(device)
    repeats, warmup = (3, 1) if tiny else (20, 3)
    # The product's path on CUDA: frames of one size after the first replay a CUDA graph (common/accelerate.py);
    # the figure without it beside, same run: eager layers and the palette read back, as the second H200 run.
    value = _median_seconds(lambda: model.stylize_tensor(x), device, repeats=repeats, warmup=warmup)
    replay, model.multi.replay = model.multi.replay, None
    eager = _median_seconds(lambda: model.stylize_tensor(x), device, repeats=repeats, warmup=1)
    model.multi.replay = replay
    cpu_model = load_fast_style(path, "cpu", style)
    xc = x.cpu()
    base = _median_seconds(lambda: cpu_model.stylize_tensor(xc), torch.device("cpu"), 1, warmup=0)
    graphs = "no CUDA graph" if replay is None else (
        f"graph replays {replay.replays}" + (f", capture failed: {list(replay.failed.values())[0][:200]}"
                                             if replay.failed else "")
        + "".join(f"; kept the {replay.chosen[k]} layers of "
                  + ", ".join(f"{n} {ms:.2f} ms" for n, ms in replay.timings.get(k, {}).items()) for k in replay.chosen)
        + "".join(f"; not captured: {'; '.join(e)[:300]}" for e in replay.rejected.values()))
    return dict(name=f"fast style {w}x{h}" + (" fp16" if model.half else ""), value=value * 1e3, unit="ms",
                target="≤ 5 ms fp16", target_value=5.0, better="lower",
                baseline_name="same call on this machine's CPU (fp32)", baseline_value=base * 1e3,
                note=f"bundled multi-style network, {style}, with its palette match; input already on the device; "
                     f"an animation's frames ({graphs}); without the replay (the palette read back to the host): "
                     f"{eager * 1e3:.2f} ms",
                call=lambda: model.stylize_tensor(x))


def _compiled(row: Callable[[torch.device, bool], dict], mode: str | None = None
              ) -> Callable[[torch.device, bool], dict]:
    """``row`` with ``$NEURAL_TEXTURES_COMPILE=1`` (common/accelerate.py: the networks compiled in place on
    CUDA) and, given a ``mode``, ``$NEURAL_TEXTURES_COMPILE_MODE``, restored after; the compile variants run
    last, since compiled shared networks stay compiled."""
    def measure(device: torch.device, tiny: bool) -> dict:
        from core.common.accelerate import COMPILE_ENV, COMPILE_MODE_ENV, compile_available

        settings = {COMPILE_ENV: "1", **({COMPILE_MODE_ENV: mode} if mode else {})}
        before = {key: os.environ.get(key) for key in settings}
        os.environ.update(settings)
        try:
            out = row(device, tiny)
        finally:
            for key, value in before.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        graphs = mode in ("reduce-overhead", "max-autotune")
        out["name"] += ((" compiled" + (", CUDA graphs" if graphs else "")) if compile_available(device)
                        else " (compile unavailable: eager)")
        out["note"] = ("torch.compile (Inductor) of the networks" + (f", mode {mode}: the networks' forward and "
                       "backward replayed as CUDA graphs" if graphs else "") + "; " + out.get("note", ""))
        return out

    return measure


def adain_1080p(device: torch.device, tiny: bool) -> dict:
    from core.common.images import to_tensor
    from core.style.adain import AdaINDecoder, AdaINModel, default_decoder_path, load_adain_model

    w, h = (128, 72) if tiny else (1920, 1080)
    bundled = default_decoder_path().is_file()

    def load(dev):  # timing does not depend on the weights: an untrained decoder of the same shape stands in
        return load_adain_model(default_decoder_path(), dev) if bundled else AdaINModel(AdaINDecoder(), {}, torch.device(dev))

    model = load(device)
    frame = _frame(w, h)
    stats = model.style_statistics(_frame(256, 256)[::-1].copy())
    x = to_tensor(frame).to(device)
    value = _median_seconds(lambda: model.stylize_tensor(x, stats), device, repeats=3 if tiny else 10,
                            warmup=1 if tiny else 2)
    cpu_model = load("cpu")
    cpu_stats = tuple(s.cpu() for s in stats)
    base = _median_seconds(lambda: cpu_model.stylize_tensor(x.cpu(), cpu_stats), torch.device("cpu"), 1, warmup=0)
    return dict(name=f"AdaIN {w}x{h}", value=value * 1e3, unit="ms", target="≤ 15 ms", target_value=15.0,
                better="lower", baseline_name="same call on this machine's CPU", baseline_value=base * 1e3,
                note="bundled decoder" if bundled else "no bundled decoder yet: an untrained one of the same shape",
                call=lambda: model.stylize_tensor(x, stats))


def optimize_1080p(device: torch.device, tiny: bool) -> dict:
    from core.common.procedural import make_exemplar
    from core.style import stylize_optimize
    from core.style.optimize import DEFAULT_STEPS, default_refine_steps

    w, h = (96, 54) if tiny else (1920, 1080)
    content, style = _frame(w, h), make_exemplar("rust", 256, 0)
    steps = (2, 1) if tiny else (DEFAULT_STEPS, default_refine_steps(DEFAULT_STEPS))

    def run():
        return stylize_optimize(content, style, steps=steps[0], refine_steps=steps[1], max_side=max(w, h),
                                device=device)

    value = _median_seconds(run, device, repeats=1, warmup=0)
    return dict(name=f"optimisation {w}x{h} ({steps[0]}+{steps[1]} L-BFGS steps, coarse to fine)", value=value,
                unit="s", target="≤ 20 s", target_value=20.0, better="lower",
                baseline_name="512² on the 2-core CPU (docs/bench.json)",
                baseline_value=_previous_cpu("optimisation 512x512, coarse to fine (50+16 L-BFGS steps)"),
                note="", call=run)


def _synth(device: torch.device, tiny: bool, size: int, target: float | None) -> dict:
    from core.common.images import load_rgb
    from core.texture_synth import synthesize

    exemplar = load_rgb(ROOT / "models" / "exemplars" / "photo_brick.png")
    side = 64 if tiny else size
    steps = 2 if tiny else None

    def run(dev):
        return synthesize(exemplar[:128, :128] if tiny else exemplar, side, side, seed=1, tileable=True,
                          steps=steps, device=dev).image

    run(device)  # warm-up: VGG19 and kernels
    value = _median_seconds(lambda: run(device), device, repeats=1, warmup=0)
    if device.type != "cpu" and size <= 512:
        base = _median_seconds(lambda: run(torch.device("cpu")), torch.device("cpu"), 1, warmup=0)
        base_name = "same call on this machine's CPU"
    else:
        base = _previous_cpu("synthesize 512x512 tileable (photo_brick, regular)")
        base_name = "512² on the 2-core CPU (docs/bench.json)"
    return dict(name=f"instant synthesis {side}² tileable (photo_brick)", value=value, unit="s",
                target=f"≤ {target:g} s" if target else "", target_value=target, better="lower",
                baseline_name=base_name, baseline_value=base, note="", call=lambda: run(device))


def synth_512(device: torch.device, tiny: bool) -> dict:
    return _synth(device, tiny, 512, 1.0)


def synth_2048(device: torch.device, tiny: bool) -> dict:
    return _synth(device, tiny, 2048, None)


def vae_train(device: torch.device, tiny: bool) -> dict:
    from core.common.procedural import make_exemplar
    from core.texture_vae import TextureVAEConfig, train_texture_vae

    work = Path(_WORK) / "vae_train"
    work.mkdir(parents=True, exist_ok=True)
    exemplars = [make_exemplar(n, 96 if tiny else 256, seed=0) for n in ("stones", "rust", "bricks", "wood")]
    config = (TextureVAEConfig(base_channels=8, channel_mult=(1, 2), latent_channels=4, crop_size=32, batch_size=2)
              if tiny else TextureVAEConfig())

    def train(path: Path, steps: int, dev: torch.device, resume: bool):
        return train_texture_vae(exemplars, path, steps, config=config, device=dev, resume=resume,
                                 checkpoint_every=10 ** 9)

    # 100 steps: the first H200 run's 300 (at about a GAN step's rate, CPU-bound) outran the row's limit
    steps = 4 if tiny else 120
    value, whole, done = _steady_steps_per_s(train, device, steps, work / "dev.safetensors")
    cpu = (_training_steps_per_s(train, torch.device("cpu"), 3, work / "cpu.safetensors")
           if device.type != "cpu" else None)
    return dict(name=f"texture VAE training (batch {config.batch_size}, crop {config.crop_size})", value=value,
                unit="steps/s", target="≥ 100 steps/s", target_value=100.0, better="higher",
                baseline_name="same steps on this machine's CPU", baseline_value=cpu,
                note=f"steady steps (two resumed runs' difference); a whole run of {steps} steps with its start and "
                     f"checkpoint write: {whole:.3g} steps/s; profile: {PROFILE_STEPS} steady steps",
                call=_steady_steps_call(train, work / "dev.safetensors", device, done))


# The quick rows first: a run cut short still measured most of them.
ROWS: dict[str, Callable[[torch.device, bool], dict]] = {
    "fast_style_1080p": fast_style_1080p, "adain_1080p": adain_1080p, "gan_generate_4096": gan_generate_4096,
    "synth_512": synth_512, "gan_train": gan_train, "vae_train": vae_train, "synth_2048": synth_2048,
    "optimize_1080p": optimize_1080p, "gan_materials_train": gan_materials_train,
    # Variants last: compiled shared networks (the VGG19) stay compiled for the rest of the process.
    "fast_style_1080p_compiled": _compiled(fast_style_1080p), "gan_train_compiled": _compiled(gan_train),
    "vae_train_compiled": _compiled(vae_train), "gan_materials_train_compiled": _compiled(gan_materials_train),
    # The trainings' next lever (host-bound even compiled): the compiled networks replayed as CUDA graphs.
    "vae_train_graphs": _compiled(vae_train, "reduce-overhead"), "gan_train_graphs": _compiled(gan_train, "reduce-overhead"),
}
_WORK = "bench_output/gpu_rows"


def missed(row: dict) -> bool:
    target = row.get("target_value")
    if target is None:
        return False
    return row["value"] > target if row["better"] == "lower" else row["value"] < target


def profile_call(call: Callable[[], object], device: torch.device, rows: int = 8) -> str:
    """The top operators of one call by device time (CPU time on the CPU): where a missed target's time goes.
    Then the host's side: the operators by host time with the project's source lines that call them, since the
    first H200 run found the trainings host-bound (thousands of small copies a step) without saying from where."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities, with_stack=True) as prof:
        call()
        _sync(device)
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"  # torch >= 2.4
    text = prof.key_averages().table(sort_by=key, row_limit=rows, max_name_column_width=48)
    return text + "\n\nHost side, by the source lines that call each operator:\n" + host_callers(prof, rows)


def host_callers(prof, rows: int = 8) -> str:
    """The operators with the most host time, each with the lines of this repository's code that call them (the
    innermost ``core/`` or ``tools/`` frame among the profiler's Python parents),
    so a host-bound row names the lines to batch or fuse."""
    import re
    from collections import defaultdict

    ours = re.compile(r"^(?:.*/)?((?:core|tools)/[\w/]+\.py\(\d+\): \w+)")
    by_line: dict[tuple[str, str], list] = defaultdict(lambda: [0, 0.0])
    totals: dict[str, float] = defaultdict(float)
    for event in prof.events():
        if event.device_type.name != "CPU" or not event.name.startswith("aten::"):
            continue
        totals[event.name] += event.self_cpu_time_total
        where, parent = "the backward pass, or code outside core/ and tools/", event.cpu_parent
        while parent is not None:
            match = ours.match(parent.name)
            if match:
                where = match.group(1)
                break
            parent = parent.cpu_parent
        entry = by_line[(event.name, where)]
        entry[0] += 1
        entry[1] += event.self_cpu_time_total
    lines = []
    for name, total in sorted(totals.items(), key=lambda kv: -kv[1])[:rows]:
        lines.append(f"{name}: {total / 1e3:.1f} ms host, {sum(v[0] for k, v in by_line.items() if k[0] == name)} calls")
        callers = sorted(((k[1], v) for k, v in by_line.items() if k[0] == name), key=lambda kv: -kv[1][1])[:4]
        lines += [f"    {where}: {n} calls, {t / 1e3:.1f} ms" for where, (n, t) in callers]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    global _WORK
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--jsonl", required=True)
    parser.add_argument("--work", default=_WORK)
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args(argv)
    _WORK = args.work
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(max(1, torch.get_num_threads()))
    out = Path(args.jsonl)
    for key in [r for r in args.rows.split(",") if r]:
        with out.open("a") as f:
            f.write(json.dumps({"row": key, "status": "started", "time": time.time()}) + "\n")
        start = time.perf_counter()
        call, always = None, False
        try:
            row = ROWS[key](device, args.tiny)
            call, always = row.pop("call", None), row.pop("profile_always", False)
            row.update(row=key, status="ok", device=device.type, missed=missed(row))
        except Exception:  # noqa: BLE001 - one row's failure is recorded and the next row runs
            row = {"row": key, "status": "failed", "error": traceback.format_exc(limit=8)[-3000:]}
        row["seconds"] = round(time.perf_counter() - start, 2)
        with out.open("a") as f:
            f.write(json.dumps(row, default=float) + "\n")
        print(f"gpu_rows: {key}: {row['status']} {row.get('value', '')} {row.get('unit', '')} "
              f"({row['seconds']} s)", flush=True)
        if (row.get("missed") or always) and call is not None:
            # After the row is written: a profile that overruns the row's limit loses the profile, not the figure.
            with out.open("a") as f:
                f.write(json.dumps({"row": key, "status": "started", "phase": "profile", "time": time.time()}) + "\n")
            try:
                text = profile_call(call, device)
            except Exception:  # noqa: BLE001
                text = "profiling failed: " + traceback.format_exc(limit=4)[-1500:]
            with out.open("a") as f:
                f.write(json.dumps({"row": key, "status": "profile", "profile": text}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
