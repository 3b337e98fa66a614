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
