"""Teacher ranking by GRACE, with split-level agreement, and rank-agreement statistics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from grace_engine.science.grace import GraceResult
from grace_engine.science.predictors import better_first


@dataclass(frozen=True)
class RankedCandidate:
    """Place of one candidate in a ranking by predictor ``score``.

    ``value`` is its ``score``; ``grace``/``grace_std`` its GRACE and the spread of its split scores
    (None when the job computed no GRACE). ``agreement_with_next`` is the share of GRACE's
    cross-validation splits in which this candidate scored below the next one (ties count half);
    ``None`` for the last, and when the ranking is not by GRACE.
    """

    rank: int
    name: str
    score: str
    value: float
    grace: float | None
    grace_std: float | None
    agreement_with_next: float | None


def rank_candidates(
    values: Mapping[str, float], score: str, graces: Mapping[str, GraceResult] | None = None
) -> list[RankedCandidate]:
    """Candidates best first by predictor ``score`` (its direction; name breaks exact ties)."""
    order = better_first(dict(values), score)
    graces = graces or {}
    ranked = []
    for i, name in enumerate(order):
        agreement = None
        if score == "grace" and i + 1 < len(order):
            a = np.asarray(graces[name].split_scores)
            b = np.asarray(graces[order[i + 1]].split_scores)
            if a.shape == b.shape:
                agreement = float(np.mean((a < b) + 0.5 * (a == b)))
        r = graces.get(name)
        ranked.append(
            RankedCandidate(
                i + 1,
                name,
                score,
                values[name],
                None if r is None else r.score,
                None if r is None else r.split_std,
                agreement,
            )
        )
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
