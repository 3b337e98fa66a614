"""Property-based fuzzing (hypothesis) of the worker protocol and the image loader.

The regular suite runs a few dozen examples of each; ``python build.py fuzz --examples N``
runs N and prints the figures: messages tried, worker restarts, files written outside the
work folder and tracebacks on stdout (every target is 0).

The worker runs as a real subprocess in an empty folder of its own; every path the fuzz
sends points into a sandbox folder, so any file a message manages to write outside the
work folder is found and counted.
"""

from __future__ import annotations

import io
import itertools
from collections import Counter
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.common import images as im
from core.worker import JOB_KINDS, JOB_PARAMS

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("NEURAL_FUZZ_EXAMPLES", "30"))
FUZZ_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 100, database=None,
                         suppress_health_check=list(HealthCheck))
# Exceptions that only a bug raises; a job reporting one of these means validation let bad input through.
BUG_TYPES = {"TypeError", "AttributeError", "KeyError", "IndexError", "NameError", "UnboundLocalError",
             "AssertionError", "ZeroDivisionError", "RecursionError", "SystemExit", "OverflowError"}

SANDBOX = Path(tempfile.mkdtemp(prefix="neural_fuzz_"))
WORKDIR, CWD, OUTSIDE = SANDBOX / "work", SANDBOX / "cwd", SANDBOX / "outside"
for _folder in (WORKDIR, CWD, OUTSIDE):
    _folder.mkdir()
JUNK_PNG = OUTSIDE / "junk.png"
JUNK_PNG.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
JUNK_MODEL = OUTSIDE / "junk.safetensors"
JUNK_MODEL.write_bytes((64).to_bytes(8, "little") + b"{" * 64)

FIGURES = {"messages tried": 0, "worker restarts": 0, "runner restarts": 0,
           "files written outside the work folder": 0, "tracebacks on stdout": 0, "bug-type job errors": 0,
           "images tried": 0, "image loader crashes": 0}
_BUGS: list[str] = []
OUTCOMES: Counter = Counter()  # how the fuzzed requests ended: how deep the fuzz reached


def _files_outside() -> set[Path]:
    return {p for p in SANDBOX.rglob("*") if p.is_file() and WORKDIR not in p.parents}


_BEFORE = _files_outside()


