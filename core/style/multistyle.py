"""One feed-forward network for several paintings: conditional instance normalisation (Dumoulin et al. 2017).

The convolutions of ``TransformerNet`` are shared by every style; each style is
only a set of normalisation scales and shifts (one row per style in every
``ConditionalStatsNorm``). A *mix* (a weight per style, summing to one) picks
the row or blends the rows, so the panel can paint in one style or between
several, at the cost of one network. Training: ``multistyle_train``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn

from ..common.accelerate import GraphReplay, compile_in_place
from ..common.checkpoints import CheckpointError, build_checked, load_checkpoint, model_fields
from ..common.device import pick_device
from ..common.inference import rewrites_on_any_device
from ..common.images import from_tensor, to_tensor
from .apply import StyleModel
from .inputs import ImageLike, check_strength, finish, prepare, unchanged
from .palette import Palette, blend, match_palette, match_palette_on_device, palette_target
from .tiling import stylize_tiled
from .transformer import StatsNorm, TransformerConfig, TransformerNet

MODEL_KIND = "style_multi"
MAX_STYLES = 256


def default_multistyle_path() -> Path:
    """The bundled multi-style network (models/style/fast_styles.safetensors)."""
    return Path(__file__).resolve().parents[2] / "models" / "style" / "fast_styles.safetensors"


@dataclass
class MultiStyleConfig:
    base_channels: int = 16
    residual_blocks: int = 5
    styles: int = 8
    output: str = "logit"  # TransformerConfig.output; checkpoints without it were trained with "logit"
    upsample: str = "nearest"  # TransformerConfig.upsample; checkpoints without it upsample by nearest

    def as_dict(self) -> dict:
        out = asdict(self)
        if self.upsample == "nearest":  # the nets trained before the field keep their identity
            del out["upsample"]
        return out

    @classmethod
    def from_dict(cls, data: Mapping) -> "MultiStyleConfig":
        cfg = cls(int(data["base_channels"]), int(data["residual_blocks"]), int(data["styles"]),
                  str(data.get("output", "logit")), str(data.get("upsample", "nearest")))
        if not 1 <= cfg.styles <= MAX_STYLES:
            raise ValueError(f"styles must be 1..{MAX_STYLES}")
        return cfg


class ConditionalStatsNorm(StatsNorm):
    """``StatsNorm`` with one (scale, shift) row per style, blended by the network's current mix."""

    def __init__(self, channels: int, styles: int, eps: float = 1e-5):
        super().__init__(channels, eps)
        self.weight = nn.Parameter(torch.ones(styles, channels))
        self.bias = nn.Parameter(torch.zeros(styles, channels))
        self.mix: torch.Tensor | None = None  # N x styles (or 1 x styles), set by MultiStyleNet.forward

    def affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mix is None:
            raise RuntimeError("ConditionalStatsNorm: no style mix set (call MultiStyleNet with a mix)")
        mix = self.mix.to(self.weight.dtype)
        return (mix @ self.weight)[:, :, None, None], (mix @ self.bias)[:, :, None, None]


class MultiStyleNet(TransformerNet):
    """``forward(x, mix)``: sRGB [0, 1] -> stylized sRGB, ``mix`` N x styles (rows sum to one)."""

    def __init__(self, config: MultiStyleConfig | None = None):
        self.multi = config or MultiStyleConfig()
        super().__init__(TransformerConfig(self.multi.base_channels, self.multi.residual_blocks,
                                           self.multi.output, self.multi.upsample),
                         norm_layer=lambda channels: ConditionalStatsNorm(channels, self.multi.styles))

    def set_mix(self, mix: torch.Tensor) -> None:
        if mix.dim() != 2 or mix.shape[1] != self.multi.styles:
            raise ValueError(f"the style mix must be N x {self.multi.styles}, got {tuple(mix.shape)}")
        for norm in self.norms():
            norm.mix = mix

    def forward(self, x: torch.Tensor, mix: torch.Tensor | None = None, clamp: bool = True) -> torch.Tensor:
        if mix is not None:
            self.set_mix(mix)
        return super().forward(x, clamp)


