"""Arbitrary style from any image by optimisation (Gatys et al. 2016).

The output pixels are optimised with Adam, starting from the content image,
so that the feature network's style statistics (Gram matrices or sliced
Wasserstein distributions) match the style image while content features stay
close to the frame's. Slow (seconds to minutes) but needs no training.
"""

from __future__ import annotations

import numpy as np
import torch

from ..common.device import pick_device
from ..common.images import resize_rgb, to_tensor, from_tensor
from ..common.jobs import CancelToken, ProgressCallback, check_cancel, report
from .features import build_feature_net
from .inputs import ImageLike, check_strength, finish, prepare, unchanged
from .losses import (StyleTarget, apply_color_preservation, content_loss, match_color_histogram,
                     normalize_preserve_color, total_variation)

DEFAULT_STYLE_WEIGHT = 5.0
TV_WEIGHT = 0.02


def fit_max_side(rgb: np.ndarray, max_side: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1.0:
        return rgb
    return np.clip(resize_rgb(rgb, max(8, round(w * scale)), max(8, round(h * scale))), 0.0, 1.0)


def stylize_optimize(content: ImageLike, style: ImageLike, *, steps: int = 200, content_weight: float = 1.0,
                     style_weight: float = DEFAULT_STYLE_WEIGHT, strength: float = 1.0,
                     preserve_color: bool | str = False, style_loss: str = "gram", max_side: int = 512,
                     seed: int = 0, device=None, vgg19_weights: str | None = None,
                     progress: ProgressCallback | None = None, cancel: CancelToken | None = None,
                     learning_rate: float = 0.02) -> ImageLike:
    """Stylize ``content`` in the manner of ``style``; returns the same type as ``content``.

    ``preserve_color``: False, True/"luminance" (transfer luminance only, keep
    the frame's colours) or "histogram" (recolour the style image to the
    frame's palette first). The optimisation runs at ``max_side`` pixels on the
    longer side; larger frames get the result resized back up.
    """
    strength = check_strength(strength)
    prep = prepare(content, "content image")
    style_prep = prepare(style, "style image")
    if strength == 0:
        return unchanged(prep)
    if steps < 1:
        raise ValueError("steps must be at least 1")
    if max_side < 16:
        raise ValueError("max_side must be at least 16 pixels")
    mode = normalize_preserve_color(preserve_color)
    dev = pick_device(device)

    content_small = fit_max_side(prep.srgb, max_side)
    style_small = fit_max_side(style_prep.srgb, max_side)
    if mode == "histogram":
        style_small = match_color_histogram(style_small, content_small)

    net = build_feature_net(vgg19_weights=vgg19_weights, device=dev)
    with torch.no_grad():
        style_feats, _ = net(to_tensor(style_small).to(dev))
        _, content_target = net(to_tensor(content_small).to(dev))
    target = StyleTarget(style_feats, style_loss)
    gen = torch.Generator().manual_seed(int(seed))
    x0 = to_tensor(content_small).to(dev)
    x = (x0 + 0.02 * torch.randn(x0.shape, generator=gen).to(dev)).clamp(0, 1).requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=learning_rate)

    for step in range(1, steps + 1):
        check_cancel(cancel)
        optimizer.zero_grad(set_to_none=True)
        s_feats, c_feat = net(x)
        l_style = target.loss(s_feats, gen)
        l_content = content_loss(c_feat, content_target)
        loss = style_weight * l_style + content_weight * l_content + TV_WEIGHT * total_variation(x)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            x.clamp_(0.0, 1.0)
        if progress is not None and (step % 10 == 0 or step == steps):
            preview = from_tensor(x) if step == steps or step % 50 == 0 else None
            report(progress, step, steps, "optimising", {"style": float(l_style.detach()), "content": float(l_content.detach())},
                   preview)

    result = from_tensor(x)
    h, w = prep.shape
    if result.shape[:2] != (h, w):
        result = np.clip(resize_rgb(result, w, h), 0.0, 1.0)
    result = apply_color_preservation(result, prep.srgb, mode)
    return finish(prep, result, strength)
