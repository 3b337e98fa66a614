"""Parts of a GPU run: each one subprocess with its own log and time limit, killed (its whole process group)
when it overruns, so a failing or hanging part never stops the others."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[2]
_RUNNING: dict[int, subprocess.Popen] = {}  # pid -> process, for kill_all
_STOP: list[str] = []  # set by a signal handler; acted on between polls, never in the middle of starting a part


def request_stop(reason: str) -> None:
    """From a signal handler: stop every running part at the next poll, record them, and exit (143)."""
    _STOP.append(reason)


@dataclass
class Part:
    name: str
    kind: str  # probe, bench, suite, train, eval, canary
    argv: list[str]
    timeout_s: float
    env: dict[str, str] = field(default_factory=dict)
    files: Path | None = None  # a folder whose contents go into the archive under parts/<name>/
    expect: str = "ok"  # the rehearsal's canaries expect "failed", "killed" or "dropped"
    watch: Callable[["Part"], str | None] | None = None  # says why to kill it early (a hung bench row)
    status: str = "pending"  # ok, failed, killed, skipped
    rc: int | None = None
    seconds: float = 0.0
    note: str = ""
    log: Path | None = None

    def record(self) -> dict:
        return {"name": self.name, "kind": self.kind, "status": self.status, "expect": self.expect, "rc": self.rc,
                "seconds": round(self.seconds, 1), "timeout_s": round(self.timeout_s, 1), "note": self.note}


def _start(part: Part, logs: Path) -> subprocess.Popen:
    logs.mkdir(parents=True, exist_ok=True)
    part.log = logs / f"{part.name}.log"
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)  # keep e.g. carried wheels
    env = dict(os.environ, PYTHONPATH=path, PYTHONUNBUFFERED="1", **part.env)
    with open(part.log, "wb") as log:
        log.write(f"$ {' '.join(part.argv)}\n".encode())
        log.flush()
        # Its own process group (same session): a kill reaches everything it started, e.g. pytest's workers.
        proc = subprocess.Popen(part.argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, process_group=0)
    _RUNNING[proc.pid] = proc
    return proc


def kill_group(proc: subprocess.Popen, grace_s: float = 3.0) -> None:
    """SIGTERM the part's process group, then SIGKILL whatever is left after ``grace_s``."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    # The leader may be gone while a child of it lingers in the group.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _RUNNING.pop(proc.pid, None)


def kill_all() -> None:
    for proc in list(_RUNNING.values()):
        kill_group(proc, grace_s=1.0)


def run_parallel(parts: list[Part], logs: Path, deadline: float, on_done: Callable[[Part], None],
                 poll_s: float = 0.2) -> None:
    """Start every part now; each ends by itself, at its own limit or at ``deadline`` (monotonic), whichever
    is first; ``on_done`` runs for each as it ends (the archive is repacked there)."""
    running: dict[str, tuple[Part, subprocess.Popen, float, float]] = {}
    for part in parts:
        if _STOP:
            raise SystemExit(143)
        now = time.monotonic()
        if deadline - now < 1.0:
            part.status, part.note = "skipped", "no time left in the run's budget"
            on_done(part)
            continue
        running[part.name] = (part, _start(part, logs), now, min(now + part.timeout_s, deadline))
    while running:
        for name, (part, proc, started, limit) in list(running.items()):
            rc = proc.poll()
            now = time.monotonic()
            reason = None
            if rc is None:
                if _STOP:
                    reason = f"stopped: {_STOP[0]}"
                elif now >= limit:
                    reason = (f"killed at its limit of {part.timeout_s:.0f} s" if limit < deadline
                              else "killed at the run's deadline")
                elif part.watch is not None:
                    reason = part.watch(part)
                if reason is None:
                    continue
                kill_group(proc)
                rc = proc.returncode
                part.status, part.note = "killed", reason
            else:
                _RUNNING.pop(proc.pid, None)
                part.status = "ok" if rc == 0 else "failed"
            part.rc, part.seconds = rc, time.monotonic() - started
            del running[name]
            on_done(part)
        if _STOP:
            raise SystemExit(143)  # every part is recorded and the archive written
        if running:
            time.sleep(poll_s)


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            pass  # a line cut by a kill
    return rows


def run_rows(rows: list[str], limits: dict[str, float], make_part: Callable[[list[str]], Part], jsonl: Path,
             logs: Path, deadline: float, on_done: Callable[[Part], None]) -> None:
    """Bench rows in one process, one after another; a row past its own limit is killed and recorded, and a
    new process continues with the rows after it (each row's import and CUDA start is paid once, not per row)."""
    remaining = list(rows)
    attempt = 0
    while remaining and deadline - time.monotonic() > 5:
        part = make_part(remaining)
        part.name = f"{part.name}{'' if attempt == 0 else f'_{attempt}'}"
        part.timeout_s = sum(limits[r] for r in remaining) + 30  # + the process's start
        seen = len(read_jsonl(jsonl))  # the events of earlier attempts (a killed profile's "started") are over

        def watch(p: Part) -> str | None:
            events = read_jsonl(jsonl)[seen:]
            if not events or events[-1].get("status") != "started":
                return None
            row = events[-1]["row"]
            if time.time() - events[-1]["time"] > limits[row]:
                return f"row {row} ran past its limit of {limits[row]:.0f} s"
            return None

        part.watch = watch
        run_parallel([part], logs, deadline, on_done)
        events = read_jsonl(jsonl)
        finished = {e["row"] for e in events if e.get("status") != "started"}
        if len(events) > seen and events[-1].get("status") == "started" and events[-1]["row"] not in finished:
            row = events[-1]["row"]  # in flight when the process ended: record it, go on after it
            with jsonl.open("a") as f:
                f.write(json.dumps({"row": row, "status": "killed" if part.status == "killed" else "failed",
                                    "error": part.note or f"the process ended (rc {part.rc}) during this row"}) + "\n")
            finished.add(row)
        if part.status == "ok" or not finished & set(remaining):
            break  # done, or the process died before any row: retrying would fail the same way
        remaining = [r for r in remaining if r not in finished]
        attempt += 1
