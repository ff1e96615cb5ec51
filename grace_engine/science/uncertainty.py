"""How settled a ranking is, measured at the job's number of prompts (design §2.11).

GRACE depends on how many prompts it is computed from, so a bootstrap with replacement (about 63%
distinct prompts per resample) measures another quantity: its intervals sat above the point
estimate. Every figure here describes the ranking at the job's ``n``, or says which ``n`` it is at:

* **settled** and each candidate's **gap** to the leader come from a paired comparison over prompts
  (:mod:`~grace_engine.science.crossval`): for GRACE, 10 repeats of 10-fold cross-validation with every
  response of a prompt, and every copy of a held-out text, kept in one fold; the gap's interval is
  Nadeau–Bengio corrected, and ``settled`` means the leader beats the runner-up at the stated
  confidence by the corrected t-test **and** the Wilcoxon signed-rank test. Method ``paired_cv``
  (GRACE) or ``paired`` (predictors that are means over prompts). G-Vendi, which has no per-prompt
  contribution, is settled by method ``subsampling``: its leader's P(top-1) reaches the confidence.
* **P(top-1)** is the stability of the top spot at half the prompts: the share of subsamples of
  ``n // 2`` prompts, drawn without replacement and the same for every candidate, in which the
  candidate scores best (ties share).
* Each candidate's **learning curve** (:mod:`~grace_engine.science.learning_curve`): its score at ``n/4``,
  ``n/2``, ``3n/4`` (means over subsamples without replacement) and ``n``, fitted as ``a + c/b``.
  ``prompts_to_settle`` extrapolates the leader's gap along the curves, with the interval shrinking
  as ``1/sqrt(b)``; ``curves_cross_at`` says when the runner-up's curve would overtake.

No model runs: everything comes from the per-example rows of the job (and the responses' texts, for
the copies). A fanned-out job's units compute their own candidate's :class:`Draws` (subsample values
and contributions depend on nothing else), and the assembly reuses them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_limits

from grace_engine.errors import InvalidInput
from grace_engine.memory import available_cpus
from grace_engine.science import crossval, learning_curve
from grace_engine.science.crossval import Comparison
from grace_engine.science.evidence import Evidence, GraceSettings
from grace_engine.science.grace import grace_subsets, subset_chunk
from grace_engine.science.learning_curve import LearningCurve
from grace_engine.science.near_duplicates import find_copies
from grace_engine.science.predictors import better_first, predictor, value

FloatArray = npt.NDArray[np.float64]
Method = Literal["paired_cv", "paired", "subsampling"]

DEFAULT_RESAMPLES = 200  # subsamples of n/2 prompts for P(top-1)
CURVE_SUBSAMPLES = 20  # subsamples at n/4 and 3n/4 for the learning curves
DEFAULT_CONFIDENCE = 0.9
MIN_CURVE_PROMPTS = 4  # a subsample smaller than this has too few splits to mean anything


@dataclass(frozen=True)
class Draws:
    """What one candidate's uncertainty needs from its own evidence alone: its score on every
    subsample of :func:`subsample_plan` (NaN where undefined), its ``(repeats, n)`` per-prompt
    contributions (None for a predictor without them), and how many of its responses copy a
    response to another prompt (``copy_rows``, in ``copy_clusters`` clusters)."""

    subsamples: FloatArray
    contributions: FloatArray | None
    copy_rows: int = 0
    copy_clusters: int = 0

    @property
    def cv_score(self) -> float | None:
        """The score as the paired cross-validation estimates it: the mean contribution."""
        return None if self.contributions is None else float(np.nanmean(self.contributions))

    def to_json(self) -> dict[str, Any]:
        """JSON-ready (NaN as null); :meth:`from_json` reads it back exactly."""
        return {
            "subsamples": _nulls(self.subsamples),
            "contributions": None if self.contributions is None else [_nulls(r) for r in self.contributions],
            "copy_rows": self.copy_rows,
            "copy_clusters": self.copy_clusters,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Draws:
        rows = d["contributions"]
        return cls(
            _nans(d["subsamples"]),
            None if rows is None else np.array([_nans(r) for r in rows]).reshape(len(rows), -1),
            int(d["copy_rows"]),
            int(d["copy_clusters"]),
        )


def _nulls(values: FloatArray) -> list[float | None]:
    return [None if math.isnan(v) else float(v) for v in values.tolist()]


def _nans(values: Sequence[float | None]) -> FloatArray:
    return np.array([math.nan if v is None else v for v in values], dtype=np.float64)


@dataclass(frozen=True)
class CandidateUncertainty:
    """One candidate's share of the uncertainty.

    Attributes:
        p_top1: share of subsamples of ``n // 2`` prompts in which it scores best.
        cv_score: its score as the paired cross-validation estimates it (mean contribution); gaps
            are differences of these. None without contributions.
        vs_leader: its paired comparison with the leader (None for the leader, and for G-Vendi).
        curve: its learning curve.
        copy_rows, copy_clusters: responses that (nearly) copy a response to another prompt, and
            their clusters.
    """

    p_top1: float
    cv_score: float | None
    vs_leader: Comparison | None
    curve: LearningCurve
    copy_rows: int = 0
    copy_clusters: int = 0


@dataclass(frozen=True)
class Uncertainty:
    """The uncertainty of a ranking by ``score`` over ``n_prompts`` prompts (module docstring).

    ``settled``: the leader beats the runner-up at ``confidence`` (by ``method``). When not,
    ``prompts_to_settle`` is the total prompts the learning curves say would settle it (None when
    they say no number would, or the mean gap already clears and only the signed-rank test does
    not), and ``curves_cross_at`` the prompt count from which the runner-up's curve leads.
    """

    method: Method
    score: str
    n_prompts: int
    confidence: float
    seed: int
    folds: int
    repeats: int
    n_subsamples: int
    subsample_size: int
    candidates: dict[str, CandidateUncertainty]
    leader: str
    runner_up: str | None
    settled: bool
    prompts_to_settle: int | None
    curves_cross_at: int | None
    draws: dict[str, Draws] = field(default_factory=dict, repr=False, compare=False)


def subsample_plan(
    n_prompts: int, n_subsamples: int, seed: int
) -> list[tuple[int, list[npt.NDArray[np.int64]]]]:
    """The subsamples every candidate is scored on: ``n_subsamples`` of ``max(2, n // 2)`` prompts
    (P(top-1) and the curve's midpoint), then :data:`CURVE_SUBSAMPLES` at ``n/4`` and at ``3n/4``
    where those are at least :data:`MIN_CURVE_PROMPTS` and below ``n``. Prompt indices sorted; drawn
    without replacement from one seeded generator, so the plan depends only on its arguments."""
    rng = np.random.default_rng(seed)
    half = max(2, n_prompts // 2)
    sizes = [(half, n_subsamples)]
    for b in (n_prompts // 4, (3 * n_prompts) // 4):
        if MIN_CURVE_PROMPTS <= b < n_prompts and b != half:
            sizes.append((b, CURVE_SUBSAMPLES))
    return [(b, [np.sort(rng.choice(n_prompts, b, replace=False)) for _ in range(k)]) for b, k in sizes]


def _texts_of(ev: Evidence, texts: Sequence[Sequence[str]]) -> list[Sequence[str]]:
    return [texts[p] for p in ev.prompt_index.tolist()]


def draws_steps(ev: Evidence, score: str, settings: GraceSettings, *, n_subsamples: int, seed: int) -> int:
    """How many times :func:`draws_of` calls its ``tick`` for these arguments."""
    groups = subsample_plan(ev.n_prompts, n_subsamples, seed)
    if score == "grace" and ev.has_gradients:
        d = ev.gradients.shape[1]
        chunks = [-(-len(idx) // subset_chunk(b, ev.m, d, settings.test_fraction)) for b, idx in groups]
        return settings.n_splits * sum(chunks)
    return sum(len(idx) for _, idx in groups)


def draws_of(
    ev: Evidence,
    score: str,
    settings: GraceSettings,
    *,
    texts: Sequence[Sequence[str]] | None,
    n_subsamples: int,
    seed: int,
    tick: Callable[[], None] | None = None,
) -> Draws:
    """One candidate's :class:`Draws` (``texts``: its responses per job prompt, for the copies;
    ``tick``: before each stacked split, or each subsample of another score, as
    :func:`~grace_engine.science.grace.grace`'s)."""
    n = ev.n_prompts
    groups = subsample_plan(n, n_subsamples, seed)
    if score == "grace" and ev.has_gradients:  # every subsample of a size at once (stacked splits)
        subsamples = np.concatenate(
            [
                grace_subsets(
                    ev.gradients,
                    ev.m,
                    np.stack(idx),
                    n_splits=settings.n_splits,
                    test_fraction=settings.test_fraction,
                    smoothing=settings.smoothing,
                    tick=tick,
                )
                for _, idx in groups
            ]
        )
    else:

        def one(idx: npt.NDArray[np.int64]) -> float:
            if tick is not None:
                tick()
            v = value(score, ev.take(idx), settings, max_workers=1)
            return math.nan if v is None else v

        # One subsample per core, each single-threaded: many small factorisations scale better so.
        with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(available_cpus()) as pool:
            subsamples = np.array(
                list(pool.map(one, [i for _, idx in groups for i in idx])), dtype=np.float64
            )
    copies = None if texts is None else find_copies(_texts_of(ev, texts))
    contributions = None
    per_prompt = predictor(score).contributions
    if per_prompt is not None:
        folds = crossval.fold_assignment(n, seed=seed)
        contributions = per_prompt(ev, folds, settings, None if copies is None else copies.cluster)
    if copies is None:
        return Draws(subsamples, contributions)
    return Draws(subsamples, contributions, copies.n_rows, copies.n_clusters)


def rank_uncertainty(
    evidence: Mapping[str, Evidence],
    score: str,
    point: Mapping[str, float],
    *,
    settings: GraceSettings,
    texts: Mapping[str, Sequence[Sequence[str]]] | None = None,
    n_subsamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
    known: Mapping[str, Draws] | None = None,
    ticks: Mapping[str, Callable[[], None]] | None = None,
) -> Uncertainty:
    """The uncertainty of the ranking by ``score`` (module docstring).

    Args:
        evidence: per candidate, rows over the same prompts in the same order.
        point: the candidates' scores on all prompts (the ranking's values); the leader and
            runner-up are taken from them.
        texts: per candidate, its responses per job prompt (indexed by ``Evidence.prompt_index``):
            copies of a held-out text are kept off the training side. None: not looked for.
        n_subsamples: subsamples of ``n // 2`` prompts for P(top-1).
        seed: of the subsamples and the folds.
        known: per candidate, its :func:`draws_of` from the same evidence, score, settings, prompts,
            texts, subsamples and seed (a fanned-out job's units compute their own): used as given.
        ticks: per candidate, :func:`draws_of`'s ``tick`` (progress and stopping).
    """
    if n_subsamples < 1:
        raise InvalidInput("must be at least 1", field="bootstrap")
    if not 0.0 < confidence < 1.0:
        raise InvalidInput("must be strictly between 0 and 1", field="confidence")
    n_set = {ev.n_prompts for ev in evidence.values()}
    if len(n_set) != 1:
        raise InvalidInput("candidates must share their prompts", field="candidates")
    n = n_set.pop()
    if n < 2:
        raise InvalidInput("the uncertainty needs at least 2 prompts", field="prompts")
    plan = subsample_plan(n, n_subsamples, seed)
    total = sum(len(s) for _, s in plan)
    draws: dict[str, Draws] = {}
    for name, ev in evidence.items():
        given = (known or {}).get(name)
        if given is not None and given.subsamples.shape != (total,):
            raise ValueError("known draws must have one value per subsample")
        if given is None:
            given = draws_of(
                ev,
                score,
                settings,
                texts=None if texts is None else texts[name],
                n_subsamples=n_subsamples,
                seed=seed,
                tick=(ticks or {}).get(name),
            )
        draws[name] = given
    names = list(evidence)
    lower = predictor(score).lower_is_better
    half = np.stack([draws[c].subsamples[:n_subsamples] for c in names], axis=1)
    kept = half[~np.isnan(half).any(axis=1)]
    if kept.shape[0] == 0:
        raise InvalidInput(f"{score} cannot be computed on half the prompts", field="bootstrap")
    best = kept.min(axis=1, keepdims=True) if lower else kept.max(axis=1, keepdims=True)
    wins = kept == best
    p_top1 = dict(zip(names, (wins / wins.sum(axis=1, keepdims=True)).mean(axis=0).tolist(), strict=True))

    curves = {c: _curve(plan, draws[c].subsamples, n, point[c]) for c in names}
    order = better_first(dict(point), score)
    leader, runner_up = order[0], (order[1] if len(order) > 1 else None)
    folds = crossval.fold_assignment(n, seed=seed)
    lead = draws[leader].contributions
    comparisons: dict[str, Comparison | None] = {c: None for c in names}
    if lead is not None:
        for c in names:
            other = draws[c].contributions
            if c != leader and other is not None:
                comparisons[c] = crossval.compare(
                    lead, other, folds, lower_is_better=lower, confidence=confidence, trained=score == "grace"
                )
    method: Method = "subsampling" if lead is None else ("paired_cv" if score == "grace" else "paired")
    if runner_up is None:
        settled = True
    elif method == "subsampling":
        settled = p_top1[leader] >= confidence
    else:
        versus = comparisons[runner_up]
        settled = versus is not None and versus.leader_wins(confidence)
    needed = cross = None
    if runner_up is not None:
        cross = learning_curve.crossing(curves[leader], curves[runner_up], n, lower_is_better=lower)
        versus = comparisons[runner_up]
        if not settled and versus is not None:
            needed = _prompts_to_settle(versus, curves[leader], curves[runner_up], n, lower, confidence)
    per = {
        c: CandidateUncertainty(
            p_top1=p_top1[c],
            cv_score=draws[c].cv_score,
            vs_leader=comparisons[c],
            curve=curves[c],
            copy_rows=draws[c].copy_rows,
            copy_clusters=draws[c].copy_clusters,
        )
        for c in names
    }
    return Uncertainty(
        method=method,
        score=score,
        n_prompts=n,
        confidence=confidence,
        seed=seed,
        folds=min(crossval.FOLDS, n),
        repeats=crossval.REPEATS,
        n_subsamples=int(kept.shape[0]),
        subsample_size=plan[0][0],
        candidates=per,
        leader=leader,
        runner_up=runner_up,
        settled=settled,
        prompts_to_settle=needed,
        curves_cross_at=cross,
        draws=draws,
    )


def _curve(
    plan: list[tuple[int, list[npt.NDArray[np.int64]]]], subsamples: FloatArray, n: int, at_n: float
) -> LearningCurve:
    sizes, values, start = [], [], 0
    for b, idx in plan:
        chunk = subsamples[start : start + len(idx)]
        start += len(idx)
        if b >= MIN_CURVE_PROMPTS and not np.isnan(chunk).all():
            sizes.append(b)
            values.append(float(np.nanmean(chunk)))
    return learning_curve.fit([*sizes, n], [*values, at_n])


def _prompts_to_settle(
    versus: Comparison,
    leader: LearningCurve,
    runner_up: LearningCurve,
    n: int,
    lower: bool,
    confidence: float,
) -> int | None:
    """The gap at ``b`` is the cross-validated gap at ``n`` moved as the curves move between ``n``
    and ``b`` (a constant gap when they are not fitted), oriented so that positive favours the
    leader; None when it already clears at ``n`` (only the signed-rank test holds it back)."""
    sign = 1.0 if lower else -1.0

    def gap_at(b: float) -> float:
        moved = 0.0
        if leader.fitted and runner_up.fitted:
            moved = (runner_up.at(b) - leader.at(b)) - (runner_up.at(n) - leader.at(n))
        return sign * (versus.gap + moved)

    needed = learning_curve.prompts_to_settle(gap_at, versus.se, n, versus.df, confidence)
    return None if needed is None or needed <= n else needed
