#!/usr/bin/env python3
"""The one entry point: ``python build.py {test,demo,package,bench,models}``.

Every command first makes sure a virtual environment with the pinned
requirements exists (``.venv``, created with Python 3.11 because ``bpy==5.0.1``
needs it), then re-runs itself inside it. ``--system`` skips the venv and uses
the running interpreter as is (for machines without network that already have
torch, e.g. a lent GPU machine, where bpy is absent and Blender tests skip).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
REQUIREMENTS = ROOT / "requirements.txt"
# The optional render-farm extra (Ray): not needed by the add-on, installed here so the farm tests run
# a real local cluster on every machine that runs `build.py test`.
FARM_REQUIREMENTS = ROOT / "requirements-farm.txt"
STAMP = VENV / ".requirements.sha256"


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _find_python311() -> str:
    if sys.version_info[:2] == (3, 11):
        return sys.executable
    for name in ("python3.11", "python3", "python"):
        exe = shutil.which(name)
        if exe:
            out = subprocess.run([exe, "-c", "import sys; print(sys.version_info[:2] == (3, 11))"],
                                 capture_output=True, text=True)
            if out.stdout.strip() == "True":
                return exe
    sys.exit("build.py: Python 3.11 is needed (bpy==5.0.1 is built for it); install python3.11 and retry")


def ensure_venv() -> Path:
    """Create or reuse .venv and install the pinned requirements when they changed."""
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes() + FARM_REQUIREMENTS.read_bytes()).hexdigest()
    py = venv_python()
    if py.exists() and STAMP.exists() and STAMP.read_text().strip() == wanted:
        return py
    if not py.exists():
        print("build.py: creating .venv", flush=True)
        subprocess.run([_find_python311(), "-m", "venv", str(VENV)], check=True)
    print("build.py: installing pinned requirements (first run takes a few minutes)", flush=True)
    subprocess.run([str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q", "--upgrade", "pip"],
                   check=True)
    subprocess.run([str(py), "-m", "pip", "install", "--disable-pip-version-check", "-r", str(REQUIREMENTS),
                    "-r", str(FARM_REQUIREMENTS)], check=True)
    STAMP.write_text(wanted)
    return py


def in_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


# --------------------------------------------------------------------------- commands

def cmd_test(args: argparse.Namespace) -> int:
    # --device picks where the core suite runs (NEURAL_TEXTURES_DEVICE; CPU unless asked).
    device = args.device or os.environ.get("NEURAL_TEXTURES_DEVICE", "cpu")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print(f"build.py test: --device cuda, but torch {torch.__version__} sees no CUDA GPU", flush=True)
            return 2
    env = dict(os.environ, PYTHONPATH=str(ROOT), NEURAL_TEXTURES_DEVICE=device)
    # Tests start worker subprocesses beside pytest: idle OpenMP threads must sleep, not spin.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # Paths given (e.g. ``tests/core``) replace the default ``tests``; pytest would otherwise collect both.
    named = any((ROOT / a.split("::")[0]).exists() for a in args.pytest_args if not a.startswith("-"))
    cmd = [sys.executable, "-m", "pytest", *([] if named else ["tests"]), "-ra", "--durations=15", *args.pytest_args]
    print(f"build.py: NEURAL_TEXTURES_DEVICE={device}", " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT, env=env).returncode


def _package_files() -> list[tuple[Path, str]]:
    """(source, name in zip): the add-on at the zip root, core and models inside it."""
    skip_dirs = {"__pycache__", ".pytest_cache"}
    files: list[tuple[Path, str]] = []

    def add_tree(src: Path, prefix: str, suffixes: tuple[str, ...] | None = None) -> None:
        for path in sorted(src.rglob("*")):
            rel = path.relative_to(src)
            if path.is_dir() or any(part in skip_dirs for part in rel.parts) or path.suffix in (".pyc", ".tmp"):
                continue
            if any(part.startswith(".") for part in rel.parts):
                continue
            if suffixes is not None and path.suffix not in suffixes:
                continue
            if path.name.endswith(".train.safetensors"):  # resume state: never shipped
                continue
            if prefix == "models/" and rel.parts[0] == "training":  # checkpoints of unfinished trainings
                continue
            if prefix == "models/" and len(rel.parts) > 2 and rel.parts[1] == "previous":  # retired: bench baselines
                continue
            files.append((path, f"{prefix}{rel.as_posix()}"))

    add_tree(ROOT / "blender_addon", "")
    add_tree(ROOT / "core", "core/")
    # Only what the add-on loads: checkpoints, their configs, thumbnails and the manifest.
    add_tree(ROOT / "models", "models/", (".safetensors", ".json", ".png", ".md"))
    return files


def build_package(out_dir: Path = ROOT / "dist") -> Path:
    import tomllib
    import zipfile

    manifest_path = ROOT / "blender_addon" / "blender_manifest.toml"
    manifest = tomllib.loads(manifest_path.read_text())
    for key in ("schema_version", "id", "version", "name", "type", "blender_version_min", "license"):
        if key not in manifest:
            raise SystemExit(f"build.py package: blender_manifest.toml lacks {key!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    zip_path = out_dir / f"{manifest['id']}-{manifest['version']}.zip"
    tmp = zip_path.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for src, name in _package_files():
            zf.write(src, name)
    os.replace(tmp, zip_path)
    return zip_path


def cmd_package(args: argparse.Namespace) -> int:
    zip_path = build_package()
    size = zip_path.stat().st_size / 1e6
    print(f"build.py: wrote {zip_path.relative_to(ROOT)} ({size:.1f} MB). Install it in Blender: "
          "Edit > Preferences > Get Extensions > Install from Disk.")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import importlib

    import torch

    sys.path.insert(0, str(ROOT))
    from benchmarks.report import BenchContext, machine_description, write_report

    torch.set_num_threads(os.cpu_count() or 1)
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    if args.devices:  # e.g. only the CUDA rows on a GPU box whose CPU rows would not compare with CI's
        devices = [d for d in devices if d.type in args.devices]
        if not devices:
            print(f"build.py bench: none of {args.devices} is available here", flush=True)
            return 2
    out_dir = Path(args.out)
    rows, machines = [], {}
    families = args.only or ["texture_gan", "texture_vae", "style", "texture_synth"]
    for device in devices:
        machines[device.type] = machine_description(device)
        for family in families:
            module = importlib.import_module(f"benchmarks.bench_{family}")
            print(f"build.py bench: {family} on {device}", flush=True)
            ctx = BenchContext(device=device, quick=args.quick, work_dir=out_dir / family)
            ctx.work_dir.mkdir(parents=True, exist_ok=True)
            module.run(ctx)
            rows.extend(ctx.rows)
    md, js = write_report(rows, machines, out_dir)
    print(md.read_text())
    print(f"build.py: report written to {md} and {js}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, str(ROOT / "tools" / "demo.py"), str(Path(args.out).resolve())],
                          cwd=ROOT, env=env).returncode


def cmd_models(args: argparse.Namespace) -> int:
    import torch

    sys.path.insert(0, str(ROOT))
    from tools import model_zoo

    if args.quality_only:
        manifest = model_zoo.refresh_quality(args.only)
        print(model_zoo.manifest_markdown())
        return 0
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.minutes is not None:  # time-budgeted, resumable trainings (tools/zoo/<name>.py)
        from tools import zoo

        entries = {}
        for name in args.only or zoo.names():
            extra = {"warm_start": Path(args.warm_start)} if args.warm_start else {}
            entry = zoo.recipe(name).train(args.minutes, device=device, profile=args.profile,
                                           out_dir=Path(args.out_dir) if args.out_dir else zoo.MODELS, **extra)
            entries[name] = entry
            print(f"build.py models: {name}: {entry.get('steps', '?')} steps in total", flush=True)
        if args.entry_out:  # the manifest entries, for build.py gpu-run
            import json

            Path(args.entry_out).write_text(json.dumps(entries, indent=2, default=str))
        return 0
    manifest = model_zoo.train(args.only, device, args.steps_scale)
    print(model_zoo.manifest_markdown())
    print(f"build.py: models written; manifest at {manifest.relative_to(ROOT)}")
    return 0


def cmd_gpu_run(args: argparse.Namespace) -> int:
    sys.path.insert(0, str(ROOT))
    from tools import gpu_run

    return gpu_run.main(args)


def cmd_fuzz(args: argparse.Namespace) -> int:
    """The hypothesis fuzz run of the worker protocol and the image loader, with its figures."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), NEURAL_TEXTURES_DEVICE="cpu", NEURAL_FUZZ_EXAMPLES=str(args.examples),
               NEURAL_FUZZ_REPORT="1", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    cmd = [sys.executable, "-m", "pytest", str(ROOT / "tests" / "core" / "test_fuzz_protocol.py"), "-q", "-s",
           "-p", "no:cacheprovider"]
    print("build.py:", " ".join(cmd), f"({args.examples} examples each)", flush=True)
    return subprocess.run(cmd, cwd=ROOT, env=env).returncode


