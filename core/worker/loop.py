"""The worker: reads requests, checks them, queues jobs into their lanes and answers pings."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from .. import __version__
from ..common.jobs import short_repr
from .lanes import LaneSupervisor, lane_for
from .params import ParamError, check_output
from .protocol import JOB_ID, PROTOCOL_VERSION, Channel
from .registry import JOB_KINDS, validate_params


class Worker(LaneSupervisor):
    def __init__(self, channel: Channel, workdir: Path, device: str = "auto",
                 allowed_outputs: list[Path] | None = None) -> None:
        super().__init__(channel, workdir, device,
                         [workdir.resolve(), *(Path(p).resolve() for p in allowed_outputs or [])])
        self._ids: set[str] = set()  # every id submitted this session: results never overwrite each other

    def start(self) -> None:
        self.start_lanes()
        self.channel.send("ready", pid=os.getpid(), version=__version__, protocol=PROTOCOL_VERSION,
                          python=sys.executable, workdir=str(self.workdir), kinds=sorted(JOB_KINDS),
                          lanes=sorted(self._lanes))

    # ---- commands (main thread)
    def handle(self, line: str) -> bool:
        """Handle one request line; False means 'shut down now'. Never raises."""
        try:
            return self._handle(line)
        except Exception as exc:  # noqa: BLE001 - a request must never stop the worker
            self.channel.send("protocol_error", message=f"request not handled ({type(exc).__name__}: "
                                                        f"{short_repr(str(exc), 200)})")
            return True

    def _handle(self, line: str) -> bool:
        line = line.strip()
        if not line:
            return True
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("a request must be a JSON object")
            cmd = request.get("cmd")
        except (ValueError, RecursionError) as exc:
            self.channel.send("protocol_error", message=f"bad request line: {short_repr(str(exc), 200)}")
            return True
        if cmd == "submit":
            self._submit(request)
        elif cmd == "cancel":
            job_id = request.get("id")
            self._cancel(job_id if isinstance(job_id, str) else None)
        elif cmd == "ping":
            with self._lock:
                running = [lane.running_id for lane in self._lanes.values() if lane.running_id]
                queued = [job_id for lane in self._lanes.values() for job_id in lane.pending]
            self.channel.send("pong", running=running[0] if running else None, running_jobs=running, queued=queued)
        elif cmd == "shutdown":
            return False
        else:
            self.channel.send("protocol_error", message=f"unknown command {short_repr(cmd)}")
        return True

    def _submit(self, request: dict) -> None:
        job_id = request.get("id")
        kind = request.get("kind")
        params = request.get("params")
        if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):
            self.channel.send("protocol_error", id=job_id if isinstance(job_id, str) else None,
                              message=f"submit needs an 'id' of 1-128 letters, digits, '.', '_' or '-' "
                                      f"(starting with a letter or digit), got {short_repr(job_id)}")
            return
        with self._lock:
            duplicate = job_id in self._ids
            self._ids.add(job_id)
        if duplicate:
            self.channel.send("protocol_error", id=job_id,
                              message=f"job id {job_id!r} was already used in this session; ids must be unique")
            return
        if not isinstance(kind, str) or kind not in JOB_KINDS:
            self.channel.send("error", id=job_id, error_type="ValueError",
                              message=f"unknown job kind {short_repr(kind)}; known: {', '.join(sorted(JOB_KINDS))}")
            return
        if params is None:
            params = {}
        try:
            if not isinstance(params, dict):
                raise ParamError("'params' must be an object")
            params = validate_params(kind, params)
            self._check_destinations(params)
        except ParamError as exc:
            self.channel.send("error", id=job_id, error_type="ParamError", message=str(exc))
            return
        lane = self._lanes[lane_for(kind)]
        with self._lock:
            lane.pending[job_id] = (kind, params)
            position = len(lane.pending) + (1 if lane.running_id else 0)
        self.channel.send("queued", id=job_id, kind=kind, position=position, lane=lane.name)
        lane.queue.put((job_id, kind, params))

    def _check_destinations(self, params: dict) -> None:
        """An explicit image output: a writable image type, inside the allowed folders, new unless asked."""
        if params.get("output"):
            check_output(Path(params["output"]), self.output_roots, bool(params.get("overwrite")))

    def _cancel(self, job_id: str | None) -> None:
        with self._lock:
            for lane in self._lanes.values():
                if job_id is not None and job_id == lane.running_id and lane.running_token is not None:
                    lane.running_token.cancel()  # the job stops at its next step and reports 'cancelled'
                    return
                if job_id in lane.pending:
                    del lane.pending[job_id]
                    lane.cancelled_pending.add(job_id)
                    self.channel.send("cancelled", id=job_id, result={}, message="removed from the queue")
                    return
        self.channel.send("protocol_error", message=f"no queued or running job {short_repr(job_id)} to cancel")
