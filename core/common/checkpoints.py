"""Checkpoints: safetensors weights plus a JSON config, written atomically.

A model file ``NAME.safetensors`` carries its config (JSON) in the safetensors
header metadata, so one file is self-describing; a readable copy is written
beside it as ``NAME.json``. Nothing is ever unpickled.

Training state for resuming (optimizer moments, step, RNG states) goes into a
separate ``NAME.train.safetensors`` through ``save_training_state``: nested
dicts/lists are flattened, tensors into safetensors and everything else into
JSON metadata. Trainers write the pair with ``save_model_and_state`` (state
first) and check it with ``sync_model_with_state`` on resume, so the model never
stays out of step with its state after a kill.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from .images import atomic_write_bytes
from .jobs import short_repr

FORMAT_VERSION = 1
_MAGIC = "neural_textures"
# A safetensors header is JSON naming each tensor plus our config: kilobytes. A crafted
# length field must not make the reader allocate gigabytes before anything is checked.
MAX_HEADER_BYTES = 16 * 1024 * 1024

# Architecture values each family accepts from a file, checked before any module is built:
# (low, high) for a number, (low, high, max_entries) for a list. Far above any trained model,
# far below what a crafted config would need to exhaust memory or time.
ARCHITECTURE_LIMITS: dict[str, dict[str, tuple]] = {
    "texture_gan": {"local_dim": (1, 1024), "global_dim": (0, 1024), "periodic_dim": (0, 1024),
                    "g_channels": (1, 2048, 8), "d_channels": (1, 2048, 8)},
    "texture_vae": {"base_channels": (1, 512), "channel_mult": (1, 16, 6), "latent_channels": (1, 512),
                    "res_blocks": (0, 16)},
    "style_transfer": {"base_channels": (1, 512), "residual_blocks": (0, 32)},
    "style_multi": {"base_channels": (1, 512), "residual_blocks": (0, 32), "styles": (1, 256)},
}


# The one wording of every refusal of NaN/inf weights, whichever file they are found in.
NON_FINITE_WEIGHTS = "non-finite (NaN/inf) weights"


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, of the wrong kind or incompatible."""


def _atomic_save_tensors(tensors: dict[str, torch.Tensor], metadata: dict[str, str], path: Path) -> None:
    from safetensors.torch import save as st_save

    # clone().contiguous() so shared/strided storage (tied weights, views) serialises.
    blob = st_save({k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}, metadata=metadata)
    atomic_write_bytes(path, blob)


def _atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


# The keys ``save_checkpoint`` writes itself: a config read from a file and saved again drops them (the file is
# then stamped with this core's version, not the one that wrote it first).
FILE_KEYS = ("format", "format_version", "kind", "core_version")


def model_fields(config: dict[str, Any]) -> dict[str, Any]:
    """A file's config without the keys ``save_checkpoint`` writes itself: what to pass it to save the model again."""
    return {k: v for k, v in config.items() if k not in FILE_KEYS}


def save_checkpoint(path: str | os.PathLike, tensors: dict[str, torch.Tensor], config: dict[str, Any],
                    kind: str) -> Path:
    """Save model weights + config. ``kind`` names the model ("texture_gan", ...)."""
    from .. import __version__

    p = Path(path)
    if p.suffix != ".safetensors":
        raise CheckpointError(f"model files must end in .safetensors, got {p.name}")
    full_config = {"format": _MAGIC, "format_version": FORMAT_VERSION, "kind": kind,
                   "core_version": __version__, **config}
    text = json.dumps(full_config, indent=2, sort_keys=True, default=_json_default)
    _atomic_save_tensors(tensors, {"format": _MAGIC, "kind": kind, "config": text}, p)
    _atomic_write_text(p.with_suffix(".json"), text + "\n")
    return p


def read_checkpoint_config(path: str | os.PathLike) -> dict[str, Any]:
    """Only the config, without loading any weights (for model lists and UIs)."""
    p = Path(path)
    _check_file(p)
    from safetensors import safe_open

    try:
        with safe_open(str(p), framework="pt") as fh:
            metadata = fh.metadata() or {}
    except Exception as exc:
        raise CheckpointError(f"{p.name} is not a valid safetensors file (corrupt or truncated): {exc}") from exc
    return _parse_metadata(p, metadata)