COMMANDS = {
    "demo": (cmd_demo, "run the main job headless in Blender on the bundled models; results in demo_output/"),
    "test": (cmd_test, "run every test (pytest; GPU tests skip without a GPU)"),
    "package": (cmd_package, "build the Blender extension zip into dist/"),
    "models": (cmd_models, "retrain the bundled default models (GPU when present) and their manifest"),
    "bench": (cmd_bench, "measure speed and quality (Markdown + JSON report in bench_output/)"),
    "fuzz": (cmd_fuzz, "fuzz the worker protocol and the image loader (hypothesis) and print the figures"),
    "gpu-run": (cmd_gpu_run, "the one command for a lent GPU (suite, bench rows, trainings, one archive in $OUT); "
                             "--rehearse runs it on the CPU, --unpack puts its results in place"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python build.py", description=__doc__.splitlines()[0])
    parser.add_argument("--system", action="store_true", help="use the running Python as is; no venv, no installs")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        if name == "test":
            p.add_argument("--device", choices=["cpu", "cuda", "auto"], default=None,
                           help="device the core suite runs on (default cpu; cuda runs it all on the GPU)")
            p.add_argument("pytest_args", nargs=argparse.REMAINDER, help="extra pytest arguments")
        if name == "demo":
            p.add_argument("--out", default=str(ROOT / "demo_output"), help="output folder")
        if name == "models":
            p.add_argument("--only", nargs="*", help="names of the models to retrain (default: all)")
            p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
            p.add_argument("--steps-scale", type=float, default=1.0, help="scale every recipe's steps (quick trials)")
            p.add_argument("--minutes", type=float, default=None,
                           help="time-budgeted training (tools/zoo/): train each model for N minutes, continuing "
                                "from its checkpoint, and stop with a checkpoint the next run continues")
            p.add_argument("--profile", choices=["cpu", "gpu", "tiny"], default="cpu",
                           help="with --minutes: recipe sizes (cpu: this project's machines; gpu: larger crops and "
                                "batches; tiny: seconds-long smoke run)")
            p.add_argument("--out-dir", default=None, help="with --minutes: where checkpoints go (default models/)")
            p.add_argument("--warm-start", default=None,
                           help="with --minutes: folder laid out like models/ whose checkpoints a fresh --out-dir "
                                "starts from (e.g. models/ for a GPU run)")
            p.add_argument("--entry-out", default=None, help="with --minutes: write the manifest entries to this JSON")
            p.add_argument("--quality-only", action="store_true",
                           help="only re-measure the quality figures and thumbnails of trained models")
        if name == "gpu-run":
            sys.path.insert(0, str(ROOT))
            from tools import gpu_run

            gpu_run.add_arguments(p)
        if name == "fuzz":
            p.add_argument("--examples", type=int, default=2000, help="hypothesis examples per fuzz test")
        if name == "bench":
            p.add_argument("--quick", action="store_true", help="small sizes and steps (a smoke run)")
            p.add_argument("--only", nargs="*", choices=["texture_gan", "texture_vae", "style", "texture_synth", "farm"],
                           help="families to run (farm: chunk borders and Ray throughput; not in the default set)")
            p.add_argument("--out", default=str(ROOT / "bench_output"), help="report folder")
            p.add_argument("--devices", nargs="*", choices=["cpu", "cuda"], default=None,
                           help="devices to measure on (default: the CPU, and CUDA when present)")
    args, _ = parser.parse_known_args(argv)
    if args.command == "gpu-run" and not (args.rehearse or args.unpack or args.prepare):
        args.system = True  # the GPU machine has no network: never try to build a venv there
    if not args.system and not in_venv():
        py = ensure_venv()
        return subprocess.run([str(py), str(Path(__file__).resolve()), "--system", *(argv or sys.argv[1:])]).returncode
    args, unknown = parser.parse_known_args(argv)
    if args.command == "test":  # pytest's own options (-k, -x, ...) pass through in order
        args.pytest_args = unknown + args.pytest_args
    elif unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return COMMANDS[args.command][0](args)


if __name__ == "__main__":
    sys.exit(main())
