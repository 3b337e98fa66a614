"""The palette-strength choice (tools/choose_palette_strength.py): the highest worst cut within the targets."""

from __future__ import annotations

import pytest

from tools.choose_palette_strength import choose, main


def _frames(*cells: tuple[float, float, float]) -> list[dict]:
    return [{"cut": cut, "content": content, "grain": grain} for cut, content, grain in cells]


def test_the_highest_worst_cut_among_the_strengths_that_keep_the_targets():
    rows = {0.0: _frames((0.38, 0.4, 1.5), (0.60, 0.3, 1.2)),
            0.2: _frames((0.404, 0.5, 1.6), (0.468, 0.4, 1.3)),
            0.25: _frames((0.4043, 0.5, 1.7), (0.450, 0.4, 1.4)),  # a tie on the worst: the next-worst decides
            0.4: _frames((0.41, 0.99, 2.9), (0.50, 0.5, 1.5)),
            0.5: _frames((0.43, 1.10, 3.0), (0.55, 0.6, 1.6))}  # the best cut, but a frame over the content target
    assert choose(rows) == (0.4, True)
    assert choose({k: v for k, v in rows.items() if k != 0.4}) == (0.2, True)
    over_grain = {0.0: _frames((0.3, 0.5, 3.2)), 0.5: _frames((0.5, 0.5, 3.4))}
    assert choose(over_grain) == (0.5, False)  # none keeps the targets: said so, and the best cut chosen
    with pytest.raises(ValueError):
        choose({0.1: []})


def test_the_bench_frames_are_refused_as_validation_frames(tmp_path):
    with pytest.raises(SystemExit):
        main(["--styles", "udnie", "--frames", "benchmarks/data/photo_holdout_tower_bridge.jpg"])
