"""How a score moves with the number of prompts, and how many prompts would settle a ranking.

GRACE is a trace against an inverse covariance estimated from the training prompts, so with ``b``
prompts it carries a bias that shrinks like ``1/b`` (the leading term of an inverse sample
covariance's expectation). Each candidate's score is measured at ``b = n/4, n/2, 3n/4`` (mean over
subsamples without replacement, the same subsamples for every candidate) and at ``n`` (the score
itself), and ``a + c/b`` is fitted by least squares: ``a`` is the score's limit, ``c`` its
small-sample bias. Two candidates' curves then say whether their gap widens, shrinks or flips with
more prompts, and :func:`prompts_to_settle` extrapolates the gap from them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

MIN_POINTS = 3  # two parameters fitted: at least one degree of freedom left
MAX_PROMPTS = 10_000_000  # beyond this "how many prompts" is not a useful answer


@dataclass(frozen=True)
class LearningCurve:
    """A score at several prompt counts (``sizes``, ascending, the last the job's ``n``) and, with at
    least :data:`MIN_POINTS` of them, the fit ``value ~ a + c / size`` (else ``a``/``c`` None)."""

    sizes: list[int]
    values: list[float]
    a: float | None
    c: float | None

    @property
    def fitted(self) -> bool:
        return self.a is not None and self.c is not None

    def at(self, b: float) -> float:
        """The fitted value at ``b`` prompts."""
        if self.a is None or self.c is None:
            raise ValueError("the curve has too few points to be fitted")
        return self.a + self.c / b


def fit(sizes: Sequence[int], values: Sequence[float]) -> LearningCurve:
    """Least-squares ``a + c / b`` through the finite points (:class:`LearningCurve`)."""
    pairs = sorted((int(b), float(v)) for b, v in zip(sizes, values, strict=True) if math.isfinite(v))
    bs = [b for b, _ in pairs]
    vs = [v for _, v in pairs]
    if len(set(bs)) < MIN_POINTS:
        return LearningCurve(bs, vs, None, None)
    design = np.column_stack([np.ones(len(bs)), 1.0 / np.asarray(bs, dtype=np.float64)])
    (a, c), *_ = np.linalg.lstsq(design, np.asarray(vs), rcond=None)
    return LearningCurve(bs, vs, float(a), float(c))


def crossing(leader: LearningCurve, runner_up: LearningCurve, n: int, *, lower_is_better: bool) -> int | None:
    """The prompt count beyond ``n`` at which the fitted curves cross (the runner-up would lead
    from there on), or None when they do not cross beyond ``n``."""
    if leader.a is None or leader.c is None or runner_up.a is None or runner_up.c is None:
        return None
    sign = 1.0 if lower_is_better else -1.0
    da, dc = sign * (runner_up.a - leader.a), sign * (runner_up.c - leader.c)  # gap(b) = da + dc / b
    if da >= 0 or dc <= 0:
        return None  # the leader's margin does not shrink to below zero
    b = -dc / da
    return math.ceil(b) if n < b <= MAX_PROMPTS else None


def prompts_to_settle(
    gap_at: Callable[[float], float], se_at_n: float, n: int, df: int, confidence: float
) -> int | None:
    """The fewest prompts ``b >= n`` at which a gap of ``gap_at(b)`` (oriented: positive = the
    leader is better) would clear its ``confidence`` interval, whose half-width shrinks as
    ``1/sqrt(b)`` from ``t * se_at_n`` at ``n`` (a mean over prompts). None when no ``b`` up to
    :data:`MAX_PROMPTS` does (the gap vanishes, flips or stays too small)."""
    from scipy import stats

    z = float(stats.t.ppf((1.0 + confidence) / 2, max(df, 1)))

    def clears(b: float) -> bool:
        return gap_at(b) > z * se_at_n * math.sqrt(n / b)

    lo, hi = n, n
    while not clears(hi):
        lo, hi = hi, math.ceil(hi * 1.25)
        if hi > MAX_PROMPTS:
            return None
    while hi - lo > 1:  # the smallest whole number of prompts that clears
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if clears(mid) else (mid, hi)
    return hi
