"""The worker process protocol, for real: ``python -m core.worker`` as a subprocess."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
# JSON config dicts, as the add-on sends them; the worker turns them into the family's Config.
TINY_GAN = {"local_dim": 4, "global_dim": 2, "periodic_dim": 2, "g_channels": [16, 8], "d_channels": [8, 16],
            "crop_size": 16, "batch_size": 2, "preview_every": 1, "preview_size": 16}


class RawWorker:
    """Minimal JSON-lines client (the add-on has its own; this checks the wire format)."""

    def __init__(self, workdir: Path) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT), NEURAL_TEXTURES_DEVICE="cpu")
        self.proc = subprocess.Popen([sys.executable, "-m", "core.worker", "--workdir", str(workdir),
                                      "--threads", "1"],
                                     cwd=str(ROOT), env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        self.events: "queue.Queue[dict]" = queue.Queue()
        self.raw_lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()  # drain

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.raw_lines.append(line)
            self.events.put(json.loads(line))  # every stdout line must be JSON

    def send(self, **request) -> None:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()

    def next_event(self, timeout: float = 20.0) -> dict:
        return self.events.get(timeout=timeout)

    def wait_for(self, predicate, timeout: float = 30.0) -> tuple[dict, list[dict]]:
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            event = self.next_event(max(0.01, deadline - time.monotonic()))
            seen.append(event)
            if predicate(event):
                return event, seen

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    w = RawWorker(tmp_path_factory.mktemp("worker"))
    ready = w.next_event(30)
    assert ready["event"] == "ready" and ready["pid"] == w.proc.pid
    w.ready = ready
    assert "texture_gan.generate" in ready["kinds"] and "style.stylize" in ready["kinds"]
    yield w
    w.close()


def _final(event: dict, job_id: str) -> bool:
    return event.get("id") == job_id and event["event"] in ("done", "error", "cancelled")


def test_job_runs_with_progress_and_previews(worker):
    worker.send(cmd="submit", id="a", kind="selftest", params={"steps": 5, "delay": 0.01, "preview": True,
                                                                "preview_interval": 0})
    final, seen = worker.wait_for(lambda e: _final(e, "a"))
    kinds = [e["event"] for e in seen]
    assert kinds[:2] == ["queued", "started"] and final["event"] == "done"
    progress = [e for e in seen if e["event"] == "progress"]
    assert [p["step"] for p in progress] == [1, 2, 3, 4, 5] and progress[-1]["fraction"] == 1.0
    assert progress[-1]["losses"] == {"value": 1.0}
    preview = Path(progress[-1]["preview"])
    assert preview.is_file() and preview.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert final["result"] == {"steps": 5}


def test_error_is_reported_and_worker_keeps_serving(worker, tmp_path):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    worker.send(cmd="submit", id="bad", kind="style.stylize", params={"image": str(corrupt), "model": "x"})
    final, _ = worker.wait_for(lambda e: _final(e, "bad"))
    assert final["event"] == "error" and final["error_type"] == "ImageError"
    assert "corrupt" in final["message"] and "corrupt.png" in final["message"]

    worker.send(cmd="submit", id="unknown", kind="no.such.job", params={})
    final, _ = worker.wait_for(lambda e: _final(e, "unknown"))
    assert final["event"] == "error" and "unknown job kind" in final["message"]

    worker.send(cmd="submit", id="fails", kind="selftest", params={"fail": "the exemplar is too small"})
    final, _ = worker.wait_for(lambda e: _final(e, "fails"))
    assert final == {**final, "event": "error", "error_type": "ValueError", "message": "the exemplar is too small"}

    worker.proc.stdin.write("this is not json\n")
    worker.proc.stdin.flush()
    event, _ = worker.wait_for(lambda e: e["event"] == "protocol_error")
    assert "bad request" in event["message"]

    worker.send(cmd="submit", id="after", kind="selftest", params={"steps": 2, "delay": 0})
    final, _ = worker.wait_for(lambda e: _final(e, "after"))
    assert final["event"] == "done" and worker.proc.poll() is None


def test_cancel_running_and_queued_jobs(worker):
    worker.send(cmd="submit", id="long", kind="selftest", params={"steps": 1000, "delay": 0.01})
    worker.send(cmd="submit", id="waiting", kind="selftest", params={"steps": 1, "delay": 0})
    worker.wait_for(lambda e: e["event"] == "progress" and e["id"] == "long")
    worker.send(cmd="cancel", id="waiting")  # queued: removed without running
    worker.send(cmd="cancel", id="long")
    events = []
    for _ in range(2):
        final, seen = worker.wait_for(lambda e: e["event"] == "cancelled")
        events.append(final["id"])
        assert not any(e.get("id") == "waiting" and e["event"] == "started" for e in seen)
    assert sorted(events) == ["long", "waiting"]
    last_step = max((e["step"] for e in seen if e["event"] == "progress"), default=0)
    assert last_step < 1000
    # the queue goes on after a cancel
    worker.send(cmd="submit", id="next", kind="diagnostics", params={})
    final, _ = worker.wait_for(lambda e: _final(e, "next"))
    assert final["event"] == "done" and final["result"]["torch"].startswith("2.")
    worker.send(cmd="ping")
    pong, _ = worker.wait_for(lambda e: e["event"] == "pong")
    assert pong["running"] is None and pong["queued"] == []


def test_stdout_stays_pure_protocol_when_jobs_print(worker):
    # every line read so far parsed as JSON in the reader thread; library prints went to stderr
    assert worker.raw_lines and all(line.startswith("{") for line in worker.raw_lines)


def test_shutdown_cancels_running_job_and_exits(tmp_path):
    w = RawWorker(tmp_path)
    try:
        assert w.next_event(30)["event"] == "ready"
        w.send(cmd="submit", id="busy", kind="selftest", params={"steps": 10000, "delay": 0.01})
        w.wait_for(lambda e: e["event"] == "started")
        w.send(cmd="shutdown")
        final, seen = w.wait_for(lambda e: e["event"] == "bye")
        assert any(e["event"] == "cancelled" and e["id"] == "busy" for e in seen)
        assert w.proc.wait(10) == 0
    finally:
        w.close()


def test_closing_stdin_stops_the_worker(tmp_path):
    w = RawWorker(tmp_path)
    try:
        assert w.next_event(30)["event"] == "ready"
        w.proc.stdin.close()  # the host died
        assert w.proc.wait(10) == 0
    finally:
        w.close()


def test_real_generation_job_writes_image_result(worker, tmp_path):
    pytest.importorskip("core.texture_gan")
    from core.common.procedural import make_exemplar

    exemplar = tmp_path / "bricks.npy"
    np.save(exemplar, (np.clip(make_exemplar("bricks", 64), 0, 1) * 255).astype(np.uint8))
    model = tmp_path / "gan.safetensors"
    worker.send(cmd="submit", id="train", kind="texture_gan.train",
                params={"exemplars": [str(exemplar)], "out_path": str(model), "steps": 2,
                        "config": TINY_GAN, "checkpoint_every": 1})
    final, seen = worker.wait_for(lambda e: _final(e, "train"), timeout=60)
    assert final["event"] == "done", final
    assert Path(final["result"]["model"]).is_file()
    thumbnail = model.with_suffix(".png")  # for the add-on's model list
    assert thumbnail.is_file() and thumbnail.read_bytes()[:4] == b"\x89PNG"
    worker.send(cmd="submit", id="gen", kind="texture_gan.generate",
                params={"model": str(model), "width": 48, "height": 32, "seed": 3})
    final, _ = worker.wait_for(lambda e: _final(e, "gen"), timeout=60)
    assert final["event"] == "done", final
    image = final["result"]["image"]
    data = np.load(image["path"])
    assert data.shape == (32, 48, 3) and image["colorspace"] == "srgb"
    assert (image["width"], image["height"]) == (48, 32)
    assert 0.0 <= data.min() and data.max() <= 1.0 and data.std() > 0


def test_frames_stylized_with_a_painting_by_optimisation_warm_started(worker, tmp_path, styles_dir):
    from core.common.images import save_image
    from core.common.procedural import make_exemplar

    frames = tmp_path / "frames"
    big = make_exemplar("stones", 64, 1)
    paths = [save_image(frames / f"f_{i}.png", np.ascontiguousarray(big[:32, i * 3: i * 3 + 32])) for i in range(3)]
    out = tmp_path / "styled"
    worker.send(cmd="submit", id="seq-opt", kind="style.stylize_sequence",
                params={"method": "optimize", "style": str(styles_dir / "wave.jpg"), "frames": [str(p) for p in paths],
                        "output_dir": str(out), "steps": 2, "refine_steps": 1, "max_side": 32})
    final, _ = worker.wait_for(lambda e: _final(e, "seq-opt"), timeout=120)
    assert final["event"] == "done", final
    assert sorted(Path(p).name for p in final["result"]["frames"]) == ["f_0.png", "f_1.png", "f_2.png"]
    worker.send(cmd="submit", id="seq-nostyle", kind="style.stylize_sequence",
                params={"method": "optimize", "frames": [str(p) for p in paths], "output_dir": str(tmp_path / "x")})
    final, _ = worker.wait_for(lambda e: _final(e, "seq-nostyle"), timeout=60)
    assert final["event"] == "error" and "style" in final["message"]


# --------------------------------------------------------------------------- hostile and careless input

def test_bad_parameter_is_an_error_event_and_the_queue_goes_on(worker):
    # issue 13.1: this raised before the job's try, killed the runner and froze the queue
    worker.send(cmd="submit", id="badparam", kind="selftest", params={"preview_interval": "x"})
    final, _ = worker.wait_for(lambda e: _final(e, "badparam"))
    assert final["event"] == "error" and final["error_type"] == "ParamError"
    assert "preview_interval" in final["message"]
    for index, bad in enumerate(({"steps": -1}, {"steps": "10"}, {"steps": 10, "stepz": 3}, {"delay": float("inf")},
                                 {"preview": 1}, {"device": "gpu0"}, [1, 2])):
        worker.send(cmd="submit", id=f"bad{index}", kind="selftest", params=bad)
        final, _ = worker.wait_for(lambda e: e.get("id") == f"bad{index}")
        assert final["event"] == "error" and final["error_type"] == "ParamError", (bad, final)
    worker.send(cmd="submit", id="afterbad", kind="selftest", params={"steps": 1, "delay": 0})
    final, _ = worker.wait_for(lambda e: _final(e, "afterbad"))
    assert final["event"] == "done"


def test_every_job_kind_declares_its_parameters():
    from core.worker import COMMON_PARAMS, JOB_KINDS, JOB_PARAMS
    assert set(JOB_PARAMS) == set(JOB_KINDS)
    for kind, schema in JOB_PARAMS.items():
        assert set(COMMON_PARAMS) <= set(schema), kind
        assert all(name.isidentifier() for name in schema), kind


def test_job_ids_cannot_escape_the_work_folder(worker, tmp_path):
    workdir = Path(worker.ready["workdir"])
    outside = tmp_path / "escape"
    for job_id in ("../../x", f"../{outside.name}", str(outside / "abs"), "a/b", "", ".hidden", "x" * 129, 7):
        worker.send(cmd="submit", id=job_id, kind="selftest", params={"steps": 1, "delay": 0})
        event, _ = worker.wait_for(lambda e: e["event"] in ("protocol_error", "queued"))
        assert event["event"] == "protocol_error" and "id" in event["message"], job_id
    assert not outside.exists()
    assert all(p.resolve().parent == workdir.resolve() for p in workdir.iterdir())


def test_duplicate_job_id_is_refused(worker):
    worker.send(cmd="submit", id="twice", kind="selftest", params={"steps": 1, "delay": 0})
    worker.wait_for(lambda e: _final(e, "twice"))
    worker.send(cmd="submit", id="twice", kind="selftest", params={"steps": 1, "delay": 0})
    event, _ = worker.wait_for(lambda e: e.get("id") == "twice")
    assert event["event"] == "protocol_error" and "already used" in event["message"]


@pytest.fixture(scope="module")
def tiny_gan(tmp_path_factory):
    from core.common.procedural import make_exemplar
    from core.texture_gan import TextureGANConfig, train_texture_gan
    path = tmp_path_factory.mktemp("gan") / "tiny.safetensors"
    exemplar = np.clip(make_exemplar("bricks", 64), 0, 1).astype(np.float32)
    return train_texture_gan([exemplar], path, 1, config=TextureGANConfig.from_dict(TINY_GAN), device="cpu")


def test_outputs_stay_inside_allowed_folders_and_never_overwrite(worker, tiny_gan, tmp_path):
    workdir = Path(worker.ready["workdir"])
    outside = tmp_path / "new_folder" / "x.png"
    params = {"model": str(tiny_gan), "width": 16, "height": 16}
    worker.send(cmd="submit", id="out1", kind="texture_gan.generate", params={**params, "output": str(outside)})
    final, _ = worker.wait_for(lambda e: _final(e, "out1"))
    assert final["event"] == "error" and "outside the work folder" in final["message"]
    assert not outside.parent.exists()
    existing = workdir / "keep.png"
    existing.write_bytes(b"precious")
    worker.send(cmd="submit", id="out2", kind="texture_gan.generate", params={**params, "output": str(existing)})
    final, _ = worker.wait_for(lambda e: _final(e, "out2"))
    assert final["event"] == "error" and "exists" in final["message"] and existing.read_bytes() == b"precious"
    worker.send(cmd="submit", id="out3", kind="texture_gan.generate",
                params={**params, "output": str(existing), "overwrite": True})
    final, _ = worker.wait_for(lambda e: _final(e, "out3"), timeout=60)
    assert final["event"] == "done", final
    assert existing.read_bytes()[:4] == b"\x89PNG"


def test_tile_size_is_checked_and_generation_stops_between_tiles(worker, tiny_gan):
    for tile in (0, -8, 1, 63, 10 ** 9, 64.5):
        worker.send(cmd="submit", id=f"tile{tile}", kind="texture_gan.generate",
                    params={"model": str(tiny_gan), "tile_size": tile})
        final, _ = worker.wait_for(lambda e: _final(e, f"tile{tile}"))
        assert final["event"] == "error" and "tile_size" in final["message"], final
    from core.common.jobs import CancelToken, JobCancelled
    from core.texture_gan import load_texture_gan
    model = load_texture_gan(tiny_gan, device="cpu")
    with pytest.raises(ValueError, match="tile size"):
        model.generate(64, 64, tile_size=1)
    token = CancelToken()
    token.cancel()
    tiles_run, run_tile = [], model._run
    model._run = lambda *args: tiles_run.append(1) or run_tile(*args)  # counts tiles, not seconds
    with pytest.raises(JobCancelled):
        model.generate(4096, 4096, tile_size=64, cancel=token)
    assert tiles_run == []  # before the first of 4096 tiles, not after any of them
    model.generate(128, 128, tile_size=64)
    assert len(tiles_run) == 4  # the spy sees every tile of an uncancelled run


def test_training_lane_does_not_block_interactive_jobs_and_events_name_the_device(worker, tmp_path):
    from core.common.procedural import make_exemplar
    exemplar = tmp_path / "ex.npy"
    np.save(exemplar, (np.clip(make_exemplar("wood", 64), 0, 1) * 255).astype(np.uint8))
    worker.send(cmd="submit", id="lane-train", kind="texture_gan.train",
                params={"exemplars": [str(exemplar)], "out_path": str(tmp_path / "m.safetensors"),
                        "steps": 100000, "config": TINY_GAN, "checkpoint_every": 100000})
    started, _ = worker.wait_for(lambda e: e["event"] == "started" and e["id"] == "lane-train", timeout=60)
    assert started["lane"] == "train" and started["device"] == "cpu"
    worker.send(cmd="submit", id="lane-quick", kind="selftest", params={"steps": 2, "delay": 0})
    final, seen = worker.wait_for(lambda e: _final(e, "lane-quick") or _final(e, "lane-train"), timeout=60)
    assert final["id"] == "lane-quick" and final["event"] == "done" and final["device"] == "cpu"
    assert any(e["event"] == "started" and e["id"] == "lane-quick" and e["lane"] == "interactive" for e in seen)
    worker.send(cmd="ping")
    pong, _ = worker.wait_for(lambda e: e["event"] == "pong")
    assert pong["running"] == "lane-train" and pong["running_jobs"] == ["lane-train"]
    worker.send(cmd="cancel", id="lane-train")
    final, _ = worker.wait_for(lambda e: _final(e, "lane-train"), timeout=120)
    assert final["event"] == "cancelled" and Path(final["result"]["model"]).is_file()


def test_training_into_a_folder_it_cannot_write_fails_before_any_step(worker, tmp_path):
    target = _unwritable_folder(tmp_path) / "m.safetensors"
    worker.send(cmd="submit", id="ro-train", kind="texture_gan.train",
                params={"exemplars": [str(tmp_path / "missing.png")], "out_path": str(target), "steps": 5,
                        "config": TINY_GAN})
    final, seen = worker.wait_for(lambda e: _final(e, "ro-train"), timeout=60)
    assert final["event"] == "error" and "cannot write" in final["message"] and str(target.parent) in final["message"]
    assert not any(e["event"] == "progress" and e["id"] == "ro-train" for e in seen)


def _unwritable_folder(tmp_path: Path) -> Path:
    """A folder this process cannot write into, even as root (which ignores permission bits)."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    if not os.access(folder, os.W_OK):
        return folder
    for candidate in (Path("/sys/fs"), Path("/proc/self")):
        try:
            (candidate / ".probe").touch()
        except OSError:
            return candidate
    pytest.skip("no folder is read-only for this user")


