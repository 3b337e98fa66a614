"""The job registry: ``@job(kind, **params)`` and the discovery of every family's ``jobs.py``.

A family registers its jobs in ``core/<family>/jobs.py``; the worker imports every such module
(``load_family_jobs``) and so never names a family. A job module imports its family inside the
job functions, never at the top: the worker must start in a fraction of a second and without
PyTorch (the ``diagnostics`` job is how a host learns that PyTorch is missing).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .params import COMMON_PARAMS, Param, ParamError

if TYPE_CHECKING:
    from .context import JobContext

JOB_KINDS: dict[str, Callable[["JobContext"], dict]] = {}
JOB_PARAMS: dict[str, dict[str, Param]] = {}
JOBS_MODULE = "jobs"  # the file name a family's job adapters live in: core/<family>/jobs.py


def job(kind: str, **params: Param):
    """Register a job function for ``kind`` with its parameters (plus ``COMMON_PARAMS``)."""

    def register(fn: Callable[["JobContext"], dict]) -> Callable[["JobContext"], dict]:
        JOB_KINDS[kind] = fn
        JOB_PARAMS[kind] = {**COMMON_PARAMS, **params}
        return fn

    return register


def validate_params(kind: str, params: dict) -> dict:
    """The cleaned parameters of a ``kind`` job (defaults filled in); ParamError names the first problem."""
    schema = JOB_PARAMS.get(kind)
    if schema is None:
        raise ParamError(f"job kind {kind!r} declares no parameters (register it with @job)")
    unknown = sorted(str(k) for k in params if k not in schema)
    if unknown:
        raise ParamError(f"unknown job parameter(s) for {kind}: {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(schema))}")
    return {name: spec.check(name, params.get(name)) for name, spec in schema.items()}


def load_family_jobs() -> list[str]:
    """Import ``jobs.py`` of every package beside this one (``core/*/jobs.py``); their names.

    The module is executed without running its package's ``__init__`` first when that package is
    not imported yet: a family's ``__init__`` imports PyTorch and its models, which a job module
    only needs when one of its jobs runs (it imports them then, relatively, which imports the
    package as usual). Relative imports work because the module keeps its full dotted name. One
    consequence: until the family package itself is imported, ``core.<family>`` is no attribute of
    ``core``, so import a job module by ``from core.<family>.jobs import ...`` (or
    ``from core.<family> import jobs``), not ``import core.<family>.jobs`` and attribute access.
    ``core/common/jobs.py`` (progress and cancel) is found too; it is imported already and declares no job.
    """
    root_package = __name__.rsplit(".", 2)[0]  # "core", or the vendored "bl_ext.<repo>.<addon>.core"
    root = Path(sys.modules[root_package].__file__).parent
    own = __name__.rsplit(".", 1)[0]
    loaded = []
    for path in sorted(root.glob(f"*/{JOBS_MODULE}.py")):
        package = f"{root_package}.{path.parent.name}"
        name = f"{package}.{JOBS_MODULE}"
        if package == own or not (path.parent / "__init__.py").is_file():
            continue
        if name not in sys.modules:  # else imported already (core.common.jobs, or a job module imported directly)
            if package in sys.modules:
                importlib.import_module(name)
            else:
                _exec_without_package(name, path)
        loaded.append(name)
    return loaded


def _exec_without_package(name: str, path: Path) -> None:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
