"""Arbitrary style from any image by optimisation (Gatys et al. 2016), coarse to fine.

The output pixels are optimised so that the feature network's style
statistics (Gram matrices, or sliced Wasserstein distributions) match the
painting while content features stay close to the frame's. The feature
network is the shared ImageNet VGG19 (``core.common.perception``): style at
relu1_1..relu5_1, content at relu4_2.

Coarse to fine (as in Gatys et al. 2017, "Controlling perceptual factors"):
the frame is first stylized at ``start_side`` pixels on its longer side, then
the result is upsampled and refined at twice the size, and so on up to the
working size, so large renders get painted structure from the coarse pass and
crisp strokes from the fine ones at a fraction of the cost of optimising at
full size from the start. Each scale runs L-BFGS, which converges in tens of
iterations where Adam needs hundreds.

``init`` warm-starts the optimisation (animation: the previous stylized frame
warped by the motion), so consecutive frames stay consistent.
"""

from __future__ import annotations

import numpy as np
import torch

from ..common.device import loss_network_autocast, pick_device
from ..common.images import resize_rgb, to_tensor, from_tensor
from ..common.jobs import CancelToken, ProgressCallback, check_cancel, report
from .features import build_feature_net
from .inputs import ImageLike, check_strength, finish, prepare, unchanged
from .losses import (StyleTarget, apply_color_preservation, content_loss, match_color_histogram,
                     normalize_preserve_color, total_variation)

# Measured at 512 px on a photo and a held-out render with 4 paintings (2-core CPU, issue #9): 50 cut the
# style distance 97-98% but repainted the frame (relu4_2 content distance 1.1 on the photo, 2.4 on the
# render, target <= 1.0); 3 keeps it at 0.18-0.83 with the painting's strokes still plainly visible
# (style distance cut 79-93%, 88% on average).
DEFAULT_STYLE_WEIGHT = 3.0
DEFAULT_STEPS = 40  # L-BFGS steps at the coarsest scale (default_refine_steps at each finer one)
TV_WEIGHT = 1.0
DEFAULT_START_SIDE = 256
DEFAULT_MAX_SIDE = 1024  # working size cap; larger frames are refined up to it, then resized back


