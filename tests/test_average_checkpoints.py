"""tools/average_checkpoints.py: the weighted mean of checkpoints of one training, refused across trainings."""

from __future__ import annotations

import pytest
import torch

from core.common.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from tools.average_checkpoints import average_model_files, main

SESSION_1 = {"date": "2026-11-30 03:57 UTC", "start_step": 0, "end_step": 100, "seconds": 60.0}
SESSION_2 = {"date": "2026-11-30 05:10 UTC", "start_step": 100, "end_step": 250, "seconds": 90.0}


def _save(path, seed: int, history: list[dict], steps: int, **config):
    g = torch.Generator().manual_seed(seed)
    tensors = {"conv.weight": torch.randn(4, 3, 3, 3, generator=g), "conv.bias": torch.randn(4, generator=g),
               "count": torch.tensor([7], dtype=torch.int64)}
    save_checkpoint(path, tensors, {"decoder": {"widths": [4]}, "seed": 0, "history": history,
                                    "steps_done": steps, **config}, "style_adain")
    return tensors


def test_the_mean_of_two_checkpoints_of_one_training_is_weighted_and_records_its_sources(tmp_path):
    a = _save(tmp_path / "a.safetensors", 1, [{**SESSION_1, "end_step": 60}], 60)
    b = _save(tmp_path / "b.safetensors", 2, [SESSION_1, SESSION_2], 250)
    config = average_model_files([tmp_path / "a.safetensors", tmp_path / "b.safetensors"],
                                 tmp_path / "mean.safetensors", [0.25, 0.75])
    tensors, saved = load_checkpoint(tmp_path / "mean.safetensors", "style_adain")
    for key in ("conv.weight", "conv.bias"):
        torch.testing.assert_close(tensors[key], 0.25 * a[key] + 0.75 * b[key])
        assert not torch.allclose(tensors[key], b[key])
    assert torch.equal(tensors["count"], a["count"])
    assert saved["steps_done"] == 250 and saved["history"] == [SESSION_1, SESSION_2]
    assert [(s["steps_done"], s["weight"]) for s in saved["averaged_from"]] == [(60, 0.25), (250, 0.75)]
    assert config["averaged_from"] == saved["averaged_from"]
    # equal weights by default; a checkpoint averaged with itself is itself
    average_model_files([tmp_path / "b.safetensors"] * 2, tmp_path / "same.safetensors")
    same, _ = load_checkpoint(tmp_path / "same.safetensors")
    assert all(torch.equal(same[k], b[k]) for k in b)


def test_a_recipe_changed_between_sessions_still_averages_and_a_mean_of_a_mean_records_its_checkpoints(tmp_path):
    """A running training may change its loss weights between sessions (``training``); the history proves it is
    one training. Averaging a mean again lists the checkpoints it is made of with their shares."""
    a = _save(tmp_path / "a.safetensors", 1, [{**SESSION_1, "end_step": 60}], 60, training={"stability_weight": 0})
    b = _save(tmp_path / "b.safetensors", 2, [SESSION_1, {**SESSION_2, "end_step": 150}], 150,
              training={"stability_weight": 0})
    c = _save(tmp_path / "c.safetensors", 3, [SESSION_1, SESSION_2], 250, training={"stability_weight": 300})
    average_model_files([tmp_path / "a.safetensors", tmp_path / "b.safetensors"], tmp_path / "ab.safetensors")
    config = average_model_files([tmp_path / "ab.safetensors", tmp_path / "c.safetensors"],
                                 tmp_path / "abc.safetensors", [0.5, 0.5])
    assert [(s["steps_done"], s["weight"]) for s in config["averaged_from"]] == [(60, 0.25), (150, 0.25), (250, 0.5)]
    assert config["training"] == {"stability_weight": 300}
    tensors, _ = load_checkpoint(tmp_path / "abc.safetensors", "style_adain")
    torch.testing.assert_close(tensors["conv.weight"], 0.25 * a["conv.weight"] + 0.25 * b["conv.weight"]
                               + 0.5 * c["conv.weight"])


def test_checkpoints_of_different_trainings_or_architectures_are_refused(tmp_path, capsys):
    _save(tmp_path / "b.safetensors", 2, [SESSION_1, SESSION_2], 250)
    _save(tmp_path / "other_run.safetensors", 3, [{**SESSION_1, "date": "2026-11-29 22:00 UTC"}], 100)
    _save(tmp_path / "other_arch.safetensors", 4, [SESSION_1], 100, decoder={"widths": [8]})
    for name, reason in (("other_run", "history"), ("other_arch", "decoder")):
        with pytest.raises(CheckpointError, match=reason):
            average_model_files([tmp_path / f"{name}.safetensors", tmp_path / "b.safetensors"], tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()
    with pytest.raises(ValueError, match="summing to 1"):
        average_model_files([tmp_path / "b.safetensors"] * 2, tmp_path / "x.safetensors", [0.5, 0.6])
    assert main([str(tmp_path / "other_run.safetensors"), str(tmp_path / "b.safetensors"),
                 "--out", str(tmp_path / "x.safetensors")]) == 1
    assert "not checkpoints of one training" in capsys.readouterr().err
