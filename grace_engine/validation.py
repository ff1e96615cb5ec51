"""Ground truth for a ranking (design §2.8): how well a score predicted what distillation delivered.

This module holds the correlation half: given each candidate's score (GRACE or a baseline) and the
measured outcome of the student distilled on that candidate's responses, how well did the score
predict the outcome? Everything is signed so that +1 means a perfect prediction, whichever way the
score and the outcome point.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from grace_engine.errors import InvalidInput
from grace_engine.ranking import spearman

BOOTSTRAP_SAMPLES = 2000


@dataclass(frozen=True)
class Correlation:
    """Agreement of one score with the outcome over ``n_candidates`` candidates.

    ``spearman`` and ``kendall`` (tau-b) are between the score's predicted goodness and the
    outcome's quality; ``ci95`` is a percentile bootstrap interval of ``spearman`` over candidates
    (resamples with fewer than two distinct values on either side are skipped). ``regret`` is how
    much worse, in the outcome's units, the score's top pick did than the best candidate;
    ``regret_rel`` the same divided by the best outcome's magnitude.
    """

    score: str
    spearman: float
    kendall: float
    ci95: tuple[float, float]
    regret: float
    regret_rel: float
    n_candidates: int
    top_pick: str
    best: str


def kendall_tau_b(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's tau-b of two equally long vectors (ties handled as tau-b does); 1.0 when either
    side is constant, like :func:`~grace_engine.ranking.spearman`."""
    n = len(a)
    concordant = discordant = ties_a = ties_b = 0
    for i in range(n):
        for j in range(i + 1, n):
            da, db = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
            ties_a += da == 0
            ties_b += db == 0
            concordant += da * db > 0
            discordant += da * db < 0
    pairs = n * (n - 1) // 2
    denom = math.sqrt((pairs - ties_a) * (pairs - ties_b))
    return float((concordant - discordant) / denom) if denom > 0 else 1.0


def correlate(
    score_name: str,
    scores: Mapping[str, float],
    outcomes: Mapping[str, float],
    *,
    lower_score_is_better: bool,
    higher_outcome_is_better: bool,
    seed: int = 0,
    n_boot: int = BOOTSTRAP_SAMPLES,
) -> Correlation:
    """How well ``scores`` predicted ``outcomes`` (both keyed by candidate name).

    GRACE, G-Norm, student NLL: lower is better; G-Vendi, teacher accuracy: higher is better.
    Outcomes: ``eval_nll`` lower is better, ``accuracy`` higher is better.
    """
    names = sorted(scores)
    if sorted(outcomes) != names:
        raise InvalidInput("scores and outcomes must cover the same candidates", field="outcomes")
    if len(names) < 2:
        raise InvalidInput("needs at least 2 candidates", field="candidates")
    values = np.array([[scores[n], outcomes[n]] for n in names], dtype=np.float64)
    if not np.isfinite(values).all():
        raise InvalidInput("scores and outcomes must be finite numbers", field="outcomes")
    goodness = -values[:, 0] if lower_score_is_better else values[:, 0]
    quality = values[:, 1] if higher_outcome_is_better else -values[:, 1]
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(names), len(names))
        if len(np.unique(goodness[idx])) > 1 and len(np.unique(quality[idx])) > 1:
            boot.append(spearman(goodness[idx].tolist(), quality[idx].tolist()))
    ci = (float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))) if boot else (math.nan, math.nan)
    # The pick: best predicted goodness (the first name on ties); the best: best quality.
    pick, best = int(np.argmax(goodness)), int(np.argmax(quality))
    regret = float(quality[best] - quality[pick])
    scale = float(abs(values[best, 1]))
    return Correlation(
        score=score_name,
        spearman=spearman(goodness.tolist(), quality.tolist()),
        kendall=kendall_tau_b(goodness, quality),
        ci95=ci,
        regret=regret,
        regret_rel=regret / scale if scale > 0 else math.inf if regret > 0 else 0.0,
        n_candidates=len(names),
        top_pick=names[pick],
        best=names[best],
    )