def load_checkpoint(path: str | os.PathLike, expected_kind: str | None = None,
                    device: torch.device | str = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load weights and config; raise CheckpointError with a clear reason on any problem."""
    p = Path(path)
    _check_file(p)
    from safetensors.torch import load_file

    config = read_checkpoint_config(p)
    if expected_kind is not None and config.get("kind") != expected_kind:
        raise CheckpointError(f"{p.name} is a {config.get('kind')!r} model, but a {expected_kind!r} model is needed")
    try:
        tensors = load_file(str(p), device=str(device))
    except Exception as exc:
        raise CheckpointError(f"{p.name}: weights could not be read (corrupt or truncated): {exc}") from exc
    return tensors, config


def load_state_into(module: torch.nn.Module, tensors: dict[str, torch.Tensor], name: str) -> None:
    """``load_state_dict`` that reports shape/key mismatches as CheckpointError."""
    try:
        module.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"{name}: weights do not match the architecture in its config ({first})") from exc


def check_writable_folder(path: str | os.PathLike) -> None:
    """Fail now, naming the folder, when no file can be written beside ``path`` (read-only, no rights),
    rather than at the first checkpoint after the steps ran."""
    folder = Path(path).absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # a folder still to be made: its nearest existing parent must be writable
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test.", suffix=".tmp", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise CheckpointError(f"cannot write into {folder}: {exc.strerror or exc}") from exc


def check_architecture(name: str, kind: str, arch: Any) -> None:
    """Every architecture value of ``kind`` present in ``arch`` is an int within its limits."""
    if not isinstance(arch, dict):
        raise CheckpointError(f"{name}: its config has no architecture description")
    for field_name, limits in ARCHITECTURE_LIMITS.get(kind, {}).items():
        if field_name not in arch:
            continue
        value = arch[field_name]
        low, high = limits[:2]
        if len(limits) == 3:
            if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= limits[2]:
                raise CheckpointError(f"{name}: architecture value {field_name!r} must be a list of 1 to "
                                      f"{limits[2]} entries")
            entries = value
        else:
            entries = [value]
        for entry in entries:
            if isinstance(entry, bool) or not isinstance(entry, int) or not low <= entry <= high:
                raise CheckpointError(f"{name}: architecture value {field_name!r} = {short_repr(value)} is out of "
                                      f"range (whole numbers {low} to {high})")


# Training values a config may carry, beyond the architecture limits of its family.
LEARNING_RATE_FIELDS = ("lr", "lr_g", "lr_d", "learning_rate")
# Sizes that set how much memory one training step takes.
TRAINING_SIZE_MAX = {"crop_size": 4096, "image_size": 4096, "batch_size": 256, "preview_size": 4096,
                     "style_size": 4096, "max_exemplar_side": 16384, "generated_frames": 10000, "stats_scales": 12}
LEARNING_RATE_MAX = 1.0
CONFIG_NUMBER_MAX = 1e12


def check_config_values(name: str, kind: str, config: dict) -> None:
    """A config from a user (a job, ``--config``): architecture limits, finite numbers of sane size
    and learning rates in (0, LEARNING_RATE_MAX] (larger ones only train to noise)."""
    check_architecture(name, kind, config)
    for key, item in config.items():
        for number in (item if isinstance(item, (list, tuple)) else [item]):
            if isinstance(number, bool) or not isinstance(number, (int, float)):
                continue
            if not math.isfinite(number) or abs(number) > CONFIG_NUMBER_MAX:
                raise CheckpointError(f"{name}: {key!r} = {number!r} is out of range")
            if key in TRAINING_SIZE_MAX and not 0 <= number <= TRAINING_SIZE_MAX[key]:
                raise CheckpointError(f"{name}: {key!r} = {number!r} is out of range (0 to {TRAINING_SIZE_MAX[key]})")
            if key in LEARNING_RATE_FIELDS and not 0 < number <= LEARNING_RATE_MAX:
                raise CheckpointError(f"{name}: {key!r} = {number!r}; a learning rate must be in (0, "
                                      f"{LEARNING_RATE_MAX}]")


def build_checked(name: str, kind: str, arch: dict, tensors: dict[str, torch.Tensor],
                  build) -> torch.nn.Module:
    """The one checkpoint validator of every family: ``build()`` the module and load ``tensors``.

    In order, so nothing big is allocated before it is known to be right: architecture
    values within ``ARCHITECTURE_LIMITS``; the module built on the ``meta`` device (no
    memory) and its parameter names and shapes compared with the file's tensors; every
    weight finite; only then the real module is built and loaded.
    """
    check_architecture(name, kind, arch)
    with torch.device("meta"):
        skeleton = build()
    expected = {key: tuple(t.shape) for key, t in skeleton.state_dict().items()}
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{name}: weights do not match the architecture in its config "
                              f"(missing {short_repr(missing)}, unexpected {short_repr(unexpected)})")
    for key, shape in expected.items():
        if tuple(tensors[key].shape) != shape:
            raise CheckpointError(f"{name}: weights do not match the architecture in its config "
                                  f"({key} has shape {tuple(tensors[key].shape)}, the config needs {shape})")
    check_finite(name, tensors)
    module = build()
    load_state_into(module, tensors, name)
    return module


def load_checked_model(path: str | os.PathLike, kind: str, section: str, what: str, make_config, make_module,
                       **load_options) -> tuple[torch.nn.Module, dict]:
    """A family's checkpoint as (module, config): the file read, the architecture in ``config[section]``
    made into the family's config by ``make_config`` (``what`` names it in messages), then
    ``build_checked`` with ``make_module(arch_config)``."""
    p = Path(path)
    tensors, config = load_checkpoint(p, expected_kind=kind, **load_options)
    arch = config.get(section)
    if not isinstance(arch, dict):
        raise CheckpointError(f"{p.name}: its config lacks the {what} description ({section!r})")
    try:
        arch_config = make_config(arch)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{p.name}: invalid {what} settings in its config ({exc})") from exc
    return build_checked(p.name, kind, arch, tensors, lambda: make_module(arch_config)), config


def check_finite(name: str, tensors: dict[str, torch.Tensor]) -> None:
    for key, t in tensors.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise CheckpointError(f"{name}: {NON_FINITE_WEIGHTS} in {key}; the file is damaged or its "
                                  "training diverged")


def _check_file(p: Path) -> None:
    if not p.exists():
        raise CheckpointError(f"model file not found: {p}")
    if p.is_dir():
        raise CheckpointError(f"{p} is a folder, not a model file")
    with open(p, "rb") as fh:
        head = fh.read(16)
    if head[:2] == b"\x80\x02" or head[:4] == b"PK\x03\x04":
        raise CheckpointError(f"{p.name} looks like a pickled PyTorch checkpoint; only .safetensors model "
                              "files are accepted (pickles can run arbitrary code)")
    if len(head) < 8:
        raise CheckpointError(f"{p.name} is too short to be a safetensors file (corrupt or truncated)")
    header_bytes = int.from_bytes(head[:8], "little")
    if header_bytes > MAX_HEADER_BYTES or header_bytes + 8 > p.stat().st_size:
        raise CheckpointError(f"{p.name}: its header claims {header_bytes:,} bytes (the file has "
                              f"{p.stat().st_size:,}; at most {MAX_HEADER_BYTES:,} are accepted); the file is "
                              "truncated, damaged or crafted")


def _parse_metadata(p: Path, metadata: dict[str, str]) -> dict[str, Any]:
    if metadata.get("format") != _MAGIC or "config" not in metadata:
        raise CheckpointError(f"{p.name} is a safetensors file but not a model saved by this add-on "
                              "(no config in its header)")
    try:
        config = json.loads(metadata["config"])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{p.name}: the config in its header is not valid JSON ({exc})") from exc
    version = config.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{p.name} was saved by a newer version (format {version}); update the add-on")
    return config


# --------------------------------------------------------------------------- training state

def _flatten(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        key = prefix or "_root"
        tensors[key] = obj
        return {"__tensor__": key}
    if isinstance(obj, dict):
        if not all(isinstance(k, (str, int)) for k in obj):
            raise TypeError("training state dict keys must be str or int")
        return {"__dict__": [[k, _flatten(v, f"{prefix}.{k}" if prefix else str(k), tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return {"__list__": [_flatten(v, f"{prefix}.{i}" if prefix else str(i), tensors) for i, v in enumerate(obj)],
                "tuple": isinstance(obj, tuple)}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} in a training state")


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__dict__" in obj:
            return {k: _unflatten(v, tensors) for k, v in obj["__dict__"]}
        if "__list__" in obj:
            items = [_unflatten(v, tensors) for v in obj["__list__"]]
            return tuple(items) if obj.get("tuple") else items
    return obj


def save_training_state(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Atomically save nested training state (optimizer state dicts, step, RNG states...)."""
    p = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    structure = _flatten(state, "", tensors)
    _atomic_save_tensors(tensors, {"format": _MAGIC, "kind": "training_state",
                                   "structure": json.dumps(structure)}, p)
    return p


def load_training_state(path: str | os.PathLike, device: torch.device | str = "cpu") -> dict[str, Any]:
    p = Path(path)
    _check_file(p)
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(p), framework="pt") as fh:
            metadata = fh.metadata() or {}
        if metadata.get("kind") != "training_state":
            raise CheckpointError(f"{p.name} is not a training-state file")
        tensors = load_file(str(p), device=str(device))
        for key in json.loads(metadata.get("compact_moments", "[]")):
            tensors[key] = tensors[key].float()  # stored as bfloat16 by an earlier compact_training_state
        for key, entry in json.loads(metadata.get("q8_moments", "{}")).items():
            tensors[key] = _q8_decode(p, key, entry, tensors.pop(key + ".q8codes"),
                                      tensors.pop(key + ".q8params")).to(device)
        return _unflatten(json.loads(metadata["structure"]), tensors)
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"{p.name}: training state could not be read (corrupt or truncated): {exc}") from exc