def test_crafted_requests_never_stop_the_worker(worker):
    lines = ["[]", "null", "1e999", '{"cmd": null}', '{"cmd": "submit"}', '{"cmd": "cancel", "id": {"a": 1}}',
             '{"cmd": "submit", "id": "k1", "kind": ["selftest"]}', "[" * 100000 + "]" * 100000,
             '{"cmd": "submit", "id": "k2", "kind": "selftest", "params": {"steps": 1e400}}']
    for line in lines:
        worker.proc.stdin.write(line + "\n")
    worker.proc.stdin.flush()
    worker.send(cmd="submit", id="alive", kind="selftest", params={"steps": 1, "delay": 0})
    final, _ = worker.wait_for(lambda e: _final(e, "alive"))
    assert final["event"] == "done" and worker.proc.poll() is None


def test_a_failing_runner_is_restarted_and_says_so(tmp_path):
    # In-process: the event stream fails once after a job (a full pipe), which the old runner did not survive.
    import io

    from core.worker import Worker, _Channel

    class FlakyStream(io.StringIO):
        failed = False

        def write(self, text):
            if '"event": "done"' in text and not FlakyStream.failed:
                FlakyStream.failed = True
                raise OSError("stream hiccup")
            return super().write(text)

    stream = FlakyStream()
    w = Worker(_Channel(stream), tmp_path)
    w.start()
    for job_id in ("first", "second"):
        w.handle(json.dumps({"cmd": "submit", "id": job_id, "kind": "selftest", "params": {"steps": 1, "delay": 0}}))
    deadline = time.monotonic() + 30
    while '{"event": "done", "id": "second"' not in stream.getvalue() and time.monotonic() < deadline:
        time.sleep(0.05)
    w.shutdown(10)
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert any(e["event"] == "runner_restarted" and e["lane"] == "interactive" for e in events)
    assert any(e["event"] == "done" and e["id"] == "second" for e in events) and w.restarts == 1