class FuzzWorker:
    """The worker as a subprocess; stdout lines that are not JSON are counted, never parsed around."""

    def __init__(self) -> None:
        self.events: "queue.Queue[dict]" = queue.Queue()
        self.start()

    def start(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT), NEURAL_TEXTURES_DEVICE="cpu", OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen([sys.executable, "-m", "core.worker", "--workdir", str(WORKDIR), "--threads", "1"],
                                     cwd=str(CWD), env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        assert self.next_event(60)["event"] == "ready"

    def _read(self, proc) -> None:
        for raw in proc.stdout:
            try:
                event = json.loads(raw)
                assert isinstance(event, dict) and "event" in event
            except (ValueError, AssertionError):
                FIGURES["tracebacks on stdout"] += 1
                continue
            self.events.put(event)

    def next_event(self, timeout: float) -> dict:
        return self.events.get(timeout=timeout)

    def send_lines(self, lines: list[bytes]) -> None:
        if self.proc.poll() is not None:  # the worker died: count it and carry on with a fresh one
            FIGURES["worker restarts"] += 1
            self.start()
        try:
            self.proc.stdin.write(b"".join(line + b"\n" for line in lines))
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # noticed (and counted) on the next send
        FIGURES["messages tried"] += len(lines)

    def wait_for_jobs(self, ids: set[str], seconds: float) -> set[str]:
        """Let the submitted jobs run for up to ``seconds``; the ids still unfinished."""
        deadline = time.monotonic() + seconds
        while ids and time.monotonic() < deadline:
            try:
                event = self.next_event(max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            self._note(event)
            if event["event"] in ("done", "error", "cancelled", "protocol_error"):
                ids.discard(event.get("id"))
        return ids

    def sync(self) -> None:
        """Send a ping and take every event up to its pong (the worker still answers)."""
        self.send_lines([b'{"cmd": "ping"}'])
        deadline = time.monotonic() + 30
        while True:
            event = self.next_event(max(0.1, deadline - time.monotonic()))
            self._note(event)
            if event["event"] == "pong":
                return

    def _note(self, event: dict) -> None:
        if event["event"] in ("done", "error", "cancelled", "protocol_error"):
            OUTCOMES[event["event"] + (f" {event['error_type']}" if event["event"] == "error" else "")] += 1
        if event["event"] == "runner_restarted":
            FIGURES["runner restarts"] += 1
        if event["event"] == "error" and event.get("error_type") in BUG_TYPES:
            FIGURES["bug-type job errors"] += 1
            _BUGS.append(f"{event.get('error_type')}: {event.get('message')}")

    def close(self) -> None:
        try:
            self.send_lines([b'{"cmd": "shutdown"}'])
            self.proc.wait(60)
        except (subprocess.TimeoutExpired, OSError):
            self.proc.kill()
        while not self.events.empty():
            self._note(self.events.get())


@pytest.fixture(scope="module")
def fuzz_worker():
    worker = FuzzWorker()
    yield worker
    worker.close()
    FIGURES["files written outside the work folder"] = len(_files_outside() - _BEFORE)
    if os.environ.get("NEURAL_FUZZ_REPORT"):
        print("\nfuzz figures:", json.dumps(FIGURES, indent=1), "request outcomes:",
              json.dumps(dict(OUTCOMES.most_common()), indent=1), *_BUGS[:20], sep="\n")


# --------------------------------------------------------------------------- strategies

_fresh_ids = (f"fz{n}" for n in itertools.count())
PARAM_NAMES = sorted({name for schema in JOB_PARAMS.values() for name in schema})
PATHS = st.sampled_from(["../escape.png", "../../escape.npy", str(OUTSIDE / "x.png"), str(OUTSIDE / "new" / "y.exr"),
                         "x.png", "", "\x00", "/", "a" * 5000, str(JUNK_PNG), str(JUNK_MODEL), str(OUTSIDE),
                         str(WORKDIR / ".." / "outside" / "z.npy"), str(OUTSIDE / "m.safetensors")])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70), st.floats(), st.text(max_size=16),
                    PATHS, st.sampled_from([0, 1, -1, 63, 64, 2 ** 63, 16385, 0.5, 1e-300, "auto", "cpu", "cuda:0"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                          max_size=4), max_leaves=8)
PARAMS = st.one_of(st.dictionaries(st.sampled_from(PARAM_NAMES) | st.text(max_size=10), VALUES, max_size=7), VALUES)
IDS = st.one_of(st.builds(lambda: next(_fresh_ids)), st.text(max_size=12), st.integers(),
                st.sampled_from(["../../x", "/abs/id", str(OUTSIDE / "id"), "a/b", ".", "..", "-x", "fz0", None]))
KINDS = st.sampled_from(sorted(JOB_KINDS)) | st.text(max_size=12)


def _schema_values(spec) -> st.SearchStrategy:
    """Values of the declared type near and beyond the declared limits: most pass validation, so
    the job itself runs on them (against missing, junk or outside paths)."""
    if spec.type in ("int", "float"):
        low = -10 if spec.low is None else spec.low
        high = 10 ** 6 if spec.high is None else spec.high
        edges = [low, high, low - 1, high + 1, spec.default]
        inside = st.integers(int(low), int(high)) if spec.type == "int" else st.floats(low, high)
        return st.one_of(inside, inside, inside, st.sampled_from(edges))  # mostly valid
    if spec.type == "bool":
        return st.booleans()
    if spec.type == "choice":
        return st.sampled_from([*spec.choices, "other"])
    if spec.type in ("paths", "floats"):
        return st.lists(PATHS if spec.type == "paths" else st.floats(0, 2), max_size=4)
    if spec.type == "config":
        return st.dictionaries(st.sampled_from(["lr", "g_channels", "base_channels", "res_blocks", "crop_size",
                                                "batch_size", "bogus"]), SCALARS, max_size=3)
    if spec.type == "device":
        return st.sampled_from(["auto", "cpu", "cpu", "cuda:7", "mps", "tpu"])
    return PATHS | st.text(max_size=8)


SCHEMA_REQUESTS = st.sampled_from(sorted(JOB_PARAMS)).flatmap(lambda kind: st.fixed_dictionaries({
    "cmd": st.just("submit"), "id": st.builds(lambda: next(_fresh_ids)), "kind": st.just(kind),
    "params": st.fixed_dictionaries(
        {name: _schema_values(spec) for name, spec in JOB_PARAMS[kind].items() if spec.required},
        optional={name: _schema_values(spec) for name, spec in JOB_PARAMS[kind].items() if not spec.required})}))
REQUESTS = SCHEMA_REQUESTS | st.fixed_dictionaries(
    {"cmd": st.sampled_from(["submit"] * 6 + ["cancel", "ping", "bogus"]) | SCALARS},
    optional={"id": IDS, "kind": KINDS, "params": PARAMS})
RAW_LINES = st.one_of(st.binary(max_size=200).map(lambda b: b.replace(b"\n", b" ")),
                      st.text(max_size=200).map(lambda t: t.replace("\n", " ").encode("utf-8", "surrogatepass")),
                      VALUES.map(lambda v: json.dumps(v).encode()))


def _encode(request: dict) -> bytes:
    return json.dumps(request, allow_nan=True).encode()


# --------------------------------------------------------------------------- the protocol

@FUZZ_SETTINGS
@given(requests=st.lists(REQUESTS, min_size=1, max_size=5), raw=st.lists(RAW_LINES, max_size=2))
def test_protocol_fuzz(fuzz_worker, requests, raw):
    fuzz_worker.send_lines([_encode(r) for r in requests] + raw)
    submitted = {r["id"] for r in requests if r.get("cmd") == "submit" and isinstance(r.get("id"), str)}
    # the jobs run for a moment; then whatever is left is cancelled, so none runs on behind the next example
    unfinished = fuzz_worker.wait_for_jobs(set(submitted), 2.0)
    fuzz_worker.send_lines([_encode({"cmd": "cancel", "id": job_id}) for job_id in sorted(unfinished)])
    fuzz_worker.sync()
    assert fuzz_worker.proc.poll() is None, "the worker died"
    assert FIGURES["worker restarts"] == 0 and FIGURES["runner restarts"] == 0
    assert FIGURES["tracebacks on stdout"] == 0
    assert not _BUGS, _BUGS[-1]
    assert not (_files_outside() - _BEFORE), sorted(map(str, _files_outside() - _BEFORE))


# --------------------------------------------------------------------------- the image loader

def _valid_images() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    rgb = rng.random((12, 10, 3)).astype(np.float32)
    rgba = rng.random((12, 10, 4)).astype(np.float32)
    files = {".png": im.encode_png(rgb, 8), "16.png": im.encode_png(rgba, 16), "g16.png": im.encode_png(rgb[..., 0], 16)}
    for suffix, fmt in ((".jpg", "JPEG"), (".tif", "TIFF"), (".bmp", "BMP"), (".webp", "WEBP")):
        from PIL import Image
        buffer = io.BytesIO()
        Image.fromarray((rgb * 255).astype(np.uint8)).save(buffer, format=fmt)
        files[suffix] = buffer.getvalue()
    for dtype in (np.uint8, np.uint16, np.float32, np.float16):
        buffer = io.BytesIO()
        np.save(buffer, (rgb * (255 if dtype == np.uint8 else 1)).astype(dtype))
        files[f"{np.dtype(dtype).name}.npy"] = buffer.getvalue()
    try:
        folder = Path(tempfile.mkdtemp(prefix="neural_fuzz_exr_"))
        im.save_image(folder / "x.exr", im.image_from_array(rgb, "linear"))
        files[".exr"] = (folder / "x.exr").read_bytes()
    except im.ImageError:
        pass  # OpenEXR not installed
    return files


VALID_IMAGES = _valid_images()
IMAGE_DIR = Path(tempfile.mkdtemp(prefix="neural_fuzz_images_"))


@st.composite
def damaged_images(draw) -> tuple[str, bytes]:
    name = draw(st.sampled_from(sorted(VALID_IMAGES)))
    data = bytearray(VALID_IMAGES[name])
    for _ in range(draw(st.integers(0, 4))):
        operation = draw(st.sampled_from(["flip", "truncate", "poke", "extend"]))
        if operation == "truncate":
            data = data[: draw(st.integers(0, len(data)))]
        elif operation == "extend":
            data += draw(st.binary(max_size=64))
        elif data:
            at = draw(st.integers(0, len(data) - 1))
            # header bytes (sizes, bit depths, shapes) are where crafted files do harm: poke there often
            if operation == "poke":
                at = draw(st.integers(0, min(len(data) - 1, 40)))
            data[at] = draw(st.integers(0, 255))
    suffix = "." + name.rsplit(".", 1)[-1]
    suffix = draw(st.sampled_from([suffix] * 4 + [".png", ".npy", ".exr", ".jpg"]))
    return suffix, bytes(data)


@FUZZ_SETTINGS
@given(image=damaged_images())
def test_image_loader_fuzz(image):
    suffix, data = image
    path = IMAGE_DIR / f"fuzz{suffix}"
    path.write_bytes(data)
    FIGURES["images tried"] += 1
    try:
        loaded = im.load_image(path)
    except im.ImageError:
        return
    except Exception as exc:  # noqa: BLE001 - anything else is a loader bug
        FIGURES["image loader crashes"] += 1
        raise AssertionError(f"{type(exc).__name__} instead of ImageError: {exc}") from exc
    assert loaded.rgb.dtype == np.float32 and loaded.rgb.ndim == 3 and loaded.rgb.shape[2] == 3
    assert np.isfinite(loaded.rgb).all()
    assert loaded.alpha is None or loaded.alpha.shape == loaded.rgb.shape[:2]
