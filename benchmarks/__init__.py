"""Speed and quality measurements gathered by ``python build.py bench``.

Each ``bench_<family>.py`` module exposes ``run(ctx: BenchContext) -> None`` and
adds rows with ``ctx.add(...)``. Every figure is reported next to a baseline
measured in the same run (ratios, not absolute CPU times, are what to compare
across machines; absolute times are meaningful on a GPU).
"""
