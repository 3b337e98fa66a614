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
