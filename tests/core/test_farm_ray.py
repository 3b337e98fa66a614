"""Ray farm runs on a real local cluster (2 CPUs, one cluster for the module): same frames, retries, cancel.

``ray`` is the optional farm extra (requirements-farm.txt); ``build.py test`` installs it.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("OpenEXR")
import ray  # noqa: E402  (build.py test installs requirements-farm.txt)
import ray.cloudpickle  # noqa: E402

from core.common.images import load_image  # noqa: E402
from core.common.jobs import CancelToken, JobCancelled  # noqa: E402
from core.farm.ray_pool import wait_until  # noqa: E402
from core.farm.ray_style import stylize_on_ray  # noqa: E402
from core.style.apply import stylize_array  # noqa: E402
from core.style.chunks import StyleSpec, output_path, stylize_chunked  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
STYLE = ROOT / "models" / "style" / "previous" / "wave.safetensors"
# the helpers below run inside the Ray workers, which cannot import this test file: send them by value
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 1024 ** 2, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def sequence() -> list[Path]:
    sys.path.insert(0, str(ROOT))
    from tools.render_motion_sequence import cached_sequence
    return cached_sequence()


@pytest.fixture(scope="module")
def reference(sequence, tmp_path_factory) -> Path:
    """The single-machine chunked run: 4 chunks of 6 frames, one after another in this process."""
    import torch
    torch.set_num_threads(1)  # as each Ray worker (one CPU slot each)
    out = tmp_path_factory.mktemp("reference")
    stylize_chunked(StyleSpec(str(STYLE)).build("cpu"), sequence, out, chunk_size=6)
    return out


def _same_frames(out: Path, reference: Path, files) -> None:
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == sorted(output_path(out, f).name for f in files)
    for f in files:
        np.testing.assert_array_equal(load_image(output_path(out, f)).rgb, load_image(output_path(reference, f)).rgb)


class CountingSetup:
    """Loads the style and notes each load in a file named after the worker process."""

    def __init__(self, folder: str):
        self.folder = folder

    def __call__(self):
        with open(os.path.join(self.folder, f"setup-{os.getpid()}"), "a") as fh:
            fh.write("loaded\n")
        return StyleSpec(str(STYLE)).build("cpu")


def test_ray_run_gives_the_single_machine_frames(cluster, sequence, reference, tmp_path):
    """24 frames in 4 chunks on 2 long-lived workers: bit-identical to the chunked run here; one load per worker."""
    marks = tmp_path / "marks"
    marks.mkdir()
    seen = []
    written = stylize_on_ray(CountingSetup(str(marks)), sequence, tmp_path / "out", chunk_size=6, address=None,
                             progress=seen.append)
    assert written == [str(output_path(tmp_path / "out", f)) for f in sequence]
    _same_frames(tmp_path / "out", reference, sequence)
    loads = {p.name: p.read_text().count("loaded") for p in marks.iterdir()}
    assert 1 <= len(loads) <= 2 and set(loads.values()) == {1}, loads  # 4 chunks, each worker loaded once
    assert [p.step for p in seen] == sorted(p.step for p in seen) and seen[-1].step == seen[-1].total == 24


class CrashOnce:
    """A worker that dies (its process exits, as on an out-of-memory kill) in the middle of its first chunk."""

    def __init__(self, folder: str):
        self.folder = folder

    def __call__(self):
        model = StyleSpec(str(STYLE)).build("cpu")
        marker, state = os.path.join(self.folder, "crashed"), {"frames": 0}

        def stylize(srgb, warm):
            state["frames"] += 1
            if state["frames"] == 3:
                try:  # exactly one worker of the run wins the marker and dies
                    os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                    os._exit(1)
                except FileExistsError:
                    pass
            return stylize_array(model, srgb)
        return stylize


def test_a_dead_workers_chunk_is_redone_elsewhere(cluster, sequence, reference, tmp_path):
    pools = []
    stylize_on_ray(CrashOnce(str(tmp_path)), sequence, tmp_path / "out", chunk_size=6, address=None,
                   pool_ready=pools.append)
    assert (tmp_path / "crashed").exists()
    assert len(pools[0].retries) == 1  # the dead worker's chunk, once
    _same_frames(tmp_path / "out", reference, sequence)  # nothing lost, nothing half-written, same frames


class Blocked:
    """A worker that notes it is busy, then stays inside its first frame (until the test's bound)."""

    def __init__(self, folder: str):
        self.folder = folder

    def __call__(self):
        def stylize(srgb, warm):
            open(os.path.join(self.folder, f"busy-{os.getpid()}"), "w").close()
            time.sleep(300)
            return srgb
        return stylize


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_cancel_stops_every_worker(cluster, sequence, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    token, pools, outcome = CancelToken(), [], {}

    def run():
        try:
            stylize_on_ray(Blocked(str(marks)), sequence, tmp_path / "out", chunk_size=6, address=None,
                           cancel=token, pool_ready=pools.append)
        except BaseException as exc:  # noqa: BLE001
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wait_until(lambda: len(list(marks.iterdir())) == 2, 120, "both workers busy in a chunk")
    pids = [int(p.name.split("-")[1]) for p in marks.iterdir()]
    token.cancel()
    thread.join(60)
    assert not thread.is_alive(), "the farm run did not stop within 60 s of cancel"
    assert isinstance(outcome.get("error"), JobCancelled), outcome
    wait_until(lambda: not any(_alive(pid) for pid in pids), 60, "every worker process gone after cancel")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # no frame, no half file


def test_texture_batch_on_ray_matches_here(cluster, tmp_path):
    """Two materials x two sizes (+ one synthesized exemplar) over the pool: the same bytes as one process."""
    from core.farm.texture_batch import run_texture_batch, texture_batch
    import shutil
    bundled = ROOT / "models" / "texture_gan" / "materials.safetensors"  # the bundled materials GAN (first material)
    second = tmp_path / "second.safetensors"  # a second model file: its own name, its own outputs
    shutil.copyfile(bundled, second)
    models = [str(bundled), str(second)]
    exemplar = [str(ROOT / "models" / "exemplars" / "bricks.png")]
    here = texture_batch(tmp_path / "here", models, sizes=[64, 96], device="cpu") + \
        texture_batch(tmp_path / "here", exemplars=exemplar, sizes=[48], device="cpu")
    farm = texture_batch(tmp_path / "farm", models, sizes=[64, 96], device="cpu") + \
        texture_batch(tmp_path / "farm", exemplars=exemplar, sizes=[48], device="cpu")
    import torch
    torch.set_num_threads(1)
    written_here = run_texture_batch(here)
    pools = []
    written_farm = run_texture_batch(farm, ray_address="auto", pool_ready=pools.append)
    assert [Path(p).name for p in written_farm] == [Path(p).name for p in written_here] == [
        "materials_64x64_s0.png", "materials_96x96_s0.png", "second_64x64_s0.png", "second_96x96_s0.png",
        "bricks_48x48_s0.png"]
    for a, b in zip(written_here, written_farm):
        assert Path(a).read_bytes() == Path(b).read_bytes(), Path(a).name
    assert pools[0].size == 2  # one worker per CPU slot of the 2-CPU cluster


def test_worker_job_runs_the_animation_on_the_cluster(cluster, sequence, reference, tmp_path):
    """The add-on's job (style.stylize_sequence with ray_address) through the worker protocol: progress, same frames."""
    import json
    import subprocess

    env = dict(os.environ, PYTHONPATH=str(ROOT), NEURAL_TEXTURES_DEVICE="cpu")
    proc = subprocess.Popen([sys.executable, "-m", "core.worker", "--workdir", str(tmp_path / "work"), "--threads", "1"],
                            cwd=str(ROOT), env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, bufsize=1)
    try:
        events = []

        def next_event() -> dict:
            line = proc.stdout.readline()
            assert line, "the worker closed its output"
            events.append(json.loads(line))  # every stdout line stays JSON while Ray runs inside the worker
            return events[-1]

        assert next_event()["event"] == "ready"
        out = tmp_path / "styled"
        proc.stdin.write(json.dumps({"cmd": "submit", "id": "farm", "kind": "style.stylize_sequence", "params": {
            "model": str(STYLE), "frames": [str(f) for f in sequence], "output_dir": str(out),
            "ray_address": ray.get_runtime_context().gcs_address, "chunk_size": 6}}) + "\n")
        proc.stdin.flush()
        deadline = time.monotonic() + 300
        while not (events and events[-1].get("id") == "farm" and events[-1]["event"] in ("done", "error")):
            assert time.monotonic() < deadline, "the farm job did not finish within 300 s"
            next_event()
        assert events[-1]["event"] == "done", events[-1]
        steps = [e["step"] for e in events if e.get("event") == "progress" and e.get("id") == "farm"]
        assert steps and steps[-1] == 24  # frames of finished chunks reach the add-on's job list
        _same_frames(out, reference, sequence)
    finally:
        proc.kill()
        proc.wait(10)
