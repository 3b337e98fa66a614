"""Bench rows, timing helper and the Markdown + JSON report."""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch


@dataclass
class BenchRow:
    family: str  # "texture_gan", "texture_vae", "style"
    name: str  # what was measured, e.g. "generate 1024px"
    device: str  # "cpu" or "cuda"
    value: float
    unit: str  # "s", "ms", "steps/s", "ratio", ...
    baseline_name: str = ""  # what it is compared against, measured in the same run
    baseline_value: Optional[float] = None
    target: str = ""  # the target, e.g. "< 0.5 s on H100"
    note: str = ""

    @property
    def ratio(self) -> Optional[float]:
        if self.baseline_value in (None, 0):
            return None
        return self.value / self.baseline_value


@dataclass
class BenchContext:
    device: torch.device
    quick: bool = False  # smaller sizes/steps (used by the test that checks the bench runs)
    work_dir: Path = Path("bench_output")
    rows: list[BenchRow] = field(default_factory=list)

    def add(self, **kwargs) -> BenchRow:
        row = BenchRow(device=self.device.type, **kwargs)
        self.rows.append(row)
        print(f"  {row.family:12s} {row.name:45s} {row.value:12.5g} {row.unit:8s} "
              f"{(row.baseline_name + ' ' + format(row.baseline_value, '.5g')) if row.baseline_value is not None else ''}",
              flush=True)
        return row


def _wall(fn: Callable[[], object], device: torch.device) -> float:
    """Wall time in seconds of one ``fn()``, synchronising CUDA around it."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def time_call(fn: Callable[[], object], device: torch.device, repeats: int = 3, warmup: int = 1) -> float:
    """Median wall time in seconds of ``fn()``, synchronising CUDA around each call."""
    for _ in range(warmup):
        fn()
    times = sorted(_wall(fn, device) for _ in range(repeats))
    return times[len(times) // 2]


def time_pair(fn: Callable[[], object], baseline: Callable[[], object], device: torch.device,
              repeats: int = 3, warmup: int = 1) -> tuple[float, float]:
    """Median wall times of ``fn()`` and ``baseline()``, measured alternately so that a burst of load on a
    shared machine falls on both (timed one after the other, a 1.1x slower baseline came out faster)."""
    for _ in range(warmup):
        fn()
        baseline()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        times[0].append(_wall(fn, device))
        times[1].append(_wall(baseline, device))
    return tuple(sorted(ts)[len(ts) // 2] for ts in times)


def machine_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (torch {torch.__version__}, CUDA {torch.version.cuda})"
    return f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads (torch {torch.__version__})"


def write_report(rows: list[BenchRow], machines: dict[str, str], out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "bench.json"
    md_path = out_dir / "bench.md"
    data = {"machines": machines, "rows": [dict(asdict(r), ratio=r.ratio) for r in rows]}
    json_path.write_text(json.dumps(data, indent=2))
    lines = ["# Benchmark report", ""]
    for dev, desc in machines.items():
        lines.append(f"- **{dev}**: {desc}")
    lines += ["", "| family | measure | device | value | unit | baseline (same run) | ratio | target | note |",
              "|---|---|---|---:|---|---|---:|---|---|"]
    for r in rows:
        base = f"{r.baseline_name}: {r.baseline_value:.4g}" if r.baseline_value is not None else ""
        ratio = f"{r.ratio:.3g}" if r.ratio is not None else ""
        lines.append(f"| {r.family} | {r.name} | {r.device} | {r.value:.4g} | {r.unit} | {base} | {ratio} | {r.target} | {r.note} |")
    md_path.write_text("\n".join(lines) + "\n")
    return md_path, json_path


def merge_report(new_json: Path, into_dir: Path) -> tuple[Path, Path]:
    """Replace, in ``into_dir``'s report, the rows of every family that ``new_json`` measured (the other
    families' rows stay, in their order), and rewrite both files. For a bench run with ``--only``."""
    new = json.loads(Path(new_json).read_text())
    old = json.loads((Path(into_dir) / "bench.json").read_text())
    fresh = {r["family"] for r in new["rows"]}
    merged, placed = [], set()
    for row in old["rows"]:
        if row["family"] in fresh:
            if row["family"] not in placed:  # the new rows take the old ones' place
                merged += [r for r in new["rows"] if r["family"] == row["family"]]
                placed.add(row["family"])
            continue
        merged.append(row)
    merged += [r for r in new["rows"] if r["family"] not in placed]
    fields = set(BenchRow.__dataclass_fields__)
    rows = [BenchRow(**{k: v for k, v in r.items() if k in fields}) for r in merged]
    return write_report(rows, {**old["machines"], **new["machines"]}, Path(into_dir))
