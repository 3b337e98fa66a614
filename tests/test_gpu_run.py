"""`python build.py gpu-run --rehearse`: the GPU run's whole path on the CPU, so it never rots between slots.

The rehearsal runs every part (probe, bench rows, suite, each tools/zoo training, evaluations) with tiny
profiles, plus canaries: a part that fails, one that overruns its limit, one that makes more than the archive's
cap. A fake zoo module (written here, found through $NEURAL_TEXTURES_ZOO_PATH) exercises training, evaluation,
keeping and unpacking even before the real modules exist; the real ones run beside it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import pytest

from tools.gpu_run import ROWS, pack, report
from tools.gpu_run.evaluate import decide
from tools.gpu_run.runner import Part, read_jsonl, run_rows

ROOT = Path(__file__).resolve().parents[1]

FAKE_ZOO_MODULE = textwrap.dedent('''
    """A stand-in training for the rehearsal test: counts steps for ``minutes``; fewer steps score worse."""
    import json, time
    from pathlib import Path

    PROFILES = ("cpu", "gpu", "tiny")

    def train(minutes, device="cpu", profile="cpu", out_dir=None, warm_start=None):
        path = Path(out_dir) / "rehearsal_fake" / "model.json"
        state = json.loads(path.read_text()) if path.is_file() else {"steps": 0}
        end = time.monotonic() + minutes * 60
        while time.monotonic() < end:
            state["steps"] += 1
            time.sleep(0.01)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(state))
        (path.parent / "model.train.safetensors").write_text(json.dumps(state))  # its resume state
        return {"name": "rehearsal_fake", "label": "Rehearsal fake", "steps": state["steps"], "minutes": minutes,
                "file": str(path.resolve())}  # absolute, as the real modules write it on the GPU machine

    def evaluate(model_dir, device="cpu", profile="cpu"):
        path = Path(model_dir) / "rehearsal_fake" / "model.json"
        if not path.is_file():
            raise FileNotFoundError(path)
        return {"score": 1.0 / (1 + json.loads(path.read_text())["steps"])}
''')


# A module without an evaluate() hook: trained and packed, never kept unless `--unpack --keep` names it.
NO_HOOK_MODULE = textwrap.dedent('''
    import json
    from pathlib import Path

    def train(minutes, device="cpu", profile="cpu", out_dir=None, warm_start=None):
        path = Path(out_dir) / "rehearsal_nohook" / "model.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"steps": 1}))
        return {"name": "rehearsal_nohook", "steps": 1}
''')


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu_run")
    (tmp / "zoo").mkdir()
    (tmp / "zoo" / "rehearsal_fake.py").write_text(FAKE_ZOO_MODULE)
    (tmp / "zoo" / "rehearsal_nohook.py").write_text(NO_HOOK_MODULE)
    env = dict(os.environ, PYTHONPATH=str(ROOT), NEURAL_TEXTURES_ZOO_PATH=str(tmp / "zoo"))
    cmd = [sys.executable, str(ROOT / "build.py"), "--system", "gpu-run", "--rehearse", "--out", str(tmp / "out"),
           "--work", str(tmp / "work")]
    try:  # the rehearsal's own budget is 600 s (about a minute idle); this bound turns a hang into a clear failure
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"gpu-run --rehearse did not finish within 1200 s: {str(exc.stdout)[-3000:]}")
    archive = tmp / "out" / "gpu_run.tar.gz"
    assert archive.is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    with tarfile.open(archive) as tar:
        summary = json.load(tar.extractfile("summary.json"))
    return proc, archive, summary, tmp


def _zoo_names() -> list[str]:
    from tools import zoo

    return zoo.names()


def test_rehearsal_runs_every_part_and_the_canaries_end_as_expected(rehearsal):
    proc, archive, summary, _ = rehearsal
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    parts = {p["name"]: p for p in summary["parts"]}
    for name in ("probe", "bench", "suite"):
        assert parts[name]["status"] == "ok", parts[name]
    assert summary["machine"]["perception"] in ("vgg19_imagenet", "random_vgg19")
    assert not summary["machine"]["errors"], summary["machine"]["errors"]  # every core module imports
    # Isolation: the failing part failed, the overrunning one was killed at its 2 s limit (it sleeps 600 s),
    # the oversized one was left out of the archive; every other part above still finished.
    assert parts["canary_fail"]["status"] == "failed"
    assert parts["canary_overrun"]["status"] == "killed" and parts["canary_overrun"]["seconds"] < 60
    assert any(d.startswith("parts/canary_oversize:") for d in summary["dropped"]), summary["dropped"]
    assert archive.stat().st_size <= pack.CAP_BYTES
    # Every bench row was measured, with a finite value; the guard tests on the meta device ran in the suite.
    rows = {r["row"]: r for r in summary["bench"]}
    assert set(rows) == set(ROWS)
    assert all(r["status"] == "ok" and math.isfinite(r["value"]) for r in rows.values()), rows
    assert any(r.get("profile") for r in rows.values())  # a missed target is profiled (tiny CPU rows miss)
    assert summary["suite"]["complete"] and summary["suite"]["counts"].get("passed", 0) >= 3, summary["suite"]
    assert not summary["suite"]["failures"]
    # Every zoo training ran and was evaluated. The real modules' tiny runs may be cut at their limit on a loaded
    # machine (that is the limit working, and speed is no test's business), but none may fail: a module that no
    # longer imports, or whose train() or evaluate() raises, has rotted.
    assert parts["train_rehearsal_fake"]["status"] == "ok" and parts["eval_rehearsal_fake"]["status"] == "ok"
    for name in _zoo_names():
        assert parts[f"train_{name}"]["status"] in ("ok", "killed"), parts[f"train_{name}"]
        if summary["models"][name]["reason"] != "training left no checkpoint":
            assert parts[f"eval_{name}"]["status"] in ("ok", "killed"), parts[f"eval_{name}"]
    fake = summary["models"]["rehearsal_fake"]
    assert fake["kept"] and fake["steps"] > 0 and fake["gpu_quality"]["score"] < 1.0, fake
    nohook = summary["models"]["rehearsal_nohook"]
    assert not nohook["kept"] and "no evaluate() hook" in nohook["reason"], nohook
    assert "gpu-run (tiny)" in proc.stdout and "dropped: parts/canary_oversize" in proc.stdout  # the summary


def test_unpack_puts_the_kept_models_manifest_entries_and_figures_in_place(rehearsal, tmp_path):
    _, archive, summary, _ = rehearsal
    root = tmp_path / "repo"
    (root / "models").mkdir(parents=True)
    shutil.copy(ROOT / "models" / "manifest.json", root / "models" / "manifest.json")
    before = json.loads((root / "models" / "manifest.json").read_text())["models"]
    proc = subprocess.run([sys.executable, str(ROOT / "build.py"), "--system", "gpu-run", "--unpack", str(archive),
                           "--root", str(root)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    installed = json.loads((root / "models" / "rehearsal_fake" / "model.json").read_text())
    assert installed["steps"] == summary["models"]["rehearsal_fake"]["steps"]
    # with its resume state, so a CPU session continues the kept model instead of the old CPU state
    assert json.loads((root / "models" / "rehearsal_fake" / "model.train.safetensors").read_text()) == installed
    written = json.loads((root / "models" / "manifest.json").read_text())
    assert written["models"] == before  # the bundled models change only through their ship tools
    manifest = {m["name"]: m for m in written["training"]}  # the trainings' list: a GPU run continues one
    assert manifest["rehearsal_fake"]["file"] == "rehearsal_fake/model.json"  # under models/, not the GPU's path
    gpu = manifest["rehearsal_fake"]["gpu_run"]
    assert gpu["card"] == summary["machine"]["device_name"] and gpu["steps"] == installed["steps"]
    assert gpu["minutes"] > 0 and gpu["quality"]["score"] < 1.0 and "first one" in gpu["decision"]
    assert not (root / "models" / "rehearsal_nohook").exists()  # not kept: not installed
    assert "gpu_run" not in manifest.get("rehearsal_nohook", {})
    again = subprocess.run([sys.executable, str(ROOT / "build.py"), "--system", "gpu-run", "--unpack", str(archive),
                            "--keep", "rehearsal_nohook", "--root", str(root)], cwd=ROOT, capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert json.loads((root / "models" / "rehearsal_nohook" / "model.json").read_text()) == {"steps": 1}
    manifest = {m["name"]: m for m in json.loads((root / "models" / "manifest.json").read_text())["training"]}
    assert manifest["rehearsal_nohook"]["gpu_run"]["decision"].startswith("kept by hand")
    figures = (root / "docs" / "gpu_bench.md").read_text()
    for row in summary["bench"]:
        assert row["name"] in figures
    assert "| rehearsal_fake | ok |" in figures


def _report_and_noise(*specs: tuple[str, int, str, int]) -> tuple[list[pack.Group], dict[str, bytes]]:
    """A report group and one group of incompressible bytes per (group, rank, file, MiB); the bytes by file stem."""
    noise = {file: os.urandom(mib << 20) for _, _, file, mib in specs}
    groups = [pack.Group("report", 0, {"summary.txt": b"figures " * 1000})]
    groups += [pack.Group(group, rank, {f"{group}/{'files/' if group.startswith('models') else ''}{file}": noise[file]})
               for group, rank, file, _ in specs]
    return groups, {file.split(".")[0]: data for file, data in noise.items()}


def test_archive_leaves_out_a_group_past_the_cap_and_stays_under_it(tmp_path):
    groups, noise = _report_and_noise(("models/kept", 1, "a.bin", 3), ("models/other", 2, "b.bin", 3),
                                      ("parts/small", 3, "c.bin", 1))
    cap = 5 << 20
    archive = tmp_path / "out.tar.gz"
    summary = pack.write_archive(archive, groups, {"profile": "test"}, cap=cap, continuations=0)
    assert archive.stat().st_size <= cap
    assert summary["archive_groups"] == ["report", "models/kept", "parts/small"]  # lower rank first, then what fits
    assert len(summary["dropped"]) == 1 and summary["dropped"][0].startswith("models/other:")
    extracted = pack.extract(archive, tmp_path / "x")
    assert extracted["dropped"] == summary["dropped"]
    assert (tmp_path / "x" / "models" / "kept" / "files" / "a.bin").read_bytes() == noise["a"]
    assert not (tmp_path / "x" / "models" / "other").exists()


def test_a_group_past_the_first_archives_room_goes_into_a_continuation_and_unpacks_with_it(tmp_path):
    """The first GPU run dropped a kept model (6.5 MiB) because two others had filled the 16 MiB: the device
    tool brings back 8 files, so what does not fit the first archive goes into the next one beside it."""
    groups, noise = _report_and_noise(("models/a", 1, "a.bin", 3), ("models/b", 1, "b.bin", 3),
                                      ("parts/huge", 3, "c.bin", 6))
    cap = 5 << 20
    archive = tmp_path / "gpu_run.tar.gz"
    summary = pack.write_archive(archive, groups, {"profile": "test"}, cap=cap, continuations=1)
    assert summary["archive_files"] == {"report": "gpu_run.tar.gz", "models/a": "gpu_run.tar.gz",
                                        "models/b": "gpu_run.1.tar.gz"}
    assert [d.split(":")[0] for d in summary["dropped"]] == ["parts/huge"]  # fits neither: dropped
    assert all(p.stat().st_size <= cap for p in (archive, tmp_path / "gpu_run.1.tar.gz"))
    extracted = pack.extract(archive, tmp_path / "x")
    assert extracted["archive_files"] == summary["archive_files"]
    for name in "ab":
        assert (tmp_path / "x" / "models" / name / "files" / f"{name}.bin").read_bytes() == noise[name]
    # A later pack that needs no continuation removes the stale one, so an unpack never mixes two packs.
    pack.write_archive(archive, groups[:2], {"profile": "test"}, cap=cap, continuations=1)
    assert not (tmp_path / "gpu_run.1.tar.gz").exists()


def test_a_bench_row_that_hangs_is_killed_and_the_rows_after_it_still_run(tmp_path):
    # A stand-in for benchmarks/gpu_rows.py: row "hang" never ends, row "boom" raises inside the process.
    script = tmp_path / "rows.py"
    script.write_text(textwrap.dedent('''
        import json, sys, time
        out, rows = sys.argv[1], sys.argv[2].split(",")
        for row in rows:
            with open(out, "a") as f:
                f.write(json.dumps({"row": row, "status": "started", "time": time.time()}) + "\\n")
            if row == "hang":
                time.sleep(600)
            if row == "boom":
                raise SystemExit(3)
            with open(out, "a") as f:
                f.write(json.dumps({"row": row, "status": "ok", "value": 1.0}) + "\\n")
            if row == "slowprofile":  # a missed target's profile that never ends: the figure above must stay
                with open(out, "a") as f:
                    f.write(json.dumps({"row": row, "status": "started", "phase": "profile", "time": time.time()}) + "\\n")
                time.sleep(600)
    '''))
    jsonl = tmp_path / "rows.jsonl"
    ended = []

    def make(rows):
        return Part("rows", "bench", [sys.executable, str(script), str(jsonl), ",".join(rows)], 0)

    start = time.monotonic()
    names = ["a", "hang", "b", "boom", "slowprofile", "c"]
    run_rows(names, {r: 2.0 for r in names}, make, jsonl, tmp_path / "logs", time.monotonic() + 120, ended.append)
    results = {e["row"]: e["status"] for e in read_jsonl(jsonl) if e["status"] != "started"}
    assert results == {"a": "ok", "hang": "killed", "b": "ok", "boom": "failed", "slowprofile": "ok", "c": "ok"}
    assert [p.status for p in ended] == ["killed", "failed", "killed", "ok"]
    assert time.monotonic() - start < 100  # the hang was cut at its limit, not waited out


def test_a_new_model_is_kept_only_where_it_beats_the_cpu_trained_one():
    assert decide({"score": 0.2}, {"score": 0.3})[0]
    assert not decide({"score": 0.3}, {"score": 0.2})[0]
    assert not decide({"score": 0.3}, {"score": 0.3})[0]
    assert not decide({"score": float("nan")}, {"score": 0.3})[0]
    assert not decide({}, None)[0]
    assert decide({"score": 0.5}, None)[0]  # nothing CPU-trained to beat (e.g. no AdaIN decoder yet)


def test_suite_counts_from_a_log_cut_short_and_from_xdist_output(tmp_path):
    log = tmp_path / "suite.log"
    log.write_text("tests/core/test_a.py::test_one PASSED [ 10%]\ntests/core/test_a.py::test_two FAILED [ 20%]\n"
                   "[gw1] [ 30%] PASSED tests/core/test_b.py::test_three \n"
                   "[gw0] [ 40%] ERROR tests/core/test_b.py::test_four \n")
    counts = report.suite_counts(log)
    assert counts == {"counts": {"passed": 2, "failed": 1, "error": 1}, "complete": False,
                      "failures": ["tests/core/test_a.py::test_two", "tests/core/test_b.py::test_four"]}
    log.write_text(log.read_text() + "==== 1 failed, 2 passed, 3 skipped, 1 error in 12.50s ====\n")
    assert report.suite_counts(log)["counts"] == {"failed": 1, "passed": 2, "skipped": 3, "error": 1}


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in args:
            found.append(f"{cmdline.parent.name}: {args[:200]}")
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc to see that no part outlives the run")
def test_a_run_stopped_midway_leaves_an_archive_of_what_finished_and_no_part_running(tmp_path):
    # The device tool stops a command at its limit; `timeout` sends SIGTERM the same way.
    work = tmp_path / "work"
    proc = subprocess.Popen([sys.executable, str(ROOT / "build.py"), "--system", "gpu-run", "--rehearse", "--parts",
                             "probe,bench", "--out", str(tmp_path / "out"), "--work", str(work)], cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    archive = tmp_path / "out" / "gpu_run.tar.gz"
    bench_log = work / "logs" / "bench.log"
    deadline = time.monotonic() + 180
    while not (archive.is_file() and bench_log.is_file()) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, f"the run ended before the bench started: {proc.stdout.read()[-2000:]}"
    assert archive.is_file() and bench_log.is_file(), "no archive after the probe within 180 s"
    proc.terminate()
    proc.wait(timeout=60)
    with tarfile.open(archive) as tar:
        summary = json.load(tar.extractfile("summary.json"))
    parts = {p["name"]: p for p in summary["parts"]}
    assert parts["probe"]["status"] == "ok"
    assert parts["bench"]["status"] == "killed" and parts["bench"]["note"].startswith("stopped: SIGTERM"), parts
    assert proc.returncode == 143
    deadline = time.monotonic() + 30
    while _processes_mentioning(str(work)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _processes_mentioning(str(work))


def test_the_gpu_profiles_of_the_warm_started_trainings_keep_the_committed_states_architecture():
    """The GPU run warm-starts the materials GAN from the CPU training's committed state: its profile must build
    the same architecture (a widened or grown CPU recipe that the GPU profile missed would refuse to warm-start
    in the one slot a session may get)."""
    from core.common.checkpoints import load_training_state
    from core.texture_gan.conditional import ConditionalGANConfig, architecture_of
    from tools.zoo import gan

    n = len(gan.MATERIALS)
    cpu, gpu = (ConditionalGANConfig(n_materials=n, **gan.profile_settings(p)["config"]).architecture()
                for p in ("cpu", "gpu"))
    assert gpu == cpu
    state = ROOT / "models" / "training" / "gan.train.safetensors"
    if state.is_file():
        assert architecture_of(load_training_state(state, "cpu")["config"]) == cpu


def test_a_later_cpu_record_of_a_training_keeps_its_gpu_history(tmp_path):
    """A CPU session's record of a training the GPU run continued keeps the entry's ``gpu_run`` block (the
    twentieth session's VAE training lost it on its next CPU record)."""
    from tools.model_zoo import _update_manifest

    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"models": [{"name": "bundled"}],
                                    "training": [{"name": "vae", "steps": 2, "gpu_run": {"card": "H200"}}]}))
    _update_manifest(manifest, {"name": "vae", "steps": 5}, section="training")
    written = json.loads(manifest.read_text())
    assert written["training"] == [{"name": "vae", "steps": 5, "gpu_run": {"card": "H200"}}]
    assert written["models"] == [{"name": "bundled"}]


