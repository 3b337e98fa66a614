"""tools/ship_materials.py: the training's materials GAN and VAE become the bundled texture models.

On tiny trainings (seconds, the zoo's ``tiny`` profile) in a scratch bundle folder that holds models to retire:
the copies are float16 and decode what the training's float32 models decode (to float16 rounding), the retired
entries leave the manifest (their files deleted, the previous VAE kept as the bench's baseline), the new entries
carry steps, command and measured quality, and the add-on's library lists the two as bundled models.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tools import ship_materials, zoo


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bundle")
    models = root / "models"
    (models / "texture_gan").mkdir(parents=True)
    (models / "texture_vae").mkdir()
    retired = []
    for name, rel in (("bricks", "texture_gan/bricks.safetensors"), ("materials", "texture_vae/materials.safetensors")):
        for suffix in (".safetensors", ".json", ".png"):
            (models / rel).with_suffix(suffix).write_bytes(b"old " + name.encode())
        retired.append({"name": name, "kind": "texture_gan" if "gan" in rel else "texture_vae", "file": rel})
    kept = {"name": "fast_styles", "kind": "style_multi", "file": "style/fast_styles.safetensors"}
    (models / "manifest.json").write_text(json.dumps({"models": retired + [kept], "training": []}))
    for key in ("gan", "gan_vae"):
        zoo.recipe(key).train(5.0, profile="tiny", out_dir=models, max_steps=3)
    args = ["--models", str(models), "--profile", "tiny", "--gan", str(models / "training" / "materials_gan.safetensors"),
            "--vae", str(models / "training" / "materials_gan_vae.safetensors")]
    assert ship_materials.main(args) == 0
    assert ship_materials.main(args) == 0  # a re-run (the next session's) re-bundles and retires nothing new
    return models


def test_the_bundled_copies_are_float16_and_decode_like_the_trained_models(bundle):
    from safetensors import safe_open

    from core.texture_gan import TextureGenerator
    from core.texture_vae import load_texture_vae

    for rel in ("texture_gan/materials.safetensors", "texture_vae/materials.safetensors"):
        with safe_open(str(bundle / rel), framework="pt") as fh:
            dtypes = {str(fh.get_tensor(k).dtype) for k in fh.keys()}
        assert "torch.float32" not in dtypes and "torch.float16" in dtypes, (rel, dtypes)
    trained = TextureGenerator.load(bundle / "training" / "materials_gan.safetensors", "cpu")
    shipped = TextureGenerator.load(bundle / "texture_gan" / "materials.safetensors", "cpu")
    assert shipped.materials == trained.materials
    for name in trained.materials:
        a, b = (g.generate(48, 40, seed=3, material=name) for g in (trained, shipped))
        assert a.shape == b.shape == (40, 48, 3)
        assert np.abs(a - b).max() < 0.03, name  # float16 weights, float32 arithmetic
    crop = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    vaes = [load_texture_vae(bundle / rel, "cpu") for rel in ("training/materials_gan_vae.safetensors",
                                                              "texture_vae/materials.safetensors")]
    a, b = (v.vary(crop, 0.5, seed=1) for v in vaes)
    assert np.abs(a - b).max() < 0.05


def test_the_manifest_swaps_the_retired_models_for_the_materials_models(bundle):
    manifest = json.loads((bundle / "manifest.json").read_text())
    names = [m["name"] for m in manifest["models"]]
    assert sorted(names) == ["fast_styles", "materials", "materials_vae"], names
    assert not (bundle / "texture_gan" / "bricks.safetensors").exists()
    assert not (bundle / "texture_gan" / "bricks.png").exists()
    previous = bundle / "texture_vae" / "previous" / "materials.safetensors"
    assert previous.read_bytes() == b"old materials"  # moved, not lost: the bench's baseline
    for entry in (m for m in manifest["models"] if m["name"].startswith("materials")):
        assert (bundle / entry["file"]).is_file() and (bundle / entry["thumbnail"]).is_file()
        assert entry["steps"] == 3 and "--only" in entry["command"] and entry["size_mb"] > 0
        rows = [r for r in entry["quality"]["rows"] if "ratio" in r]
        assert len(rows) == 2 and all(np.isfinite(r["ratio"]) and r["ratio"] > 0 for r in rows), entry["quality"]
    entries = {m["name"]: m for m in manifest["models"]}
    # The GAN's walls were considered for noise filters: the tiny profile's 32 px outputs hold no two courses.
    assert entries["materials"]["noise_filters"] == {}
    assert "0 Refine Steps" in entries["materials_vae"]["quality_measured_with"]  # the tiny profile's; cpu: 30
    training = {m["name"] for m in manifest["training"]}
    assert training == {"materials_gan", "materials_gan_vae"}  # the trainings' own entries stay


def test_the_library_lists_both_as_bundled_models(bundle):
    from core import library

    listed = library.list_models([], bundled_folders=[bundle])
    by_kind = {m.kind: m for m in listed}
    assert by_kind["texture_gan"].path.name == "materials.safetensors" and by_kind["texture_gan"].bundled
    assert by_kind["texture_vae"].path.parent.name == "texture_vae" and by_kind["texture_vae"].bundled
    assert by_kind["texture_gan"].name == "Materials (GAN)"
    assert all(m.path.parent.name != "previous" for m in listed)  # the baseline is not offered


def _write_garbled(source: Path, dest: Path, seed: int) -> None:
    """``source`` with noise (3 sigma) on every float weight, written to ``dest`` (its metadata kept): a model that
    measures far worse."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(source), "pt") as f:
        metadata = f.metadata()
    gen = torch.Generator().manual_seed(seed)
    tensors = {k: v + 3 * torch.randn(v.shape, generator=gen).to(v.dtype) if v.is_floating_point() else v
               for k, v in load_file(str(source)).items()}
    save_file(tensors, str(dest), metadata=metadata)