def one_hot(indices: torch.Tensor, styles: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(indices.long(), styles).float()


class _MixedPass(nn.Module):
    """The network with a fixed mix, shaped like a ``TransformerNet`` for ``stylize_tiled``."""

    def __init__(self, net: MultiStyleNet, mix: torch.Tensor):
        super().__init__()
        self.net, self.mix = net, mix

    def set_norm_mode(self, mode: str) -> None:
        self.net.set_norm_mode(mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x, self.mix)


class MultiStyleModel:
    """The trained multi-style network with its style names; ``stylize(image, style or weights)``."""

    def __init__(self, net: MultiStyleNet, config: dict[str, Any], device: torch.device, half: bool | None = None):
        """``half``: run the network in fp16 (default: on CUDA only)."""
        # channels-last: ~13 % faster on a CPU at 1024x768 (measured, 1 thread), and the tensor cores' layout
        self.net = net.to(device, memory_format=torch.channels_last).eval().requires_grad_(False)
        self.config = config
        self.device = device
        # fp16 on CUDA, as the single-style nets (StyleModel): half the memory traffic of a frame; the norms'
        # statistics accumulate in fp32 (transformer.one_pass_statistics) and the palette match runs in fp32.
        self.half = device.type == "cuda" if half is None else bool(half)
        if self.half:
            self.net.half()
        self.styles: list[dict] = list(config.get("styles") or [])
        self.name = str(config.get("name") or "fast_styles")
        # The paintings' palettes, matched after the network (palette.py); older files have none.
        self.palettes: list[Palette] | None = palettes_of(config, len(self.styles))
        self.palette_strength = float(config.get("palette_strength", 1.0)) if self.palettes else 0.0
        # A style may set its own (``styles[i]["palette_strength"]``); a mix blends them by its weights.
        self.palette_strengths = style_palette_strengths(self.styles, self.palette_strength, self.palettes)
        # On CUDA a whole frame is host-bound (20.8 ms of launches for 8.4 ms of GPU work at 1080p fp16, the
        # second H200 run): from the second frame of one size on (an animation), the network is replayed from a
        # CUDA graph, the mix an input like the frame, so keyframed mixes share one graph.
        # The CPU's inference rewrites (fused_convs: the RGB tail by space to depth, each upsampling fused with
        # its convolution) compete with the plain layers there; the faster graph is kept.
        self.compiled = compile_in_place(self.net, device)
        self.replay = GraphReplay(self._network, alternatives={"rewritten": self._network_rewritten}) \
            if device.type == "cuda" else None

    def _network(self, x: torch.Tensor, mix: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        """The network's frame in float32; with ``target`` (``palette_target``) matched to that palette."""
        out = self.net(x, mix).float()
        return out if target is None else match_palette_on_device(out, target)

    def _network_rewritten(self, x: torch.Tensor, mix: torch.Tensor,
                           target: torch.Tensor | None = None) -> torch.Tensor:
        with rewrites_on_any_device():
            return self._network(x, mix, target)

    @classmethod
    def load(cls, path: str | os.PathLike, device=None) -> "MultiStyleModel":
        p = Path(path)
        tensors, config = load_checkpoint(p, expected_kind=MODEL_KIND)
        arch = config.get("transformer")
        if not isinstance(arch, dict):
            raise CheckpointError(f"{p.name}: its config lacks the network description ('transformer')")
        try:
            arch_config = MultiStyleConfig.from_dict(arch)
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{p.name}: invalid network settings in its config ({exc})") from exc
        styles = config.get("styles")
        if not isinstance(styles, list) or len(styles) != arch_config.styles or \
                not all(isinstance(s, dict) and isinstance(s.get("name"), str) for s in styles):
            raise CheckpointError(f"{p.name}: its config must name each of its {arch_config.styles} styles")
        net = build_checked(p.name, MODEL_KIND, arch, tensors, lambda: MultiStyleNet(arch_config))
        return cls(net, config, pick_device(device))

    @property
    def style_names(self) -> list[str]:
        return [s["name"] for s in self.styles]

    def mix_vector(self, style: str | Mapping[str, float] | Sequence[float]) -> torch.Tensor:
        """1 x styles weights from a style name, ``{name: weight}`` or a list of weights (normalised to sum 1)."""
        names = self.style_names
        weights = np.zeros(len(names), np.float64)
        if isinstance(style, str):
            if style not in names:
                raise ValueError(f"unknown style {style!r}; this model paints {', '.join(names)}")
            weights[names.index(style)] = 1.0
        elif isinstance(style, Mapping):
            for key, value in style.items():
                if key not in names:
                    raise ValueError(f"unknown style {key!r}; this model paints {', '.join(names)}")
                weights[names.index(key)] = float(value)
        else:
            values = [float(v) for v in style]
            if len(values) != len(names):
                raise ValueError(f"style weights need {len(names)} values ({', '.join(names)}), got {len(values)}")
            weights[:] = values
        if not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
            raise ValueError("style weights must be finite, not negative, and not all zero")
        return torch.from_numpy(weights / weights.sum()).float()[None].to(self.device)

    @torch.no_grad()
    def stylize_tensor(self, x: torch.Tensor, mix: torch.Tensor, tile_size: int | None = None,
                       cancel=None, palette_strength: float | None = None) -> torch.Tensor:
        """Nx3xHxW sRGB -> stylized, then matched to the mix's palette by ``palette_strength`` (default: the
        mix's, from each style's own; 0: the network's own colours). ``mix``: 1 x styles, or one row per image."""
        mix = mix.to(self.device)
        net = _MixedPass(self.net, mix)
        x = x.to(self.device, torch.float16 if self.half else torch.float32).contiguous(
            memory_format=torch.channels_last)
        fixed = None if palette_strength is None else check_strength(palette_strength)
        # Read before the frame is queued: on a GPU the read then waits for nothing.
        rows = mix.float().cpu().numpy().astype(np.float64) if self.palettes else None

        def strength(row: np.ndarray) -> float:
            return fixed if fixed is not None else float(np.dot(row, self.palette_strengths))

        if tile_size is not None:
            out = stylize_tiled(net, x, int(tile_size), cancel=cancel).float()
        elif self.replay is not None and all(n.mode == "instance" for n in self.net.norms()):
            if rows is not None and x.shape[0] == 1 and len(rows) == 1 and strength(rows[0]) > 0:
                # One frame: network and palette match in one graph (the match never reads back to the host)
                target = palette_target(blend(self.palettes, rows[0]), strength(rows[0])).to(self.device)
                return self.replay(x, mix, target)
            out = self.replay(x, mix)
        else:
            out = self._network(x, mix)
        if rows is None:
            return out
        if len(rows) == 1:
            return match_palette(out, blend(self.palettes, rows[0]), strength(rows[0]))
        return torch.cat([match_palette(out[i:i + 1], blend(self.palettes, rows[i]), strength(rows[i]))
                          for i in range(len(out))])

    def stylize(self, image: ImageLike, style: str | Mapping[str, float] | Sequence[float], strength: float = 1.0,
                tile_size: int | None = None, cancel=None, palette_strength: float | None = None) -> ImageLike:
        """Stylize one frame in ``style`` (a name, or weights over the styles); returns the input's type."""
        strength = check_strength(strength)
        mix = self.mix_vector(style)
        prep = prepare(image)
        if strength == 0:
            return unchanged(prep)
        out = from_tensor(self.stylize_tensor(to_tensor(prep.srgb), mix, tile_size, cancel, palette_strength))
        return finish(prep, np.clip(out, 0.0, 1.0), strength)

    def __repr__(self) -> str:
        return f"MultiStyleModel({self.name!r}, styles={self.style_names}, device={self.device})"


def palettes_of(config: Mapping, styles: int) -> list[Palette] | None:
    """The per-style palettes of a model config (``"palettes"``), or None when it has none."""
    raw = config.get("palettes")
    if raw is None:
        return None
    try:
        if len(raw) != styles:
            raise ValueError(f"{len(raw)} palettes for {styles} styles")
        return [Palette.from_dict(p) for p in raw]
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"invalid palettes in the model's config ({exc})") from exc


def style_palette_strengths(styles: Sequence[Mapping], default: float,
                            palettes: Sequence[Palette] | None) -> np.ndarray:
    """Each style's palette strength (its own ``palette_strength``, else ``default``); zeros without palettes."""
    if not palettes:
        return np.zeros(len(styles), np.float64)
    values = []
    for style in styles:
        value = style.get("palette_strength", default)
        try:
            values.append(check_strength(value))
        except (TypeError, ValueError):
            raise CheckpointError(f"style {style.get('name')!r}: its palette_strength must be a number between "
                                  f"0 and 1, not {value!r}") from None
    return np.asarray(values, np.float64)


def save_style_subset(source: str | os.PathLike, target: str | os.PathLike, names: Sequence[str],
                      half: bool = False) -> Path:
    """Write a multi-style file that paints only ``names`` (in that order), e.g. the styles that met the targets.

    The convolutions are shared, so the subset is the same network with only those rows of every conditional
    norm (and those palettes); each kept style paints exactly as before. ``half``: weights stored as float16.
    """
    from ..common.checkpoints import save_checkpoint

    tensors, config = load_checkpoint(source, expected_kind=MODEL_KIND)
    order = [s["name"] for s in config.get("styles") or []]
    missing = [n for n in names if n not in order]
    if not names or missing or len(set(names)) != len(names):
        raise ValueError(f"choose distinct styles of {', '.join(order)}; not {', '.join(missing) or 'none'}")
    rows = [order.index(n) for n in names]
    net = MultiStyleNet(MultiStyleConfig.from_dict(config["transformer"]))
    per_style = {f"{name}.{p}" for name, m in net.named_modules() if isinstance(m, ConditionalStatsNorm)
                 for p in ("weight", "bias")}
    kept = {k: v[rows].contiguous() if k in per_style else v for k, v in tensors.items()}
    if half:
        kept = {k: v.half() if v.dtype == torch.float32 else v for k, v in kept.items()}
    subset = model_fields(config)
    subset["transformer"] = {**config["transformer"], "styles": len(names)}
    subset["styles"] = [config["styles"][i] for i in rows]
    if config.get("palettes") is not None:
        subset["palettes"] = [config["palettes"][i] for i in rows]
    subset["subset_of"] = {"styles": order, "kept": list(names)}
    return save_checkpoint(target, kept, subset, MODEL_KIND)


def load_multistyle_model(path: str | os.PathLike, device=None) -> MultiStyleModel:
    return MultiStyleModel.load(path, device)


# --------------------------------------------------------------------------- one style (or mix) as a StyleModel

STYLE_SEPARATOR = "#"  # "fast_styles.safetensors#starry_night": one style of a multi-style file


def split_style_ref(path: str | os.PathLike) -> tuple[Path, str | None]:
    """``file.safetensors#style`` -> (file, style); a plain path -> (path, None)."""
    text = str(path)
    head, sep, tail = text.rpartition(STYLE_SEPARATOR)
    if sep and head.endswith(".safetensors") and tail and "/" not in tail and "\\" not in tail:
        return Path(head), tail
    return Path(text), None


def parse_style_weights(text: str) -> str | dict[str, float]:
    """``"starry_night"`` -> the name; ``"starry_night=0.7,wave=0.3"`` -> weights (for the CLI and jobs)."""
    text = text.strip()
    if "=" not in text:
        return text
    weights: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"style weights look like 'starry_night=0.7,wave=0.3', got {text!r}") from None
        if not sep or not name.strip():
            raise ValueError(f"style weights look like 'starry_night=0.7,wave=0.3', got {text!r}")
    return weights


