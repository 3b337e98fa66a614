"""One archive under a size cap, rewritten atomically as parts finish, and its unpacking into the repository.

Items are grouped (a part's files, one model's checkpoints) and ranked: the summary, logs and bench rows first,
then the kept models, then the other candidates, then other parts' files. A group that would push the archive
past the cap goes whole into a continuation archive beside it (``gpu_run.1.tar.gz``, ...: the device tool brings
back 8 files of 16 MiB each); one that fits none is left out and named in the summary's ``dropped`` list, so no
archive ever exceeds the cap. Kept models' resume states are compacted before packing (as committed states are).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

MIB = 1 << 20
CAP_BYTES = 16 * MIB  # the device tool returns files of at most 16 MiB
# ... and at most 8 files: the archive, these continuations, summary.txt and console.log, with room to spare
CONTINUATIONS = 3
LOG_TAIL_BYTES = 256 * 1024
_MARGIN = 64 * 1024  # tar headers and gzip framing beyond the per-file estimate
_ESTIMATES: dict[tuple[str, int, int], int] = {}


@dataclass
class Group:
    name: str  # e.g. "models/adain", "parts/canary_oversize"
    rank: int  # 0 summary/logs/bench, 1 kept models, 2 candidates, 3 other parts' files, 4 candidates' states
    files: dict[str, Path | bytes] = field(default_factory=dict)  # name in the archive -> file or bytes


def _estimate(item: Path | bytes) -> int:
    """Compressed size of one item, cached per file version (gzip over a tar is close to the sum)."""
    if isinstance(item, bytes):
        return len(zlib.compress(item, 6)) + 512
    st = item.stat()
    key = (str(item), st.st_size, st.st_mtime_ns)
    if key not in _ESTIMATES:
        _ESTIMATES[key] = len(zlib.compress(item.read_bytes(), 6)) + 512
    return _ESTIMATES[key]


def log_tail(path: Path, limit: int = LOG_TAIL_BYTES) -> bytes:
    data = path.read_bytes() if path.is_file() else b""
    if len(data) <= limit:
        return data
    return b"[... %d bytes cut: the log's tail follows]\n" % (len(data) - limit) + data[-limit:]


def folder_files(folder: Path, prefix: str, skip_suffixes: tuple[str, ...] = ()) -> dict[str, Path]:
    if folder is None or not folder.is_dir():
        return {}
    return {f"{prefix}/{p.relative_to(folder).as_posix()}": p for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.endswith(skip_suffixes)}


def continuation_path(path: Path, index: int) -> Path:
    """The ``index``-th (1-based) archive beside ``path`` that holds what the first could not: gpu_run.1.tar.gz."""
    stem = path.name.removesuffix(".tar.gz")
    return path.with_name(f"{stem}.{index}.tar.gz")


def write_archive(path: Path, groups: list[Group], summary: dict, cap: int = CAP_BYTES,
                  continuations: int = CONTINUATIONS) -> dict:
    """Write ``path`` (tar.gz) with as many groups as fit under ``cap``, in rank order; ``summary.json`` (with
    the ``dropped`` notes) goes first. A group that does not fit goes into the first of up to ``continuations``
    further archives beside it (``continuation_path``) with room, so a kept model is never left out while the
    device tool could bring back another file; one too big for any is dropped. Returns the summary as written.
    Atomic per file: a kill leaves each archive as it last was."""
    ordered = sorted(groups, key=lambda g: g.rank)
    forced: list[str] = []
    while True:
        bins: list[list[Group]] = [[] for _ in range(1 + continuations)]
        used = [_MARGIN + 8192] + [_MARGIN] * continuations  # the first holds summary.json too
        dropped = list(forced)
        for group in ordered:
            size = sum(_estimate(item) for item in group.files.values())
            room = [i for i in range(len(bins)) if used[i] + size <= cap and (i == 0 or group.rank > 0)]
            if not room:
                dropped.append(f"{group.name}: {size / MIB:.1f} MiB compressed would pass the archive's "
                               f"{cap / MIB:.0f} MiB cap; left out")
                continue
            bins[room[0]].append(group)
            used[room[0]] += size
        files = {g.name: (path if i == 0 else continuation_path(path, i)).name
                 for i, b in enumerate(bins) for g in b}
        summary = dict(summary, dropped=dropped, archive_groups=[g.name for g in bins[0]], archive_files=files)
        path.parent.mkdir(parents=True, exist_ok=True)
        over = None
        for i, groups_in in enumerate(bins):
            target = path if i == 0 else continuation_path(path, i)
            if i and not groups_in:
                target.unlink(missing_ok=True)  # a continuation an earlier pack wrote and this one does not need
                continue
            tmp = target.with_name(target.name + ".tmp")
            with tarfile.open(tmp, "w:gz", compresslevel=6) as tar:
                if i == 0:
                    _add_bytes(tar, "summary.json", json.dumps(summary, indent=2, default=str).encode())
                for group in groups_in:
                    for name, item in group.files.items():
                        if isinstance(item, bytes):
                            _add_bytes(tar, name, item)
                        elif item.is_file():
                            tar.add(str(item), arcname=name, recursive=False)
            if tmp.stat().st_size > cap and any(g.rank > 0 for g in groups_in):
                over = over or [g for g in groups_in if g.rank > 0]
                tmp.unlink()
                continue
            os.replace(tmp, target)
        if over is None:
            return summary
        # The estimate was short: leave out the lowest-ranked, largest group of an archive over the cap; again.
        worst = max(over, key=lambda g: (g.rank, sum(map(_estimate, g.files.values()))))
        ordered = [g for g in ordered if g is not worst]
        forced.append(f"{worst.name}: left out after the archive came out over the {cap / MIB:.0f} MiB cap")


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def extract(archive: Path, dest: Path) -> dict:
    """Safe extraction (no absolute paths, no '..', no links out) of the archive and its continuations beside
    it; returns summary.json."""
    summary = None
    for index in range(CONTINUATIONS + 1):
        path = archive if index == 0 else continuation_path(archive, index)
        if index and not path.is_file():
            continue
        with tarfile.open(path, "r:gz") as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, filter="data")
            else:  # Python without extraction filters: check every name ourselves
                for member in tar.getmembers():
                    target = (dest / member.name).resolve()
                    if not str(target).startswith(str(dest.resolve())) or not (member.isfile() or member.isdir()):
                        raise ValueError(f"unsafe archive member {member.name!r}")
                tar.extractall(dest)
        if index == 0:  # read now: a continuation must not replace the run's summary
            summary = json.loads((dest / "summary.json").read_text())
    return summary


# --------------------------------------------------------------------------- unpacking into the repository

def unpack(archive: Path, root: Path, keep: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Put the kept models (and those named in ``keep``) under ``root/models`` with their manifest entries, and
    the bench, suite and model figures into ``root/docs/gpu_bench.md`` (+ .json). Returns what was done."""
    from .report import bench_markdown

    done = []
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp)
        summary = extract(archive, src)
        card = summary.get("machine", {}).get("device_name", "?")
        manifest_path = root / "models" / "manifest.json"
        manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {"models": []}
        # A GPU-trained model continues its training (models/training/...): it joins the manifest's training
        # list; the bundled models (the "models" list) change only through their ship tools, which measure it
        # against the bundled one (tools/ship_materials.py, tools/eval_fast_styles.py --ship).
        by_name = {m.get("name"): m for m in manifest.setdefault("training", [])}
        for name, model in sorted(summary.get("models", {}).items()):
            files = src / "models" / name / "files"
            if name in keep and not model.get("kept"):
                model = dict(model, kept=True, reason=f"kept by hand (--keep); the run said: {model.get('reason', '')}")
                if not any(files.rglob("*.train.safetensors")):
                    done.append(f"{name}: WARNING its resume state is not in the archive: a CPU run resuming from "
                                "the old state in models/ would overwrite this model")
            if not model.get("kept"):
                done.append(f"{name}: not kept ({model.get('reason', '')})")
                continue
            if not files.is_dir():
                done.append(f"{name}: kept, but its files are not in the archive (see 'dropped')")
                continue
            installed = []
            for path in sorted(p for p in files.rglob("*") if p.is_file()):
                target = root / "models" / path.relative_to(files)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
                installed.append(path.relative_to(files))
                done.append(f"{name}: models/{path.relative_to(files).as_posix()}")
            entry = dict(model.get("entry") or {})
            entry.setdefault("name", name)
            for key in ("file", "thumbnail"):  # the GPU machine's absolute paths: the installed files, under models/
                if isinstance(entry.get(key), str) and Path(entry[key]).is_absolute():
                    same = [rel.as_posix() for rel in installed if rel.name == Path(entry[key]).name]
                    if same:
                        entry[key] = same[0]
                    else:
                        entry.pop(key)
            # The GPU machine wrote its own device as the only machine (its folder had no manifest): a continued
            # training keeps the machines its earlier segments ran on, with the card by name.
            earlier = by_name.get(entry["name"], {})
            if "trained_on" in entry or "trained_on" in earlier:
                from tools.zoo._common import joined_machines
                entry["trained_on"] = joined_machines(earlier, entry.get("steps") or 0, f"cuda ({card})")
            entry["gpu_run"] = {"card": card, "date": summary.get("date"), "minutes": model.get("minutes"),
                                "steps": model.get("steps", entry.get("steps")), "profile": summary.get("profile"),
                                "quality": model.get("gpu_quality"), "cpu_trained_quality": model.get("cpu_quality"),
                                "decision": model.get("reason")}
            by_name[entry["name"]] = {**by_name.get(entry["name"], {}), **entry}
        manifest["training"] = list(by_name.values())
        manifest_path.parent.mkdir(parents=True, exist_ok=True)
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
        done.append(f"models/manifest.json: {sum(1 for m in summary.get('models', {}).values() if m.get('kept'))} "
                    "entries from the GPU run in its training list (ship a model with its ship tool)")
        docs = root / "docs"
        docs.mkdir(parents=True, exist_ok=True)
        (docs / "gpu_bench.md").write_text(bench_markdown(summary))
        (docs / "gpu_bench.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
        done.append("docs/gpu_bench.md and docs/gpu_bench.json (link them from the README)")
    return done