def fit_max_side(rgb: np.ndarray, max_side: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1.0:
        return rgb
    return np.clip(resize_rgb(rgb, max(8, round(w * scale)), max(8, round(h * scale))), 0.0, 1.0)


def default_refine_steps(steps: int) -> int:
    """Steps at each finer scale: a third of the coarse ones (a finer step costs 4-5x more), at least 10."""
    return max(10, steps // 3)


def scale_sides(full_side: int, start_side: int = DEFAULT_START_SIDE) -> list[int]:
    """Longer sides of the coarse-to-fine pyramid: start, 2x start, ..., ending exactly at ``full_side``."""
    if full_side <= start_side * 1.25:
        return [full_side]
    sides = [start_side]
    while sides[-1] * 2 < full_side * 0.8:
        sides.append(sides[-1] * 2)
    return sides + [full_side]


def stylize_optimize(content: ImageLike, style: ImageLike, *, steps: int = DEFAULT_STEPS, refine_steps: int | None = None,
                     content_weight: float = 1.0, style_weight: float = DEFAULT_STYLE_WEIGHT,
                     strength: float = 1.0, preserve_color: bool | str = False, style_loss: str = "gram",
                     max_side: int | None = DEFAULT_MAX_SIDE, start_side: int = DEFAULT_START_SIDE,
                     style_scale: float = 1.0, seed: int = 0, device=None, vgg19_weights: str | None = None,
                     init: np.ndarray | None = None, progress: ProgressCallback | None = None,
                     cancel: CancelToken | None = None) -> ImageLike:
    """Stylize ``content`` in the manner of ``style``; returns the same type as ``content``.

    ``steps``: L-BFGS iterations at the coarsest scale; every finer scale gets
    ``refine_steps`` (default a third of ``steps``, at least 10). ``max_side``
    caps the working size (None: the frame's own size); frames above it are
    stylized at it and resized back. ``style_scale`` sets the painting's size
    relative to the frame at every scale (larger: bigger strokes).
    ``preserve_color``: False, True/"luminance" (transfer luminance only, keep
    the frame's colours) or "histogram" (recolour the style image to the
    frame's palette first). ``init``: an sRGB HxWx3 image to start from
    instead of the frame (animation warm start).
    """
    strength = check_strength(strength)
    prep = prepare(content, "content image")
    style_prep = prepare(style, "style image")
    if strength == 0:
        return unchanged(prep)
    if steps < 1:
        raise ValueError("steps must be at least 1")
    if max_side is not None and max_side < 16:
        raise ValueError("max_side must be at least 16 pixels")
    if not 16 <= start_side <= 8192:
        raise ValueError("start_side must be between 16 and 8192 pixels")
    if not 0.1 <= style_scale <= 4.0:
        raise ValueError("style_scale must be between 0.1 and 4")
    refine_steps = default_refine_steps(steps) if refine_steps is None else int(refine_steps)
    if refine_steps < 1:
        raise ValueError("refine_steps must be at least 1")
    mode = normalize_preserve_color(preserve_color)
    dev = pick_device(device)
    h, w = prep.shape
    full_side = max(h, w) if max_side is None else min(max(h, w), int(max_side))
    sides = scale_sides(full_side, start_side)
    if init is not None:
        init = np.asarray(init, dtype=np.float32)[..., :3]
        if init.shape[:2] != (h, w) or not np.isfinite(init).all():
            raise ValueError(f"init must be a finite {h}x{w} image like the frame, got shape {init.shape}")
        sides = sides[-1:]  # a warm start is already painted: refine at the working size only

    vgg = build_feature_net(vgg19_weights=vgg19_weights, device=dev)

    def net(image: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        # bf16 where the device computes it natively (``loss_network_autocast``); the losses in fp32. On an AVX512-BF16
        # core pair a 512 px frame took 0.62-0.66x the fp32 time, its style and content distances within 1-5 %.
        with loss_network_autocast(dev):
            style_feats, content_feat = vgg(image)
        return [f.float() for f in style_feats], content_feat.float()

    gen = torch.Generator().manual_seed(int(seed))
    total = (refine_steps if init is not None else steps) + refine_steps * (len(sides) - 1)
    done = 0
    x_prev: np.ndarray | None = None if init is None else init
    for level, side in enumerate(sides):
        content_s = fit_max_side(prep.srgb, side)
        style_s = fit_max_side(style_prep.srgb, max(16, round(max(content_s.shape[:2]) * style_scale)))
        if mode == "histogram":
            style_s = match_color_histogram(style_s, content_s)
        with torch.no_grad():
            style_feats, _ = net(to_tensor(style_s).to(dev))
            _, content_target = net(to_tensor(content_s).to(dev))
        target = StyleTarget(style_feats, style_loss)
        if x_prev is None:
            start = to_tensor(content_s)
            start = start + 0.02 * torch.randn(start.shape, generator=gen, device="cpu")  # seeded on the CPU
        else:
            start = to_tensor(np.clip(resize_rgb(x_prev, content_s.shape[1], content_s.shape[0]), 0, 1))
        x = start.clamp(0, 1).to(dev).requires_grad_(True)
        iterations = steps if (level == 0 and init is None) else refine_steps
        optimizer = torch.optim.LBFGS([x], lr=1.0, max_iter=1, history_size=20, line_search_fn=None)
        losses: dict[str, float] = {}

        def closure():
            optimizer.zero_grad(set_to_none=True)
            s_feats, c_feat = net(x)
            l_style = target.loss(s_feats, gen)
            l_content = content_loss(c_feat, content_target)
            loss = style_weight * l_style + content_weight * l_content + TV_WEIGHT * total_variation(x)
            loss.backward()
            losses["style"], losses["content"] = float(l_style.detach()), float(l_content.detach())
            return loss

        for it in range(1, iterations + 1):
            check_cancel(cancel)
            optimizer.step(closure)
            with torch.no_grad():
                x.clamp_(0.0, 1.0)
            done += 1
            last = it == iterations
            if progress is not None and (it % 5 == 0 or last):
                preview = from_tensor(x.detach()) if last else None
                report(progress, done, total, f"optimising at {side} px ({level + 1}/{len(sides)})",
                       dict(losses), preview)
        x_prev = from_tensor(x.detach())

    result = x_prev
    if result.shape[:2] != (h, w):
        result = np.clip(resize_rgb(result, w, h), 0.0, 1.0)
    result = apply_color_preservation(result, prep.srgb, mode)
    return finish(prep, result, strength)


class OptimizationStylizer:
    """Frame stylizer for animations (``temporal.stylize_sequence``): optimisation per frame.

    The first frame runs the full coarse-to-fine schedule; later frames start
    from the warm start (the previous result warped by the motion) and only
    refine at the working size, which keeps strokes in place and costs a
    fraction of a full optimisation.
    """

    def __init__(self, style: ImageLike, **options):
        self.style, self.options = style, dict(options)
        self.options.pop("init", None)
        self.options.pop("strength", None)  # blending by strength happens once, on the sequence's output

    def __call__(self, srgb: np.ndarray, warm: np.ndarray | None) -> np.ndarray:
        return np.asarray(stylize_optimize(srgb, self.style, init=warm, **self.options), dtype=np.float32)