class FixedMixStyleModel(StyleModel):
    """A multi-style network with one style or mix chosen: used wherever a ``StyleModel`` is (animations too)."""

    def __init__(self, model: MultiStyleModel, style: str | Mapping[str, float] | Sequence[float]):
        self.multi, self.mix = model, model.mix_vector(style)
        self.net, self.config, self.device = model.net, model.config, model.device
        self.half, self.preserve_color = model.half, None
        self.name = style if isinstance(style, str) else f"{model.name} mix"

    @torch.no_grad()
    def stylize_tensor(self, x: torch.Tensor, tile_size: int | None = None, cancel=None) -> torch.Tensor:
        return self.multi.stylize_tensor(x, self.mix, tile_size, cancel)


def load_fast_style(path: str | os.PathLike, device=None,
                    style: str | Mapping[str, float] | Sequence[float] | None = None, loader=None) -> StyleModel:
    """A fast style model from a file: a single-style net, or one style/mix of a multi-style one.

    The style comes from ``style``, else from a ``#name`` after the file name, else the file's first style.
    ``loader(load_function, file)`` may cache loaded files (the worker's model cache).
    """
    from ..common.checkpoints import read_checkpoint_config

    load = loader or (lambda function, file: function(file, device))
    file, named = split_style_ref(path)
    chosen = style if style is not None else named
    if read_checkpoint_config(file).get("kind") != MODEL_KIND:
        if chosen is not None:
            raise ValueError(f"{file.name} paints one style only; style weights need a multi-style model")
        return load(StyleModel.load, str(file))
    model = load(load_multistyle_model, str(file))
    return FixedMixStyleModel(model, chosen if chosen is not None else model.style_names[0])
