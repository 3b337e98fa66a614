"""The parameter schema every job declares: ``Param`` (type, range, default) and the shared sets.

A request's parameters are checked against its kind's schema before the job is queued, so a
job function only ever sees clean values; ``check_output`` holds explicit outputs to the
folders the worker was allowed to write.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..common.jobs import short_repr

DEVICE = re.compile(r"auto|cpu|mps|cuda(:[0-9]{1,2})?")
MAX_SEED = 2 ** 63 - 1  # torch seeds are 64-bit (a job may add a small offset for a second stream)
MAX_SIDE = 16384
MAX_PATH_CHARS = 4096


class ParamError(ValueError):
    """A job parameter is missing, unknown, of the wrong type or out of range."""


@dataclass(frozen=True)
class Param:
    """One job parameter: its type, range and default. ``check`` returns the cleaned value.

    Types: ``int``, ``float``, ``bool``, ``str``, ``choice`` (one of ``choices``), ``path``
    (an input file), ``paths`` (a list of them, ``low``..``high`` entries, a lone string
    allowed), ``floats`` (a list of numbers in ``low``..``high``), ``config`` (a JSON object),
    ``output`` (an image file the job writes), ``output_dir`` and ``model_out`` (a model
    file a training writes and resumes from).
    """

    type: str
    low: float | None = None
    high: float | None = None
    default: Any = None
    required: bool = False
    choices: tuple = ()

    def check(self, name: str, value: Any) -> Any:
        if value is None:
            if self.required:
                raise ParamError(f"job parameter {name!r} is missing")
            return self.default
        checker = getattr(self, f"_check_{self.type}")
        return checker(name, value)

    def _range(self, name: str, value: float) -> None:
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise ParamError(f"job parameter {name!r} = {value!r} is out of range ({self.low} to {self.high})")

    def _check_int(self, name: str, value: Any) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamError(f"job parameter {name!r} must be a whole number, got {short_repr(value)}")
        self._range(name, value)
        return value

    def _check_float(self, name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamError(f"job parameter {name!r} must be a number, got {short_repr(value)}")
        if not math.isfinite(value):
            raise ParamError(f"job parameter {name!r} must be finite, got {value!r}")
        self._range(name, float(value))
        return float(value)

    def _check_bool(self, name: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise ParamError(f"job parameter {name!r} must be true or false, got {short_repr(value)}")
        return value

    def _check_str(self, name: str, value: Any) -> str:
        if not isinstance(value, str) or len(value) > MAX_PATH_CHARS:
            raise ParamError(f"job parameter {name!r} must be a text of at most {MAX_PATH_CHARS} characters")
        return value

    def _check_choice(self, name: str, value: Any) -> Any:
        if isinstance(value, bool) or value not in self.choices:
            raise ParamError(f"job parameter {name!r} must be one of {', '.join(map(repr, self.choices))}, "
                             f"got {short_repr(value)}")
        return value

    def _check_path(self, name: str, value: Any) -> str:
        if not isinstance(value, str) or not value or "\0" in value or len(value) > MAX_PATH_CHARS:
            raise ParamError(f"job parameter {name!r} must be a file path, got {short_repr(value)}")
        return value

    def _check_paths(self, name: str, value: Any) -> list[str]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise ParamError(f"job parameter {name!r} must be a list of file paths, got {short_repr(value)}")
        if not (self.low or 0) <= len(value) <= (self.high or len(value)):
            raise ParamError(f"job parameter {name!r} needs {self.low} to {self.high} paths, got {len(value)}")
        return [self._check_path(name, v) for v in value]

    def _check_floats(self, name: str, value: Any) -> list[float]:
        if not isinstance(value, list) or not 1 <= len(value) <= 64:
            raise ParamError(f"job parameter {name!r} must be a list of 1 to 64 numbers, got {short_repr(value)}")
        return [Param("float", self.low, self.high).check(name, v) for v in value]

    def _check_config(self, name: str, value: Any) -> dict:
        if not isinstance(value, dict):
            raise ParamError(f"job parameter {name!r} must be a JSON object, got {short_repr(value)}")
        return value

    def _check_device(self, name: str, value: Any) -> str:
        if not isinstance(value, str) or not DEVICE.fullmatch(value):
            raise ParamError(f"job parameter {name!r} must be auto, cpu, mps, cuda or cuda:N, got {short_repr(value)}")
        return value

    _check_output = _check_path
    _check_output_dir = _check_path

    def _check_model_out(self, name: str, value: Any) -> str:
        value = self._check_path(name, value)
        if not value.endswith(".safetensors"):
            raise ParamError(f"job parameter {name!r} must name a .safetensors model file, got {short_repr(value)}")
        return value


SEED = Param("int", 0, MAX_SEED, default=0)
SIDE = Param("int", 8, MAX_SIDE)
INPUT = Param("path", required=True)
# Every job may name a device and how often it sends previews.
COMMON_PARAMS = {"device": Param("device"), "preview_interval": Param("float", 0.0, 3600.0, default=1.0)}
IMAGE_OUTPUT = {"output": Param("output"), "overwrite": Param("bool", default=False)}
TRAINING = {"out_path": Param("model_out", required=True), "steps": Param("int", 1, 100_000_000, required=True),
            "seed": SEED, "config": Param("config"), "checkpoint_every": Param("int", 1, 100_000_000, default=200),
            "resume": Param("bool", default=True), "thumbnail": Param("bool", default=True)}


def _inside(path: Path, roots: list[Path]) -> bool:
    resolved = path.resolve()
    return any(resolved == root or root in resolved.parents for root in roots)


def check_output(path: Path, roots: list[Path], overwrite: bool) -> Path:
    """An explicit image output: a writable image type, inside the allowed folders, new unless asked."""
    if path.suffix.lower() not in (".png", ".jpg", ".jpeg", ".exr", ".npy", ".tif", ".tiff", ".webp", ".bmp"):
        raise ParamError(f"output {path.name!r} must end in .png, .jpg, .exr, .tif, .webp, .bmp or .npy")
    if not _inside(path, roots):
        raise ParamError(f"output {path} is outside the work folder and the allowed output folders "
                         "(start the worker with --allow-output FOLDER)")
    if path.exists() and not overwrite:
        raise ParamError(f"output {path} exists; send \"overwrite\": true to replace it")
    return path