# Adam's first and second moments: the only tensors compact_training_state quantizes.
_MOMENT_NAMES = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
Q8_BLOCK = 256
# Steps between the lowest and highest nonzero code of a block: codes 1..255 for a second moment (>= 0),
# a sign bit and magnitude codes 1..127 for a first moment; code 0 is an exact zero.
_Q8_STEPS = {False: 254, True: 126}


def _is_signed_moment(key: str) -> bool:
    return key.rsplit(".", 1)[-1] == "exp_avg"


def _q8_encode(t: torch.Tensor, signed: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 codes, float32 [blocks, 2] (min, max) log2 magnitude per block) of a finite tensor."""
    flat = t.detach().to("cpu", torch.float64).flatten()
    n = flat.numel()
    blocks = -(-n // Q8_BLOCK)
    x = torch.zeros(blocks * Q8_BLOCK, dtype=torch.float64, device="cpu")
    x[:n] = flat
    x = x.view(blocks, Q8_BLOCK)
    nonzero = x != 0
    logs = torch.where(nonzero, x.abs().log2(), 0.0)
    inf = torch.tensor(math.inf, dtype=torch.float64, device="cpu")
    lo = torch.where(nonzero, logs, inf).amin(1)
    hi = torch.where(nonzero, logs, -inf).amax(1)
    empty = ~nonzero.any(1)
    lo[empty], hi[empty] = 0.0, 0.0
    # Stored in float32, rounded outwards so every log stays within them (the stated bound holds).
    lo32, hi32 = lo.float(), hi.float()
    lo32 = torch.where(lo32.double() > lo, torch.nextafter(lo32, torch.tensor(-math.inf, device="cpu")), lo32)
    hi32 = torch.where(hi32.double() < hi, torch.nextafter(hi32, torch.tensor(math.inf, device="cpu")), hi32)
    steps = _Q8_STEPS[signed]
    step = ((hi32.double() - lo32.double()) / steps).clamp_min(1e-300)[:, None]
    q = ((logs - lo32.double()[:, None]) / step).round().clamp(0, steps)
    codes = torch.where(nonzero, q + 1, 0.0)
    if signed:
        codes = codes + 128 * (x < 0)
    return codes.to(torch.uint8).flatten()[:n].clone(), torch.stack([lo32, hi32], 1)


def _q8_decode(p: Path, key: str, entry: dict, codes: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    shape, signed = tuple(entry["shape"]), bool(entry["signed"])
    n = math.prod(shape)
    blocks = -(-n // Q8_BLOCK)
    if (codes.dtype != torch.uint8 or codes.numel() != n or params.dtype != torch.float32
            or tuple(params.shape) != (blocks, 2) or entry.get("block") != Q8_BLOCK
            or not torch.isfinite(params).all()):
        raise CheckpointError(f"{p.name}: the 8-bit moment {key} does not match its description (damaged file)")
    c = torch.zeros(blocks * Q8_BLOCK, dtype=torch.int64, device="cpu")
    c[:n] = codes.cpu().flatten()
    c = c.view(blocks, Q8_BLOCK)
    magnitude = c & 127 if signed else c
    lo, hi = params.cpu().double().unbind(1)
    logs = lo[:, None] + (magnitude - 1) * ((hi - lo) / _Q8_STEPS[signed])[:, None]
    values = torch.where(magnitude > 0, torch.exp2(logs), 0.0)
    if signed:
        values = torch.where(c >= 128, -values, values)
    big = torch.finfo(torch.float32).max
    return values.clamp(-big, big).float().flatten()[:n].view(shape)


def q8_relative_bounds(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The worst relative error of each 8-bit moment's values (``compact_training_state``), shaped like
    the moment: half a code step, 2 ** ((max - min log2 of its block) / (2 * steps)) - 1, plus float32
    rounding. Values below float32's normal range may also be off by their last denormal bit (2 ** -149)."""
    from safetensors import safe_open

    bounds = {}
    with safe_open(str(path), framework="pt") as fh:
        for key, entry in json.loads((fh.metadata() or {}).get("q8_moments", "{}")).items():
            params = fh.get_tensor(key + ".q8params").double()
            half_step = (params[:, 1] - params[:, 0]) / (2 * _Q8_STEPS[bool(entry["signed"])])
            per_block = torch.exp2(half_step) * (1 + 2.0 ** -23) - 1
            n = math.prod(entry["shape"])
            bounds[key] = per_block.repeat_interleave(Q8_BLOCK)[:n].view(tuple(entry["shape"]))
    return bounds