def test_a_worse_training_model_leaves_the_bundled_copy(bundle, tmp_path, capsys):
    """The training's model is replaced by a garbled copy (noise on every weight): the bundled GAN and its entry
    stay; --force replaces them."""
    import shutil

    source = bundle / "training" / "materials_gan.safetensors"
    worse = tmp_path / "worse_gan.safetensors"
    _write_garbled(source, worse, seed=0)
    shutil.copy2(source.with_suffix(".json"), worse.with_suffix(".json"))
    bundled = bundle / "texture_gan" / "materials.safetensors"
    before, manifest_before = bundled.read_bytes(), (bundle / "manifest.json").read_text()
    args = ["--models", str(bundle), "--profile", "tiny", "--gan", str(worse),
            "--vae", str(bundle / "training" / "materials_gan_vae.safetensors")]
    assert ship_materials.main(args) == 0
    assert "texture_gan/materials.safetensors: kept the bundled copy" in capsys.readouterr().out
    assert bundled.read_bytes() == before
    assert not list(bundled.parent.glob("*.candidate.*"))
    assert ship_materials.main(args + ["--force"]) == 0
    assert bundled.read_bytes() != before
    assert (bundle / "manifest.json").read_text() != manifest_before
    # put the fixture's bundle back for any test after this one
    assert ship_materials.main(args[:5] + [str(source)] + args[6:] + ["--force"]) == 0


def test_a_lead_replaces_the_bundled_copy_only_where_it_holds_on_held_out_seeds():
    from tools.ship_materials import lead_holds

    assert lead_holds(1.00, 0.97, 0.95, 0.94)
    assert not lead_holds(1.00, 0.97, 0.94, 0.95)  # the forty-sixth session's case: a lead on the picking seeds only
    assert not lead_holds(1.00, 1.00, 0.95, 0.90)  # level on the deciding seeds: the bundled copy stays
    assert not lead_holds(1.00, 0.97, 0.95, 0.95)


def test_held_out_seeds_draw_other_outputs_under_the_same_judge(bundle):
    gan_file = bundle / "training" / "materials_gan.safetensors"
    vae_file = bundle / "training" / "materials_gan_vae.safetensors"
    for recipe, path in ((zoo.recipe("gan"), gan_file), (zoo.recipe("gan_vae"), vae_file)):
        default = recipe.evaluate_file(path, profile="tiny")
        same = recipe.evaluate_file(path, profile="tiny", first_seed=0)
        other = recipe.evaluate_file(path, profile="tiny", first_seed=100)
        assert [r["ratio"] for r in default["rows"]] == [r["ratio"] for r in same["rows"]]
        assert [r["ratio"] for r in default["rows"]] != [r["ratio"] for r in other["rows"]], path.name
        assert all(np.isfinite(r["ratio"]) and r["ratio"] > 0 for r in other["rows"])


