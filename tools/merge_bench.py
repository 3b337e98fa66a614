"""Merge a partial bench run (``build.py bench --only FAMILY``) into the committed report in docs/.

    python tools/merge_bench.py bench_output/bench.json [--into docs]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.report import merge_report  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="bench.json of the partial run")
    parser.add_argument("--into", type=Path, default=Path("docs"), help="folder of the report to update")
    args = parser.parse_args(argv)
    md, js = merge_report(args.report, args.into)
    print(f"merged {args.report} into {md} and {js}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
