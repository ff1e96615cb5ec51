"""How settled a ranking is: a bootstrap over prompts from the candidates' stored evidence.

Each resample draws ``n`` of the job's ``n`` prompts with replacement, the **same** draw for every
candidate (the candidates answered the same prompts, so their scores are compared paired). A
prompt drawn ``k`` times gets weight ``k`` (:mod:`~grace_engine.predictors`): for GRACE its copies
count ``k`` times in every second moment and are held out together, so no copy of a held-out
prompt is trained on. No model runs: everything comes from the per-example rows of the job.

Per candidate: ``p_top1``, the share of resamples in which it scores best (ties share), and a
percentile interval (90% by default) of its score. The ranking is **settled** when the leader's
``p_top1`` is at least 0.9 and its interval clears the runner-up's (design §2.11). When it is not,
:func:`prompts_to_settle` extrapolates how many prompts would make the intervals clear, taking
their widths to shrink as ``1/sqrt(n)`` around the current scores.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import threadpool_limits

from grace_engine.errors import InvalidInput
from grace_engine.predictors import LOWER_IS_BETTER, Evidence, GraceSettings, better_first, value
from grace_engine.runtime import available_cpus

SETTLED_P_TOP1 = 0.9
DEFAULT_RESAMPLES = 200
DEFAULT_CONFIDENCE = 0.9


@dataclass(frozen=True)
class CandidateUncertainty:
    """``p_top1``: share of resamples in which the candidate scored best; ``interval``: the
    ``confidence`` percentile interval of its score over the resamples."""

    p_top1: float
    interval: tuple[float, float]


@dataclass(frozen=True)
class Uncertainty:
    """The bootstrap of one predictor (``score``) over ``n_prompts`` prompts.

    ``settled``: the leader's ``p_top1 >= 0.9`` and its interval clears the runner-up's.
    ``prompts_to_settle``: when not settled, the total prompts that would likely settle it (None when
    it cannot be estimated: the two lead scores are equal, or there is one candidate).
    """

    score: str
    n_prompts: int
    n_resamples: int
    confidence: float
    seed: int
    candidates: dict[str, CandidateUncertainty]
    leader: str
    runner_up: str | None
    settled: bool
    prompts_to_settle: int | None
    # Per candidate, its score on each resample (NaN where undefined): what a later bootstrap of the
    # same job may be given instead of computing it again (``bootstrap(known=...)``).
    draws: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)


def _clears(leader: tuple[float, float], other: tuple[float, float], lower_is_better: bool) -> bool:
    return leader[1] < other[0] if lower_is_better else leader[0] > other[1]


def prompts_to_settle(
    point: Mapping[str, float],
    intervals: Mapping[str, tuple[float, float]],
    leader: str,
    runner_up: str,
    n_prompts: int,
) -> int | None:
    """Prompts at which the leader's and runner-up's intervals, shrinking as ``1/sqrt(n)`` around
    their current scores, would no longer overlap: ``n * ((h_1 + h_2) / gap)^2`` with ``h`` the
    half-widths and ``gap`` the distance between the two scores. None when the scores are equal."""
    gap = abs(point[runner_up] - point[leader])
    half = sum((intervals[c][1] - intervals[c][0]) / 2 for c in (leader, runner_up))
    if gap <= 0.0 or not math.isfinite(gap):
        return None
    return max(n_prompts, math.ceil(n_prompts * (half / gap) ** 2))


def bootstrap(
    evidence: Mapping[str, Evidence],
    score: str,
    point: Mapping[str, float],
    *,
    settings: GraceSettings,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
    known: Mapping[str, np.ndarray] | None = None,
) -> Uncertainty:
    """Bootstrap predictor ``score`` of every candidate over prompts (module docstring).

    Args:
        evidence: per candidate, rows over the same prompts in the same order.
        point: the candidates' scores on all prompts (the ranking's values), best by ``score``'s
            direction; the leader and runner-up are taken from them.
        n_resamples: resamples (each computes ``score`` once per candidate).
        seed: of the resampling generator.
        known: per candidate, its ``draws`` from an earlier bootstrap with the same evidence,
            score, settings, prompts, resamples and seed (a fanned-out job's units compute their
            own): used as they are. A candidate's draws depend on nothing else, because every
            candidate is resampled with the same draw of prompts.
    """
    if n_resamples < 1:
        raise InvalidInput("must be at least 1", field="bootstrap")
    if not 0.0 < confidence < 1.0:
        raise InvalidInput("must be strictly between 0 and 1", field="confidence")
    names = list(evidence)
    n = {ev.n_prompts for ev in evidence.values()}
    if len(n) != 1:
        raise InvalidInput("candidates must share their prompts", field="candidates")
    n_prompts = n.pop()
    given = {c: np.asarray(d, dtype=np.float64) for c, d in (known or {}).items() if c in evidence}
    if any(d.shape != (n_resamples,) for d in given.values()):
        raise ValueError("known draws must have one value per resample")
    todo = [c for c in names if c not in given]
    lower = LOWER_IS_BETTER[score]
    rng = np.random.default_rng(seed)
    # All resamples are drawn up front, so the result does not depend on how they are scheduled.
    resamples = [rng.integers(0, n_prompts, n_prompts) for _ in range(n_resamples)]

    def one(draw: np.ndarray) -> list[float]:
        prompts, counts = np.unique(draw, return_counts=True)
        if len(prompts) < 2:  # GRACE needs two distinct prompts; only with n = 2 can this happen
            return [math.nan] * len(todo)
        weights = counts.astype(np.float64)
        values = [value(score, evidence[c].take(prompts), settings, weights, max_workers=1) for c in todo]
        return [math.nan if v is None else v for v in values]

    computed = np.empty((n_resamples, 0))
    if todo:
        # One resample per core, each single-threaded: many small factorisations scale better so.
        with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(available_cpus()) as pool:
            computed = np.array(list(pool.map(one, resamples)), dtype=np.float64).reshape(
                n_resamples, len(todo)
            )
    by_name = {**given, **{c: computed[:, j] for j, c in enumerate(todo)}}
    draws = np.stack([by_name[c] for c in names], axis=1)
    kept = draws[~np.isnan(draws).any(axis=1)]
    if kept.shape[0] == 0:
        raise InvalidInput(f"{score} cannot be bootstrapped on these prompts", field="bootstrap")
    best = kept.min(axis=1, keepdims=True) if lower else kept.max(axis=1, keepdims=True)
    wins = kept == best
    share = (wins / wins.sum(axis=1, keepdims=True)).mean(axis=0)  # ties share a resample
    alpha = (1.0 - confidence) / 2
    lo, hi = np.quantile(kept, [alpha, 1.0 - alpha], axis=0)
    per = {
        name: CandidateUncertainty(float(share[j]), (float(lo[j]), float(hi[j])))
        for j, name in enumerate(names)
    }
    order = better_first(dict(point), score)
    leader, runner_up = order[0], (order[1] if len(order) > 1 else None)
    settled = per[leader].p_top1 >= SETTLED_P_TOP1 and (
        runner_up is None or _clears(per[leader].interval, per[runner_up].interval, lower)
    )
    needed = None
    if not settled and runner_up is not None:
        needed = prompts_to_settle(
            point, {c: u.interval for c, u in per.items()}, leader, runner_up, n_prompts
        )
    return Uncertainty(
        score=score,
        n_prompts=n_prompts,
        n_resamples=int(kept.shape[0]),
        confidence=confidence,
        seed=seed,
        candidates=per,
        leader=leader,
        runner_up=runner_up,
        settled=settled,
        prompts_to_settle=needed,
        draws=by_name,
    )
