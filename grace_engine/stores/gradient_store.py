"""Projected per-example gradients, stored per candidate and found again by their content.

A candidate's gradients depend only on the student's weights, how its responses are shown to the
student, the prompts, the responses, the gradient space, the projection (d, seed, path, factor
dim). :func:`gradient_key` hashes exactly those, so a re-score with settings that do not change
gradients (splits, test fraction, smoothing, length factor, predictors, bootstrap) finds them, and
adding a candidate to an earlier comparison computes only the new one.

Stored are the raw outputs of :func:`~grace_engine.science.gradients.compute_gradients` (gradients before
any length factor, NLL, response tokens, rank sums) as an ``.npz`` without pickles.
:class:`DirectoryGradientStore` keeps them under a directory, bounded in bytes (least recently
used first out); the service keeps them in its database (``workers.runner``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from grace_engine.models.data import Prompt
from grace_engine.models.loading import ModelSource
from grace_engine.science.gradients import GradientResult
from grace_engine.science.projection import ProjectionIdentity

FORMAT_VERSION = 1  # bump when what is stored, or how gradients are computed, changes


@dataclass(frozen=True)
class StoredGradients:
    """One candidate's per-example rows, in the job's row order (prompt-major, ``m`` per prompt):
    ``gradients (N, d) float32``, ``losses (N,)`` nats/token, ``n_tokens (N,)``, ``rank_sums (N,)``;
    and what a result reports about them without the student: ``truncated`` examples, the
    projection's ``identity``, the ``grad_dim`` it projected from, the format's ``max_length``
    as applied (within the student's context)."""

    gradients: npt.NDArray[np.float32]
    losses: npt.NDArray[np.float64]
    n_tokens: npt.NDArray[np.int64]
    rank_sums: npt.NDArray[np.float64]
    truncated: int = 0
    identity: ProjectionIdentity | None = None
    grad_dim: int = 0
    max_length: int | None = None

    @classmethod
    def of(
        cls,
        result: GradientResult,
        *,
        truncated: int,
        identity: ProjectionIdentity | None,
        grad_dim: int,
        max_length: int | None,
    ) -> StoredGradients:
        return cls(
            result.gradients,
            result.losses,
            result.n_tokens,
            result.rank_sums,
            truncated,
            identity,
            grad_dim,
            max_length,
        )

    def rows(self, index: npt.NDArray[np.int64]) -> GradientResult:
        """The rows ``index`` as :func:`~grace_engine.science.gradients.compute_gradients` returns
        them."""
        return GradientResult(
            self.gradients[index], self.losses[index], self.n_tokens[index], self.rank_sums[index]
        )

    def to_bytes(self) -> bytes:
        meta = {
            "truncated": self.truncated,
            "identity": None if self.identity is None else asdict(self.identity),
            "grad_dim": self.grad_dim,
            "max_length": self.max_length,
        }
        out = io.BytesIO()
        np.savez(
            out,
            gradients=self.gradients,
            losses=self.losses,
            n_tokens=self.n_tokens,
            rank_sums=self.rank_sums,
            meta=np.array(json.dumps(meta)),  # a unicode array: no pickle needed to read it back
        )
        return out.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> StoredGradients:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            return cls(
                z["gradients"].astype(np.float32),
                z["losses"].astype(np.float64),
                z["n_tokens"].astype(np.int64),
                z["rank_sums"].astype(np.float64),
                int(meta["truncated"]),
                None if meta["identity"] is None else ProjectionIdentity(**meta["identity"]),
                int(meta["grad_dim"]),
                meta["max_length"],
            )


_HASHES: dict[tuple[str, tuple[tuple[str, int, int], ...]], str] = {}
_HASH_LOCK = threading.Lock()


def content_hash(source: ModelSource) -> str:
    """SHA-256 of a model's content: every file under its directory (relative path and bytes),
    cached per process while no file's size or modification time changes. A hub id is hashed by
    its name (its files live in the hub cache, pinned by the policy's offline mode)."""
    if source.is_hub:
        return hashlib.sha256(f"hub:{source.location}".encode()).hexdigest()
    root = Path(source.location)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    stamp = tuple((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    key = (str(root), stamp)
    with _HASH_LOCK:
        if key in _HASHES:
            return _HASHES[key]
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    value = digest.hexdigest()
    with _HASH_LOCK:
        _HASHES[key] = value
    return value


def gradient_key(
    *,
    student_hash: str,
    prompts: Sequence[Prompt],
    responses: Sequence[Sequence[str]],
    settings: Mapping[str, Any],
) -> str:
    """The content address of one candidate's projected gradients (hex SHA-256): the student's
    content, the prompt texts (ids and answers change no gradient), the responses, and the
    ``settings`` they were computed under
    (:meth:`~grace_engine.pipelines.config.ScoringConfig.gradient_settings`)."""
    canonical = json.dumps(
        {
            "version": FORMAT_VERSION,
            "student": student_hash,
            "prompts": [p.prompt for p in prompts],
            "responses": [list(r) for r in responses],
            **settings,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class GradientStore(Protocol):
    def get(self, key: str) -> StoredGradients | None: ...

    def put(self, key: str, gradients: StoredGradients) -> None: ...


class DirectoryGradientStore:
    """Gradients as ``<root>/<key[:2]>/<key>.npz``, at most ``max_bytes`` in all: after each put
    the least recently used files go first. Writes are atomic (a temporary file, then a rename),
    so concurrent processes never read half a file."""

    def __init__(self, root: str | Path, *, max_bytes: int) -> None:
        self.root, self.max_bytes = Path(root), max_bytes

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def get(self, key: str) -> StoredGradients | None:
        path = self._path(key)
        try:
            data = path.read_bytes()
            os.utime(path)  # recently used: evicted last
        except FileNotFoundError:
            return None
        return StoredGradients.from_bytes(data)

    def put(self, key: str, gradients: StoredGradients) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(gradients.to_bytes())
        os.replace(tmp, path)
        self._evict()

    def _evict(self) -> None:
        entries = []
        for p in self.root.glob("*/*.npz"):
            try:
                st = p.stat()
            except FileNotFoundError:  # evicted by a concurrent process
                continue
            entries.append((st.st_mtime_ns, st.st_size, p))
        total = sum(size for _, size, _ in entries)
        for _, size, p in sorted(entries, key=lambda e: e[0]):
            if total <= self.max_bytes:
                break
            p.unlink(missing_ok=True)
            total -= size