def test_unpacking_a_continued_training_keeps_the_machines_it_ran_on(tmp_path):
    """The second slot's VAE came back as trained on "cuda (x86_64, Linux)" alone (the GPU machine's folder had
    no manifest): unpacking keeps the CPU segments on record and names the card."""
    groups = [pack.Group("report", 0, {"summary.txt": b"figures"}),
              pack.Group("models/vae", 1, {"models/vae/files/training/vae.safetensors": b"weights"})]
    entry = {"name": "vae", "steps": 9, "trained_on": "cuda (x86_64, Linux)"}
    summary = {"profile": "gpu", "machine": {"device_name": "NVIDIA H200"},
               "models": {"vae": {"kept": True, "steps": 9, "entry": entry}}}
    archive = tmp_path / "gpu_run.tar.gz"
    pack.write_archive(archive, groups, summary, continuations=0)
    root = tmp_path / "repo"
    (root / "models").mkdir(parents=True)
    manifest = root / "models" / "manifest.json"
    manifest.write_text(json.dumps({"models": [], "training": [
        {"name": "vae", "steps": 5, "trained_on": ["cpu (x86_64, Linux)", "cuda (NVIDIA H200)"]}]}))
    pack.unpack(archive, root)
    written = json.loads(manifest.read_text())["training"][0]
    assert written["trained_on"] == ["cpu (x86_64, Linux)", "cuda (NVIDIA H200)"]
    assert written["steps"] == 9 and written["gpu_run"]["card"] == "NVIDIA H200"
    (root / "docs").mkdir(exist_ok=True)
    manifest.write_text(json.dumps({"models": [], "training": [
        {"name": "vae", "steps": 5, "trained_on": "cpu (x86_64, Linux)"}]}))
    pack.unpack(archive, root)
    assert json.loads(manifest.read_text())["training"][0]["trained_on"] == ["cpu (x86_64, Linux)",
                                                                             "cuda (NVIDIA H200)"]