def test_a_model_that_leads_on_both_seed_sets_replaces_a_worse_bundled_copy(bundle, tmp_path, capsys):
    """The bundled GAN is garbled (noise on every weight), the training's is not: it leads on the deciding seeds
    and on the held-out ones, replaces the copy, and its entry records both scores."""
    import shutil

    models = tmp_path / "models"
    shutil.copytree(bundle, models)
    bundled = models / "texture_gan" / "materials.safetensors"
    _write_garbled(bundled, bundled, seed=1)
    garbled = bundled.read_bytes()
    args = ["--models", str(models), "--profile", "tiny", "--only", "gan",
            "--gan", str(models / "training" / "materials_gan.safetensors")]
    assert ship_materials.main(args) == 0
    out = capsys.readouterr().out
    assert "the lead holds on the held-out seeds" in out, out
    assert bundled.read_bytes() != garbled
    entry = next(m for m in json.loads((models / "manifest.json").read_text())["models"] if m["name"] == "materials")
    quality = entry["quality"]
    assert np.isfinite(quality["held_out_score"]) and quality["held_out_score"] > 0
    assert quality["held_out_score"] != quality["score"]


def test_remeasure_rewrites_the_bundled_figures_and_leaves_the_files(bundle, tmp_path, capsys):
    """After a change to the evaluation: --remeasure measures the bundled copies again (deciding and held-out
    seeds) and rewrites their manifest figures; the model files stay byte for byte, the other entries as they were."""
    import shutil

    models = tmp_path / "models"
    shutil.copytree(bundle, models)
    manifest_path = models / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for entry in manifest["models"]:
        if entry["name"] in ("materials", "materials_vae"):
            entry["quality"] = {"score": 99.0, "rows": []}
            entry["quality_measured_with"] = "an older evaluation"
    manifest_path.write_text(json.dumps(manifest))
    files = {rel: (models / rel).read_bytes() for rel in ("texture_gan/materials.safetensors",
                                                          "texture_vae/materials.safetensors")}
    others = [m for m in manifest["models"] if m["name"] not in ("materials", "materials_vae")]
    assert ship_materials.main(["--models", str(models), "--profile", "tiny", "--remeasure"]) == 0
    after = json.loads(manifest_path.read_text())["models"]
    for key, name, rel in (("gan", "materials", "texture_gan/materials.safetensors"),
                           ("gan_vae", "materials_vae", "texture_vae/materials.safetensors")):
        entry = next(m for m in after if m["name"] == name)
        expected = zoo.recipe(key).evaluate_file(models / rel, profile="tiny", seeds=1)
        assert entry["quality"]["score"] == round(expected["score"], 3)
        assert len(entry["quality"]["rows"]) == len(expected["rows"]) > 0
        assert np.isfinite(entry["quality"]["held_out_score"])
        assert "own crops" in entry["quality_measured_with"]
        assert (models / rel).read_bytes() == files[rel]
    assert [m for m in after if m["name"] not in ("materials", "materials_vae")] == others
    with pytest.raises(KeyError, match="ship one first"):
        ship_materials.remeasure("gan", models, {"models": others})


def test_a_continued_training_keeps_the_machines_it_ran_on(tmp_path):
    """A GPU slot's segment stays in a training's record after the CPU continues it (the bundled entry copies
    this); a training with fewer steps than the record (a fresh start) lists only its own machine."""
    from tools.zoo._common import machines_so_far

    manifest = tmp_path / "manifest.json"
    gpu, cpu = "cuda (NVIDIA H200)", "cpu (x86_64, Linux)"
    manifest.write_text(json.dumps({"training": [{"name": "vae", "steps": 100, "trained_on": [cpu, gpu]},
                                                 {"name": "gan", "steps": 50, "trained_on": cpu}]}))
    assert machines_so_far(manifest, "vae", 120, cpu) == [cpu, gpu]
    assert machines_so_far(manifest, "gan", 60, gpu) == [cpu, gpu]
    assert machines_so_far(manifest, "gan", 60, cpu) == cpu
    assert machines_so_far(manifest, "vae", 80, cpu) == cpu  # started over
    assert machines_so_far(manifest, "new", 10, cpu) == cpu
