"""The Flamenco 3 job type (core/farm/flamenco/neural_textures_stylize.js) compiled under Node.

``flamenco_harness.js`` emulates the Manager's authoring globals (author.Task/Command, frameChunker,
print, path); the compiled ``exec`` commands are then run as a worker would run them (argument lists,
no shell), with the Manager's variables filled in, on a folder whose name has spaces and quotes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("OpenEXR")

from core.common.images import load_image  # noqa: E402
from core.style.chunks import DEFAULT_WARMUP, StyleSpec, output_path, parse_frame_range, stylize_chunked  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
JOB_TYPE = ROOT / "core" / "farm" / "flamenco" / "neural_textures_stylize.js"
HARNESS = Path(__file__).with_name("flamenco_harness.js")
STYLE = ROOT / "models" / "style" / "previous" / "wave.safetensors"
NODE = shutil.which("node")


def compile_job(settings: dict, tmp_path: Path) -> dict:
    assert NODE, "node is needed to test the Flamenco job type (Flamenco runs job types as JavaScript)"
    settings_file = tmp_path / "settings.json"
    settings_file.write_text(json.dumps(settings))
    done = subprocess.run([NODE, str(HARNESS), str(JOB_TYPE), str(settings_file)], capture_output=True, text=True,
                          timeout=120)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip() or "node failed")
    return json.loads(done.stdout)


def settings_for(tmp_path: Path, **overrides) -> dict:
    """The job type's defaults (as Flamenco fills them at submission) plus the artist's choices."""
    job_type = compile_job({"frames": "1", "chunk_size": 1, "python": "p", "core_dir": "c", "style": "s",
                            "input_dir": "i", "output_dir": "o", "warmup": 0, "strength": 1, "temporal_weight": 0},
                           tmp_path)["job_type"]
    settings = {s["key"]: s["default"] for s in job_type["settings"] if "default" in s}
    settings.update(overrides)
    return settings


def frames_arg(command: dict) -> tuple[int, int]:
    args = command["parameters"]["args"]
    return parse_frame_range(args[args.index("--frames") + 1])


def test_job_type_settings_are_well_formed(tmp_path):
    job_type = compile_job({"frames": "1", "chunk_size": 1, "python": "p", "core_dir": "c", "style": "s",
                            "input_dir": "i", "output_dir": "o", "warmup": 0, "strength": 1, "temporal_weight": 0},
                           tmp_path)["job_type"]
    keys = [s["key"] for s in job_type["settings"]]
    assert len(keys) == len(set(keys))
    for setting in job_type["settings"]:
        assert setting["type"] in ("string", "int32", "float", "bool") and setting.get("description"), setting
    defaults = {s["key"]: s.get("default") for s in job_type["settings"]}
    assert defaults["warmup"] == DEFAULT_WARMUP  # the job type and the core agree on the measured warm-up
    assert defaults["python"] == "{neural_textures_python}" and defaults["core_dir"] == "{neural_textures_core}"


@pytest.mark.parametrize("frames, chunk_size", [("1-24", 5), ("1-10, 12, 14-20", 2), ("3..9", 24), ("7", 3)])
def test_chunks_cover_every_frame_once_with_the_warmup(tmp_path, frames, chunk_size):
    odd = "/shared/shot 01/it's \"final\""
    settings = settings_for(tmp_path, frames=frames, chunk_size=chunk_size, warmup=5, style=f"{odd}/style.safetensors",
                            input_dir=f"{odd}/render", output_dir=f"{odd}/styled $HOME `x`")
    tasks = compile_job(settings, tmp_path)["tasks"]
    covered = []
    for task in tasks:
        assert task["name"].startswith("stylize-") and task["type"] == "misc" and task["commands"]
        for command in task["commands"]:
            assert command["name"] == "exec"
            params = command["parameters"]
            assert params["exe"] == "{neural_textures_python}"  # the Manager fills its variable per worker
            args = params["args"]
            assert all(isinstance(a, str) for a in args)
            assert args[args.index("--warmup") + 1] == "5"
            # every path is one argument, byte for byte: spaces, quotes, $ and backticks reach the core intact
            assert args[args.index("--style") + 1] == f"{odd}/style.safetensors"
            assert args[args.index("--input") + 1] == f"{odd}/render"
            assert args[args.index("--out") + 1] == f"{odd}/styled $HOME `x`"
            start, end = frames_arg(command)
            covered += range(start, end + 1)
    want = sorted(set(f for part in parse_flamenco_frames(frames) for f in part))
    assert sorted(covered) == want and len(covered) == len(set(covered))  # each frame exactly once
    assert len(tasks) == -(-len(want) // chunk_size)


def parse_flamenco_frames(text: str) -> list[range]:
    parts = []
    for part in text.replace("..", "-").split(","):
        start, end = parse_frame_range(part)
        parts.append(range(start, end + 1))
    return parts


def test_overlap_longer_than_a_chunk_is_refused(tmp_path):
    settings = settings_for(tmp_path, frames="1-10", chunk_size=2, overlap=3, style="s", input_dir="i", output_dir="o")
    with pytest.raises(RuntimeError, match="overlap"):
        compile_job(settings, tmp_path)


@pytest.fixture(scope="module")
def short_sequence(tmp_path_factory) -> list[Path]:
    sys.path.insert(0, str(ROOT))
    from tools.render_motion_sequence import cached_sequence
    folder = tmp_path_factory.mktemp("farm") / "shot 01" / "it's \"final\""
    folder.mkdir(parents=True)
    return [Path(shutil.copy(p, folder)) for p in cached_sequence()[:8]]


def test_compiled_commands_run_on_a_worker(tmp_path, short_sequence):
    """Run each task's exec commands as a Flamenco worker would (argv list, variables filled), last task first."""
    out = short_sequence[0].parent.parent / "styled 'v1'"
    settings = settings_for(tmp_path, frames="1-8", chunk_size=4, style=str(STYLE), input_dir=str(short_sequence[0].parent),
                            output_dir=str(out), device="cpu")
    tasks = compile_job(settings, tmp_path)["tasks"]
    variables = {"{neural_textures_python}": sys.executable, "{neural_textures_core}": str(ROOT)}
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("PYTHONPATH", None)  # the launcher finds the core through core_dir alone
    for task in reversed(tasks):  # chunks are independent: any order
        for command in task["commands"]:
            params = command["parameters"]
            argv = [variables.get(params["exe"], params["exe"])] + [variables.get(a, a) for a in params["args"]]
            done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
            assert done.returncode == 0, done.stderr
    reference = tmp_path / "reference"
    import torch
    torch.set_num_threads(1)
    stylize_chunked(StyleSpec(str(STYLE)).build("cpu"), short_sequence, reference, chunk_size=4)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in reference.iterdir())
    for f in short_sequence:
        np.testing.assert_array_equal(load_image(output_path(out, f)).rgb, load_image(output_path(reference, f)).rgb)
