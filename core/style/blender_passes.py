"""Read Blender multilayer EXR renders: the Combined colour and the Vector pass as a flow.

Blender writes one multilayer EXR per frame when the output format is
"OpenEXR MultiLayer"; channels are named ``<ViewLayer>.<Pass>.<Channel>``
(``ViewLayer.Combined.R``, ``ViewLayer.Vector.X`` ...), one part per pass in
Blender 5, a single part in older versions. The Vector pass is converted with
``flow_from_blender_vector`` (see ``temporal.py`` for the measured convention),
so animations rendered this way get exact motion instead of the global-shift
estimate.
"""

from __future__ import annotations

import os
from collections import deque
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from ..common.images import DEFAULT_MAX_PIXELS, ImageData, ImageError, image_from_array, load_image, read_exr_channels
from .temporal import flow_from_blender_vector


def _layer_with(channels: dict, pass_name: str) -> list[str]:
    """View-layer prefixes (in file order) that carry ``pass_name`` with R, G, B (or X, Y)."""
    need = ("R", "G", "B") if pass_name == "Combined" else ("X", "Y")
    layers = []
    for name in channels:
        parts = name.rsplit(".", 2)
        if len(parts) == 3 and parts[1] == pass_name and parts[2] == need[0]:
            if all(f"{parts[0]}.{pass_name}.{c}" in channels for c in need) and parts[0] not in layers:
                layers.append(parts[0])
    return layers


def is_multilayer_render(path: str | os.PathLike) -> bool:
    """True for an EXR whose channels name a Combined pass (cheap to call on any file)."""
    p = Path(path)
    if p.suffix.lower() != ".exr":
        return False
    try:
        import OpenEXR
    except ImportError as exc:
        raise ImageError(f"{p.name}: reading EXR frames needs the 'OpenEXR' Python package; install it with the "
                         "add-on's 'Install Dependencies' button or 'pip install OpenEXR', or render to PNG") from exc
    try:
        with OpenEXR.File(str(p), header_only=True) as exr:
            names = [n for part in exr.parts for n in part.header.get("channels", [])]
    except Exception:
        return False
    names = [getattr(n, "name", n) for n in names]
    return any(str(n).endswith(".Combined.R") for n in names)


def load_render_passes(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS
                       ) -> tuple[ImageData, np.ndarray | None]:
    """Blender multilayer EXR -> (linear ImageData of the Combined pass, HxWx2 flow to the previous frame or None).

    The flow is None when the render has no Vector pass. Raises ImageError when
    OpenEXR is missing, the file is unreadable or it has no Combined pass.
    """
    p = Path(path)
    channels, header = read_exr_channels(p)
    layers = _layer_with(channels, "Combined")
    if not layers:
        raise ImageError(f"{p.name} has no Combined pass: render with the 'OpenEXR MultiLayer' output format "
                         "(or give an ordinary image file)")
    vector_layers = _layer_with(channels, "Vector")
    layer = next((name for name in layers if name in vector_layers), layers[0])
    names = [f"{layer}.Combined.{c}" for c in "RGB"]
    if f"{layer}.Combined.A" in channels:
        names.append(f"{layer}.Combined.A")
    rgba = np.stack([np.asarray(channels[n], np.float32) for n in names], axis=-1)
    image = image_from_array(rgba, "linear", p.name, max_pixels)
    image.source = str(p)
    flow = None
    if layer in vector_layers:
        vector = np.stack([np.asarray(channels[f"{layer}.Vector.{c}"], np.float32) for c in "XY"], axis=-1)
        if vector.shape[:2] == rgba.shape[:2] and np.isfinite(vector).all():
            flow = flow_from_blender_vector(vector, top_down=True)  # EXR rows are stored top row first
    return image, flow


def _frame_number(header: dict) -> int | None:
    value = header.get("Frame")  # Blender stores the frame number as a string attribute
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def frames_with_flows(paths: Sequence[str | os.PathLike], use_vectors: bool = True,
                      warn: Callable[[str], None] | None = None
                      ) -> tuple[Iterator[ImageData], Iterator[np.ndarray | None]]:
    """Lazy (frames, flows) iterators for ``stylize_sequence`` from frame files.

    Multilayer EXR renders give their Combined pass and, with ``use_vectors``,
    their Vector pass as the flow; any other file gives ``load_image`` and no
    flow (so the motion is estimated). The flows iterator must be consumed in
    step with the frames, as ``stylize_sequence`` does. ``warn`` receives one
    message when vectors could not be used (missing pass, gaps in frame numbers).
    """
    pending: deque = deque()
    warned: set[str] = set()

    def say(key: str, message: str) -> None:
        if warn is not None and key not in warned:
            warned.add(key)
            warn(message)

    def frames() -> Iterator[ImageData]:
        previous_number = None
        for index, path in enumerate(paths):
            p = Path(path)
            flow = None
            if p.suffix.lower() == ".exr" and is_multilayer_render(p):
                image, flow = load_render_passes(p)
                number = _frame_number(_read_header(p))
                if flow is None and use_vectors and index > 0:
                    say("no_vector", f"{p.name} has no Vector pass: motion is estimated (enable the Vector pass "
                                     "in View Layer Properties for flicker-free results)")
                if flow is not None and index > 0 and None not in (number, previous_number) \
                        and number != previous_number + 1:
                    say("gap", f"frames {previous_number} and {number} are not consecutive: their Vector pass "
                               "describes one frame of motion, so motion is estimated there instead")
                    flow = None
                previous_number = number
                if not use_vectors:
                    flow = None
            else:
                image = load_image(p)
                previous_number = None
            pending.append(flow)
            yield image

    def flows() -> Iterator[np.ndarray | None]:
        while True:
            yield pending.popleft() if pending else None

    return frames(), flows()


def _read_header(path: Path) -> dict:
    try:
        import OpenEXR
        with OpenEXR.File(str(path), header_only=True) as exr:
            return dict(exr.parts[0].header)
    except Exception:
        return {}