def compact_training_state(path: str | os.PathLike) -> list[str]:
    """Rewrite a training state with its optimizers' moments as 8-bit logarithmic codes (a quarter of
    their float32 bytes, half of bfloat16's); returns the keys it quantized ([] when already compact).

    For the states committed into the repository only (models/training/*.train.safetensors, rewritten by
    ``tools/compact_states.py`` before a commit): the moments are running averages that the next steps
    overwrite at rate (1 - beta), so their rounding changes the resumed training by a small, measured
    amount (tests/core/test_compact_states.py); weights, EMA weights, steps and random streams stay exact.
    Trainings themselves always write full float32 states, so a resume within a session is bit-identical.

    Each moment (float32, or bfloat16 from the earlier compaction) is cut into blocks of ``Q8_BLOCK``
    values (flattened), stored as ``KEY.q8codes`` (uint8) and ``KEY.q8params`` (float32 min and max log2
    magnitude per block), listed in the metadata's ``q8_moments``. Zero keeps code 0, exactly; any other
    value's log2 magnitude is rounded to the nearest of 255 levels (second moments, >= 0) or 127 levels
    plus a sign bit (first moments) spread evenly over its block's [min, max]. So signs and zeros are
    exact and no positive value becomes zero (Adam divides by sqrt(v) + eps), and with R = max - min log2
    of the block, every value comes back within a factor 2 ** (R / 508) (second moments) or 2 ** (R / 252)
    (first moments) of itself: for R = 10, 1.4 % and 2.8 %; R = 30, 4.2 % and 8.6 %; R = 128 (tiny
    decayed values beside normal ones), 19 % and 42 %. Measured on the committed states (2026-12-04):
    see tools/compact_states.py. ``load_training_state`` turns them back into float32 tensors.
    Refuses a state whose moments are not finite (it should not be committed).
    """
    p = Path(path)
    _check_file(p)
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(p), framework="pt") as fh:
        metadata = dict(fh.metadata() or {})
    if metadata.get("kind") != "training_state":
        raise CheckpointError(f"{p.name} is not a training-state file")
    tensors = load_file(str(p))
    keys = [k for k, t in tensors.items() if k.rsplit(".", 1)[-1] in _MOMENT_NAMES and t.is_floating_point()]
    if not keys:
        return []
    q8 = json.loads(metadata.get("q8_moments", "{}"))
    for key in keys:
        if not torch.isfinite(tensors[key]).all():
            raise CheckpointError(f"{p.name}: non-finite (NaN/inf) values in the optimizer moment {key}; "
                                  "its training diverged, so it should not be committed")
        if key + ".q8codes" in tensors or key + ".q8params" in tensors:
            raise CheckpointError(f"{p.name}: {key} already has 8-bit codes beside it")
    for key in keys:
        moment = tensors.pop(key)
        signed = _is_signed_moment(key)
        tensors[key + ".q8codes"], tensors[key + ".q8params"] = _q8_encode(moment, signed)
        q8[key] = {"shape": list(moment.shape), "signed": signed, "block": Q8_BLOCK}
    bf16 = [k for k in json.loads(metadata.pop("compact_moments", "[]")) if k not in q8]
    if bf16:
        metadata["compact_moments"] = json.dumps(bf16)
    metadata["q8_moments"] = json.dumps(q8, sort_keys=True)
    _atomic_save_tensors(tensors, metadata, p)
    return keys