def test_family_jobs_are_found_in_their_packages_without_importing_the_families():
    # A fresh interpreter: importing the worker (as the add-on does inside Blender, which has no
    # PyTorch) finds every family's jobs.py but imports neither PyTorch nor a family's models.
    code = ("import json, sys; from core.worker import JOB_KINDS; "
            "print(json.dumps({k: f.__module__ for k, f in JOB_KINDS.items()})); "
            "print(json.dumps(sorted(m for m in sys.modules if m == 'torch' or m.count('.') == 1 and m.startswith('core.'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    kinds_line, modules_line = out.stdout.strip().splitlines()
    kinds = json.loads(kinds_line)
    assert kinds["diagnostics"] == kinds["selftest"] == "core.worker.builtin_jobs"
    families = {k: m for k, m in kinds.items() if k not in ("diagnostics", "selftest")}
    assert families and all(m.startswith("core.") and m.endswith(".jobs") and not m.startswith("core.worker")
                            for m in families.values()), families
    assert {"core.texture_gan.jobs", "core.style.jobs", "core.texture_vae.jobs"} <= set(families.values())
    # the family packages themselves (core.texture_gan, ...) and torch stay unimported
    assert json.loads(modules_line) == ["core.common", "core.worker"], modules_line


def test_distilled_training_job_and_material_generation(worker, tmp_path):
    """*Train From Image* with the materials recipe: a one-material model the generate job drives by name."""
    from core.common.procedural import make_exemplar

    exemplar = tmp_path / "wall.npy"
    np.save(exemplar, (np.clip(make_exemplar("bricks", 64), 0, 1) * 255).astype(np.uint8))
    model = tmp_path / "wall_gan.safetensors"
    tiny = {"g_channels": [16, 8, 4], "g_convs": [1, 1, 1], "d_channels": [8, 16], "local_dim": 4, "global_dim": 4,
            "periodic_dim": 2, "crop_size": 32, "batch_size": 2, "stats_loss_weight": 0.0, "adversarial_from": 1}
    worker.send(cmd="submit", id="distil", kind="texture_gan.train",
                params={"exemplars": [str(exemplar)], "out_path": str(model), "steps": 2, "recipe": "distilled",
                        "config": tiny})
    final, _ = worker.wait_for(lambda e: _final(e, "distil"), timeout=120)
    assert final["event"] == "done", final
    worker.send(cmd="submit", id="gen-mat", kind="texture_gan.generate",
                params={"model": str(model), "width": 40, "height": 24, "material": "wall"})
    final, _ = worker.wait_for(lambda e: _final(e, "gen-mat"), timeout=60)
    assert final["event"] == "done", final
    assert final["result"]["materials"] == ["wall"]
    assert np.load(final["result"]["image"]["path"]).shape == (24, 40, 3)
    worker.send(cmd="submit", id="gen-bad", kind="texture_gan.generate",
                params={"model": str(model), "width": 40, "height": 24, "material": "marble"})
    final, _ = worker.wait_for(lambda e: _final(e, "gen-bad"), timeout=60)
    assert final["event"] == "error" and "marble" in final["message"]


def test_variation_model_training_job_fine_tunes_the_bundled_pair_by_default(worker, tmp_path):
    """*Train From Image* for a Variation Model, as the panel sends it (no recipe: the fine-tune of the bundled
    materials GAN and VAE, core/texture_vae/from_image.py): a one-material GAN-prior VAE named after the file, its
    progress through both phases; a plain VAE's config fields are refused before a step, naming them."""
    from core.common.images import save_image
    from core.common.procedural import make_exemplar

    exemplar = tmp_path / "my_stones.png"
    save_image(exemplar, make_exemplar("stones", 96, seed=1))
    model = tmp_path / "stones_var.safetensors"
    worker.send(cmd="submit", id="var-train", kind="texture_vae.train",
                params={"exemplars": [str(exemplar)], "out_path": str(model), "steps": 2, "checkpoint_every": 1})
    final, seen = worker.wait_for(lambda e: _final(e, "var-train"), timeout=300)
    assert final["event"] == "done", final
    messages = " ".join(e.get("message", "") for e in seen if e["event"] == "progress")
    assert "fine-tuning the generator" in messages and "training the encoder" in messages
    from core.common.checkpoints import read_checkpoint_config
    config = read_checkpoint_config(model)
    assert config["config"]["decoder"] == "materials_gan" and config["config"]["materials"] == ["my_stones"]
    assert model.with_suffix(".png").is_file()  # the model list's thumbnail
    worker.send(cmd="submit", id="var-plain-fields", kind="texture_vae.train",
                params={"exemplars": [str(exemplar)], "out_path": str(tmp_path / "x.safetensors"), "steps": 2,
                        "config": {"channel_mult": [1, 2]}})
    final, _ = worker.wait_for(lambda e: _final(e, "var-plain-fields"), timeout=60)
    assert final["event"] == "error" and "channel_mult" in final["message"]
    assert not (tmp_path / "x.generator.safetensors").exists()


def test_stylize_job_paints_one_style_or_a_mix_of_the_multistyle_model(worker, tmp_path):
    from core.style.multistyle import MultiStyleConfig, MultiStyleNet, MultiStyleModel
    from core.common.checkpoints import save_checkpoint

    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = MultiStyleNet(MultiStyleConfig(4, 1, 2))
    with torch.no_grad():  # two styles that differ
        for norm in net.norms():
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.3, 0.3)
    model_path = tmp_path / "multi.safetensors"
    save_checkpoint(model_path, net.state_dict(), {"name": "multi", "transformer": net.multi.as_dict(),
                                                   "styles": [{"name": "a"}, {"name": "b"}]}, "style_multi")
    from core.common.images import load_rgb, save_image

    save_image(tmp_path / "frame.png", np.random.default_rng(0).random((24, 32, 3)).astype(np.float32))
    frame = load_rgb(tmp_path / "frame.png")  # an sRGB file, as the add-on sends renders
    direct = MultiStyleModel.load(model_path, "cpu")
    for job_id, params, style in (("one", {"model": f"{model_path}#b"}, "b"),
                                  ("mix", {"model": str(model_path), "style_weights": "a=1,b=3"}, {"a": 1, "b": 3})):
        worker.send(cmd="submit", id=job_id, kind="style.stylize",
                    params={**params, "image": str(tmp_path / "frame.png")})
        final, _ = worker.wait_for(lambda e: _final(e, job_id), timeout=120)
        assert final["event"] == "done", final
        np.testing.assert_allclose(np.load(final["result"]["image"]["path"]), direct.stylize(frame, style),
                                   atol=1e-5)
