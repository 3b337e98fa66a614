"""The AdaIN decoder's ship rule (tools/eval_fast_styles.py): judged over every painting it never saw."""

from __future__ import annotations

from tools.eval_fast_styles import adain_ships

KINDS = ["photo", "render"]


def _figures(cut_photo: float, cut_render: float, content_photo: float, content_render: float) -> dict:
    return {"style_cut_photo": cut_photo, "style_cut_render": cut_render,
            "content_distance_photo": content_photo, "content_distance_render": content_render}


def test_adain_ships_when_every_painting_keeps_the_frame_and_the_mean_cut_meets_the_target():
    good = {"starry_night": _figures(0.49, 0.39, 0.67, 0.97), "the_kiss": _figures(0.89, 0.80, 0.61, 0.64)}
    assert adain_ships(good, KINDS)  # one painting a point under 40 % on one frame: the mean carries it
    assert not adain_ships({**good, "udnie": _figures(0.7, 0.6, 0.5, 1.02)}, KINDS)  # one frame repainted
    assert not adain_ships({"a": _figures(0.45, 0.35, 0.5, 0.5), "b": _figures(0.45, 0.38, 0.5, 0.5)}, KINDS)
    assert not adain_ships({"a": _figures(0.95, 0.25, 0.5, 0.5), "b": _figures(0.95, 0.95, 0.5, 0.5)}, KINDS)
    assert not adain_ships({}, KINDS)
