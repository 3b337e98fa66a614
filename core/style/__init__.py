"""Neural style for render outputs: optimisation, fast feed-forward models, tiles, animation.

Public API (used by the Blender add-on worker and build.py):

* ``stylize_optimize(content, style, ...)``: any style image, by optimisation.
* ``StyleTransferConfig``, ``train_style_model(style, frames, out_path, steps, ...)``.
* ``StyleModel`` / ``load_style_model(path)``; ``StyleModel.stylize(image, strength, tile_size)``.
* ``stylize_sequence(model, frames, flows, ...)``: temporally consistent animation.
* ``flicker(frames, flows)``: warping error between consecutive frames.
* ``flow_from_blender_vector(vector, ...)``: Blender Vector pass -> this package's flow.

Flow convention (see ``temporal.py``): ``flow[i]`` for frame ``i`` is an
HxWx2 float array in pixels, (dx, dy) with x to the right and y down the
array's rows, pointing from each pixel of frame ``i`` to where that surface
point was in frame ``i - 1``: ``previous(x + dx, y + dy) ~ current(x, y)``.
"""

from .apply import StyleModel, load_style_model
from .features import load_vgg19
from .optimize import stylize_optimize
from .temporal import flicker, flow_from_blender_vector, stylize_sequence, warp
from .train import StyleTransferConfig, train_style_model

__all__ = ["stylize_optimize", "StyleTransferConfig", "train_style_model", "StyleModel", "load_style_model",
           "stylize_sequence", "flicker", "flow_from_blender_vector", "warp", "load_vgg19"]
