"""`python build.py bench --quick` runs every family and writes a complete report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_bench_writes_markdown_and_json_with_baselines(tmp_path):
    out = tmp_path / "bench"
    proc = subprocess.run([sys.executable, str(ROOT / "build.py"), "--system", "bench", "--quick", "--out", str(out)],
                          cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "bench.json").read_text())
    families = {row["family"] for row in report["rows"]}
    assert {"texture_gan", "texture_vae", "style"} <= families
    assert "cpu" in report["machines"]
    for row in report["rows"]:
        assert row["value"] == row["value"], row  # no NaN figures
    with_baseline = [row for row in report["rows"] if row["baseline_value"] is not None]
    assert len(with_baseline) >= len(report["rows"]) * 0.8  # nearly every figure has its same-run baseline
    markdown = (out / "bench.md").read_text()
    assert markdown.count("\n|") >= len(report["rows"]) + 1


def test_merging_a_partial_run_replaces_only_its_families_rows(tmp_path):
    from benchmarks.report import BenchRow, merge_report, write_report

    def row(family, name, value):
        return BenchRow(family=family, name=name, device="cpu", value=value, unit="s")

    committed, partial = tmp_path / "docs", tmp_path / "run"
    write_report([row("a", "x", 1.0), row("b", "y", 2.0), row("b", "z", 3.0), row("c", "w", 4.0)],
                 {"cpu": "old machine"}, committed)
    write_report([row("b", "y", 20.0), row("d", "v", 5.0)], {"cpu": "new machine"}, partial)
    merge_report(partial / "bench.json", committed)
    rows = json.loads((committed / "bench.json").read_text())["rows"]
    assert [(r["family"], r["name"], r["value"]) for r in rows] == [
        ("a", "x", 1.0), ("b", "y", 20.0), ("c", "w", 4.0), ("d", "v", 5.0)]  # b's old rows are all gone
    assert "| b | y | cpu | 20 |" in (committed / "bench.md").read_text()


def test_paired_timing_alternates_the_call_and_its_baseline():
    import torch

    from benchmarks.report import time_pair

    calls = []
    a, b = time_pair(lambda: calls.append("a"), lambda: calls.append("b"), torch.device("cpu"), repeats=3, warmup=1)
    assert calls == ["a", "b"] * 4  # warm-up, then each repeat times one of each, in turn
    assert a >= 0 and b >= 0
