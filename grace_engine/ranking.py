"""Teacher ranking by GRACE, with split-level agreement, and rank-agreement statistics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from grace_engine.scores import GraceResult


@dataclass(frozen=True)
class RankedCandidate:
    """Place of one candidate. ``agreement_with_next`` is the share of cross-validation splits in
    which this candidate scored below the next one (ties count half); ``None`` for the last."""

    rank: int
    name: str
    grace: float
    grace_std: float
    agreement_with_next: float | None


def rank_by_grace(results: Mapping[str, GraceResult]) -> list[RankedCandidate]:
    """Candidates sorted by GRACE ascending (best first); name breaks exact ties."""
    order = sorted(results, key=lambda name: (results[name].score, name))
    ranked = []
    for i, name in enumerate(order):
        agreement = None
        if i + 1 < len(order):
            a = np.asarray(results[name].split_scores)
            b = np.asarray(results[order[i + 1]].split_scores)
            if a.shape == b.shape:
                agreement = float(np.mean((a < b) + 0.5 * (a == b)))
        r = results[name]
        ranked.append(RankedCandidate(i + 1, name, r.score, r.split_std, agreement))
    return ranked


def _ranks(values: Sequence[float]) -> np.ndarray:
    """Average ranks (1-based), ties sharing the mean of their positions."""
    v = np.asarray(values, dtype=np.float64)
    order = np.argsort(v, kind="stable")
    ranks = np.empty(len(v))
    ranks[order] = np.arange(1, len(v) + 1)
    for value in np.unique(v):
        tied = v == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman rank correlation of two score lists over the same candidates."""
    if len(a) != len(b) or len(a) < 2:
        raise ValueError("need two equally long lists of at least 2 scores")
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = float(np.sqrt((ra**2).sum() * (rb**2).sum()))
    return float((ra * rb).sum() / denom) if denom > 0 else 1.0
