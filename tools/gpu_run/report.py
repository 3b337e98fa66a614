"""What a GPU run says: the suite's counts from its log, the one-screen summary, and docs/gpu_bench.md."""

from __future__ import annotations

import re
from pathlib import Path

# "tests/x.py::t PASSED" (plain -v) or "[gw0] [ 5%] PASSED tests/x.py::t" (pytest-xdist)
_VERBOSE = re.compile(r"^(tests/\S+::\S+)\s+(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)", re.M)
_XDIST = re.compile(r"^\[gw\d+\].*?(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS) (tests/\S+::\S+)", re.M)
_FINAL = re.compile(r"=+ (.*?(?:passed|failed|error|skipped).*?) in [\d.]+s")


def suite_counts(log: Path) -> dict:
    """Counts from a ``pytest -v`` log, complete or cut short by a kill (then counted line by line)."""
    text = log.read_text(errors="replace") if log and log.is_file() else ""
    results = _VERBOSE.findall(text) + [(name, status) for status, name in _XDIST.findall(text)]
    counts: dict[str, int] = {}
    for _, status in results:
        counts[status.lower()] = counts.get(status.lower(), 0) + 1
    failures = sorted({name for name, status in results if status in ("FAILED", "ERROR")})
    final = _FINAL.findall(text)
    if final:  # the closing line is authoritative (it also counts collection errors)
        counts = {}
        for number, word in re.findall(r"(\d+) (\w+)", final[-1]):
            counts[word.rstrip("s") if word.endswith("errors") else word] = int(number)
    return {"counts": counts, "failures": failures[:40], "complete": bool(final)}


def _fmt(value) -> str:
    return "" if value is None else f"{value:.4g}" if isinstance(value, (int, float)) else str(value)


def bench_lines(rows: list[dict]) -> list[str]:
    lines = []
    for r in rows:
        if r.get("status") != "ok":
            lines.append(f"  {r['row']:<18} {r.get('status', '?').upper()}: {str(r.get('error', '')).strip().splitlines()[-1:]}")
            continue
        mark = "" if not r.get("target") else ("MISSED" if r.get("missed") else "met")
        base = f"{r.get('baseline_name', '')}: {_fmt(r.get('baseline_value'))}" if r.get("baseline_value") else ""
        lines.append(f"  {r['name'][:52]:<52} {_fmt(r['value']):>9} {r['unit']:<8} {r.get('target', ''):<14} "
                     f"{mark:<6} {base}")
    return lines


def summary_text(summary: dict) -> str:
    m = summary.get("machine", {})
    perception = m.get("perception", "?")
    lines = [f"gpu-run ({summary.get('profile')}) on {m.get('device_name', '?')}: torch {m.get('torch', '?')}, "
             f"numpy {m.get('numpy', '?')}, Python {m.get('python', '?')}, perception {perception}"
             + ("" if perception in ("vgg19_imagenet", "?") else "  <-- NOT the ImageNet VGG19: quality unmeasured"),
             f"wall {summary.get('wall_s', 0):.0f} s of a {summary.get('budget_s', 0):.0f} s budget; archive "
             f"{summary.get('archive', '?')}"]
    parts = summary.get("parts", [])
    dropped = {d.split(":")[0] for d in summary.get("dropped", [])}

    def state(p: dict) -> str:
        if p.get("expect") == "dropped":
            return "dropped, as expected" if f"parts/{p['name']}" in dropped else f"{p['status']} (expected dropped)"
        return p["status"] + ("" if p["status"] == p.get("expect", "ok") else f" (expected {p['expect']})")

    lines.append("parts: " + ", ".join(f"{p['name']} {state(p)} {p['seconds']:.0f}s" for p in parts))
    suite = summary.get("suite")
    if suite:
        counts = ", ".join(f"{v} {k}" for k, v in suite["counts"].items()) or "nothing counted"
        lines.append(f"core suite on {summary.get('device')}: {counts}" + ("" if suite["complete"] else " (cut short)"))
        lines += [f"  failed: {name}" for name in suite["failures"][:8]]
    if summary.get("bench"):
        lines.append("bench rows (value, target, same-run or previous baseline):")
        lines += bench_lines(summary["bench"])
    for name, model in sorted(summary.get("models", {}).items()):
        lines.append(f"model {name}: {model.get('status')}, {_fmt(model.get('minutes'))} min, "
                     f"{_fmt(model.get('steps'))} steps; {'KEPT' if model.get('kept') else 'not kept'}: "
                     f"{model.get('reason', '')}")
    lines += [f"dropped: {d}" for d in summary.get("dropped", [])]
    return "\n".join(lines) + "\n"


def bench_markdown(summary: dict) -> str:
    """docs/gpu_bench.md: the CUDA rows against their targets, the suite, the GPU-trained models."""
    m = summary.get("machine", {})
    out = [f"# GPU run: {m.get('device_name', '?')}", "",
           f"`python build.py gpu-run` on {summary.get('date', '?')}: torch {m.get('torch', '?')} "
           f"(CUDA {m.get('cuda', '?')}), numpy {m.get('numpy', '?')}, Python {m.get('python', '?')}; perception "
           f"network {m.get('perception', '?')}. Each row is one call timed after a warm-up (median of repeats), "
           "next to the same call on the machine's own CPU where that takes seconds, else the previous 2-core CPU "
           "figure from `docs/bench.json`. A missed target carries its profile: the operators the time went to.",
           "", "| measure | value | unit | target | met | baseline | ratio |", "|---|---:|---|---|---|---|---:|"]
    misses = []
    for r in summary.get("bench", []):
        if r.get("status") != "ok":
            out.append(f"| {r['row']} | {r.get('status')} | | | | {str(r.get('error', '')).strip().splitlines()[-1:]} | |")
            continue
        base = r.get("baseline_value")
        ratio = f"{r['value'] / base:.3g}" if base else ""
        met = "" if not r.get("target") else ("✘" if r.get("missed") else "✔")
        out.append(f"| {r['name']} | {_fmt(r['value'])} | {r['unit']} | {r.get('target', '')} | {met} | "
                   f"{r.get('baseline_name', '')}: {_fmt(base)} | {ratio} |")
        if r.get("profile"):
            misses.append((r["name"], r["profile"]))
    suite = summary.get("suite")
    if suite:
        out += ["", f"## Core suite on {summary.get('device', '?')}", "",
                ", ".join(f"{v} {k}" for k, v in suite["counts"].items()) + ("" if suite["complete"] else " (cut short)")]
        out += [f"- failed: `{name}`" for name in suite["failures"]]
    if summary.get("models"):
        out += ["", "## Models trained on the GPU", "", "| model | status | minutes | steps | score (GPU) | score (CPU-trained) | kept |",
                "|---|---|---:|---:|---:|---:|---|"]
        for name, model in sorted(summary["models"].items()):
            g, c = model.get("gpu_quality") or {}, model.get("cpu_quality") or {}
            out.append(f"| {name} | {model.get('status')} | {_fmt(model.get('minutes'))} | {_fmt(model.get('steps'))} | "
                       f"{_fmt(g.get('score'))} | {_fmt(c.get('score'))} | {'yes' if model.get('kept') else 'no'}: "
                       f"{model.get('reason', '')} |")
    for name, profile in misses:
        out += ["", f"### Where the time goes: {name}", "", "```", profile.rstrip(), "```"]
    return "\n".join(out) + "\n"
