"""The registry of job kinds: each kind is one module that defines ``KIND``, a
:class:`~grace_jobs.kinds.base.JobKind`. The built-in kinds (score, influence, validation) are
always there; an operator adds more by naming their modules in ``GRACE_JOB_KINDS`` (the API and
the workers import them at start). Nothing else in the service names a kind.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any

from grace_engine.errors import InvalidInput
from grace_jobs.kinds.base import FanOut, JobKind

BUILTIN = ("grace_jobs.kinds.score", "grace_jobs.kinds.influence", "grace_jobs.kinds.validation")

AnyKind = JobKind[Any, Any]
_loaded: dict[str, AnyKind] = {}  # module name -> its kind


def _kind_of(module: str) -> AnyKind:
    if module not in _loaded:
        try:
            found = getattr(importlib.import_module(module), "KIND", None)
        except ImportError as exc:
            raise InvalidInput(f"cannot import job kind module {module!r}: {exc}", field="job_kinds") from exc
        if not isinstance(found, JobKind):
            raise InvalidInput(f"module {module!r} defines no KIND (a JobKind)", field="job_kinds")
        _loaded[module] = found
    return _loaded[module]


def enabled(extra: Iterable[str] = ()) -> list[AnyKind]:
    """The built-in kinds, then those of the ``extra`` modules (``Settings.job_kinds``); two kinds
    of one name are refused."""
    kinds = [_kind_of(m) for m in (*BUILTIN, *extra)]
    names = [k.name for k in kinds]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InvalidInput(f"two job kinds are named {twice[0]!r}", field="job_kinds")
    return kinds


def get(name: str, extra: Iterable[str] = ()) -> AnyKind:
    """The kind called ``name`` among :func:`enabled`."""
    for kind in enabled(extra):
        if kind.name == name:
            return kind
    raise InvalidInput(f"no job kind named {name!r} is enabled here", field="kind")


__all__ = ["AnyKind", "FanOut", "JobKind", "enabled", "get"]
