"""Any Painting (Fast)'s knobs: the panel's Refine Steps and Gain Limit reach the AdaIN job, and refining changes the
picture toward the painting. A tiny random decoder stands in for the bundled one (this build may ship none)."""

from __future__ import annotations

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")


@pytest.fixture(scope="module")
def tiny_decoder(tmp_path_factory):
    import torch

    from core.common.checkpoints import save_checkpoint
    from core.style.adain import MODEL_KIND, AdaINDecoder, DecoderConfig
    torch.manual_seed(3)
    decoder = AdaINDecoder(DecoderConfig((16, 16, 8), (0, 0, 0)))  # the core tests' tiny decoder
    path = tmp_path_factory.mktemp("adain") / "tiny_adain.safetensors"
    save_checkpoint(path, decoder.state_dict(), {"name": "tiny", "decoder": decoder.config.as_dict()}, MODEL_KIND)
    return str(path)


def _stylize_fast(helpers, content, painting, decoder, **overrides):
    """Run Any Painting (Fast) through the operator; (the submitted job, the new image's RGB)."""
    from blender_addon import job_queue
    before = set(bpy.data.images.keys())
    assert bpy.ops.neural.stylize_image(source="IMAGE", image=content.name, method="ADAIN",
                                        style_image=painting.name, decoder=decoder, **overrides) == {"FINISHED"}
    (name,) = set(bpy.data.images.keys()) - before
    job = list(job_queue.manager().jobs.values())[-1]
    assert job.kind == "style.stylize_adain" and job.state == "done", (job.kind, job.state, job.error)
    return job, helpers.pixels(bpy.data.images[name])[..., :3].copy()


def test_refine_steps_from_the_panel_reach_the_job_and_bring_the_result_toward_the_painting(addon, helpers,
                                                                                           tiny_decoder):
    from core.common.quality import style_distance
    settings = bpy.context.scene.neural_style
    content = helpers.image("refine content", "stones", 48)
    painting = helpers.image("refine painting", "rust", 64, seed=2)

    settings.adain_refine_steps = 0  # decoder only: the job gets no refinement
    job, one_pass = _stylize_fast(helpers, content, painting, tiny_decoder)
    assert job.params.get("refine_steps", 0) == 0
    assert job.params["model"] == tiny_decoder

    settings.adain_refine_steps = 5  # the panel's setting, the operator leaves it alone
    job, refined = _stylize_fast(helpers, content, painting, tiny_decoder)
    assert job.params["refine_steps"] == 5
    assert refined.shape == one_pass.shape == (48, 48, 3)
    # Measured in the core with decoder seeds 3, 4, 5 (same images, 5 steps): mean change 0.14-0.24, style
    # distance 49 -> 7.0, 94 -> 2.6, 128 -> 5.8 (refined/one-pass 0.04-0.14): wide margins below.
    assert np.abs(refined - one_pass).mean() > 0.03
    # refining optimises toward the painting's statistics from the one-pass result
    painting_rgb = helpers.pixels(painting)[..., :3]
    assert style_distance(refined, painting_rgb) < 0.5 * style_distance(one_pass, painting_rgb)

    # an operator value (scripts, the redo panel) overrides the panel's
    job, _ = _stylize_fast(helpers, content, painting, tiny_decoder, refine_steps=2)
    assert job.params["refine_steps"] == 2
    settings.adain_refine_steps = 0


def test_gain_limit_from_the_panel_reaches_the_job(addon, helpers, tiny_decoder):
    from core.style.adain import DEFAULT_MAX_GAIN
    settings = bpy.context.scene.neural_style
    content = helpers.image("gain content", "stones", 32)
    painting = helpers.image("gain painting", "rust", 48, seed=2)
    assert settings.adain_max_gain == pytest.approx(DEFAULT_MAX_GAIN)  # the panel starts at the core's default
    job, capped = _stylize_fast(helpers, content, painting, tiny_decoder)
    assert job.params["max_gain"] == pytest.approx(DEFAULT_MAX_GAIN)
    settings.adain_max_gain = 100.0  # in effect no limit: another picture
    job, free = _stylize_fast(helpers, content, painting, tiny_decoder)
    assert job.params["max_gain"] == pytest.approx(100.0)
    assert np.abs(free - capped).max() > 0.01
    job, _ = _stylize_fast(helpers, content, painting, tiny_decoder, max_gain=2.0)  # the operator's value wins
    assert job.params["max_gain"] == pytest.approx(2.0)
    settings.adain_max_gain = DEFAULT_MAX_GAIN