def save_model_and_state(model_path: str | os.PathLike, tensors: dict[str, torch.Tensor], config: dict[str, Any],
                         kind: str, state_path: str | os.PathLike, state: dict[str, Any]) -> None:
    """A training's checkpoint: its training state first, then its model, each atomically.

    A kill between the two writes leaves the model behind its state, never ahead of it
    (the state holds everything the model is made from); ``sync_model_with_state``
    repairs that when the training resumes.
    """
    save_training_state(state_path, state)
    save_checkpoint(model_path, tensors, config, kind)


def sync_model_with_state(model_path: str | os.PathLike, step_key: str, state_step: int, save) -> None:
    """On resuming from a training state at ``state_step``: when the model file is missing, unreadable
    or records another step in its config's ``step_key`` (a kill between the two writes), write
    the checkpoint again with ``save(state_step)`` from the weights just restored, and say so."""
    p = Path(model_path)
    try:
        model_step = read_checkpoint_config(p).get(step_key)
    except CheckpointError:
        model_step = None
    if model_step == state_step:
        return
    found = "was missing or unreadable" if model_step is None else f"was at step {model_step}"
    print(f"{p.name} {found}; rewritten from its training state at step {state_step}", file=sys.stderr)
    save(state_step)


def rng_state(generator: torch.Generator | None = None) -> dict[str, Any]:
    """Everything needed to continue random streams exactly after a resume."""
    state = {"torch": torch.get_rng_state()}
    if generator is not None:
        state["generator"] = generator.get_state()
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any], generator: torch.Generator | None = None) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if generator is not None and "generator" in state:
        generator.set_state(state["generator"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def fingerprint_files(paths) -> str:
    """SHA-256 over the training files' bytes, in order: the 'data fingerprint' in configs."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def fingerprint_arrays(arrays) -> str:
    digest = hashlib.sha256()
    for a in arrays:
        digest.update(str(a.shape).encode())
        digest.update(a.astype("float32").tobytes())
    return digest.hexdigest()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
