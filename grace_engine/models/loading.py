"""Loading student and teacher models from allowed places, with a small cache.

A model reference is either a directory under one of the configured roots (symlinks resolved
before the check) or a Hugging Face hub id on the allow-list. ``trust_remote_code`` is never
enabled, hub ids load from the local cache unless the policy allows downloads, and anything else
is refused before a single file is read.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grace_engine.errors import ModelNotAllowed, ModelNotFound

if TYPE_CHECKING:  # torch is loaded by what loads weights, never by resolving a reference (the API)
    import torch

log = logging.getLogger(__name__)
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


@dataclass(frozen=True)
class ModelPolicy:
    """Where models may come from. ``offline`` keeps hub ids to the local cache."""

    roots: tuple[Path, ...]
    allowed_hub_ids: tuple[str, ...] = ()
    offline: bool = True

    @classmethod
    def from_paths(
        cls, roots: Sequence[str | Path], allowed_hub_ids: Sequence[str] = (), offline: bool = True
    ) -> ModelPolicy:
        return cls(tuple(Path(r).expanduser().resolve() for r in roots), tuple(allowed_hub_ids), offline)


@dataclass(frozen=True)
class ModelSource:
    """A resolved, allowed model: ``location`` is an absolute directory or an allowed hub id."""

    location: str
    is_hub: bool

    def __str__(self) -> str:
        return self.location


def resolve_model(ref: str, policy: ModelPolicy, *, field: str, base_dir: Path | None = None) -> ModelSource:
    """Check ``ref`` against the policy and return where it loads from.

    A relative path is looked up in ``base_dir`` (default: the working directory) and then in each
    root, in order; the first existing directory inside a root wins. Every failure is a
    :class:`ModelNotAllowed` or :class:`ModelNotFound` naming ``field`` and ``ref`` as given, never
    a server path (the caller may be a tenant of a service).
    """
    if not ref or not ref.strip():
        raise ModelNotFound("no model given", field=field)
    if ref in policy.allowed_hub_ids:
        return ModelSource(ref, is_hub=True)
    try:
        return _resolve_path(ref, policy, field=field, base_dir=base_dir)
    # A name too long for the filesystem, a NUL byte, ~user of no such user or a symlink loop
    # (both RuntimeError): the reason by kind, since the messages carry server paths.
    except (OSError, ValueError, RuntimeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        if isinstance(exc, RuntimeError):
            why = "it names a home directory that does not exist, or a symlink loop"
        raise ModelNotFound(f"{ref[:100]!r} cannot be a model directory: {why}", field=field) from exc


def _resolve_path(ref: str, policy: ModelPolicy, *, field: str, base_dir: Path | None) -> ModelSource:
    given = Path(ref).expanduser()
    bases = [Path("/")] if given.is_absolute() else [base_dir or Path.cwd(), *policy.roots]
    inside = [
        p for p in ((b / given).resolve() for b in bases) if any(p.is_relative_to(r) for r in policy.roots)
    ]
    if not inside:
        raise ModelNotAllowed(
            f"{ref!r} is neither under an allowed model root (GRACE_MODEL_ROOTS) nor an allowed hub id",
            field=field,
        )
    path = next((p for p in inside if p.exists()), inside[0])
    if not path.exists() and _HUB_ID.fullmatch(ref):
        allowed = ", ".join(policy.allowed_hub_ids) or "none"
        raise ModelNotAllowed(
            f"{ref!r} is not an allowed hub id (allowed: {allowed}) and no model directory has that name",
            field=field,
        )
    if not (path / "config.json").is_file():
        raise ModelNotFound(
            f"no model at {ref!r} under the model roots (expected a directory with config.json)", field=field
        )
    return ModelSource(str(path), is_hub=False)


def _load_kwargs(source: ModelSource, policy: ModelPolicy) -> dict[str, Any]:
    return {"trust_remote_code": False, "local_files_only": not source.is_hub or policy.offline}


def _unloadable(what: str, source: ModelSource, field: str, exc: Exception) -> ModelNotFound:
    """The error for a model that resolved but does not load: its kind for the caller, whose
    message would show server paths; the whole of it in the log."""
    log.warning("cannot load a %s from %s: %s", what, source, exc)
    return ModelNotFound(
        f"cannot load a {what} for {field}: {type(exc).__name__} (see the server log)", field=field
    )


def load_tokenizer(source: ModelSource, policy: ModelPolicy, *, field: str = "model") -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source.location, **_load_kwargs(source, policy))
    except (OSError, ValueError) as exc:
        raise _unloadable("tokenizer", source, field, exc) from exc


def load_causal_lm(
    source: ModelSource,
    policy: ModelPolicy,
    *,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
    field: str = "model",
) -> torch.nn.Module:
    """Load a causal LM in eval mode (no dropout), parameters frozen; callers opt parameters in.
    ``dtype``: float32 unless given."""
    import torch
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(
            source.location, dtype=dtype or torch.float32, **_load_kwargs(source, policy)
        )
    except (OSError, ValueError, KeyError) as exc:
        raise _unloadable("causal LM", source, field, exc) from exc
    model.to(device)
    model.eval()
    model.requires_grad_(False)
    return model  # type: ignore[no-any-return]


def context_length(model: torch.nn.Module) -> int | None:
    """Positions the model can attend over (``max_position_embeddings``; GPT-2 maps ``n_positions``)."""
    return _positions(getattr(getattr(model, "config", None), "max_position_embeddings", None))


def _positions(limit: Any) -> int | None:
    return limit if isinstance(limit, int) and limit > 0 else None


def configured_context(source: ModelSource) -> int | None:
    """:func:`context_length` of a model directory read from its ``config.json`` alone, without
    loading it (None for a hub id, or a config that does not say): cheap enough for an API request."""
    if source.is_hub:
        return None
    try:
        config = json.loads((Path(source.location) / "config.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict):
        return None
    return _positions(config.get("max_position_embeddings", config.get("n_positions")))


@dataclass
class LoadedModel:
    source: ModelSource
    model: torch.nn.Module
    tokenizer: Any


class ModelCache:
    """Keeps the ``capacity`` most recently used models loaded (long-lived workers reuse them).

    Thread-safe; a model is loaded at most once per key even when requested concurrently.
    """

    def __init__(self, policy: ModelPolicy, *, capacity: int = 2, device: str | torch.device = "cpu") -> None:
        self.policy = policy
        self.capacity = capacity
        self.device = device
        self._entries: OrderedDict[tuple[str, str], LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    def get(
        self, source: ModelSource, *, dtype: torch.dtype | None = None, field: str = "model"
    ) -> LoadedModel:
        import torch

        dtype = dtype or torch.float32
        key = (source.location, str(dtype))
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
            loaded = LoadedModel(
                source,
                load_causal_lm(source, self.policy, dtype=dtype, device=self.device, field=field),
                load_tokenizer(source, self.policy, field=field),
            )
            self._entries[key] = loaded
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
            return loaded

    def models(self) -> list[torch.nn.Module]:
        """The models loaded now (what a memory budget must count as resident)."""
        with self._lock:
            return [entry.model for entry in self._entries.values()]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
