"""Paired, grouped, repeated K-fold cross-validation over prompts (design §2.11).

GRACE is a cross-validated quantity whose value depends on how many prompts train each split, so
its uncertainty is measured where it is defined: at the job's ``n``. Every repeat partitions the
prompts into ``K`` folds (all responses of a prompt in one fold; every copy of a held-out text, as
:mod:`~grace_engine.science.near_duplicates` finds them, kept off the training side), and each prompt gets
a **contribution**: the mean over its responses of the held-out whitened energy ``x^T K_tr^-1 x``,
with ``K_tr`` trained on the other folds, exactly as a GRACE split whitens. With ``K = 10`` a fold
trains on 90% of the prompts, as a GRACE split does, so the mean contribution estimates the same
quantity as GRACE with far less split noise. Candidates share the folds, so two candidates'
contributions on a prompt are compared **paired**.

Predictors that are means over responses (G-Norm, length, teacher accuracy) contribute their
per-prompt means; the ratio estimators (student NLL, RSR) their delta-method linearisation, whose
mean is the predictor's value exactly. These train nothing, so their comparison is a plain paired
test over prompts. G-Vendi, a spectral statistic of the whole set, has no per-prompt contribution.

A :class:`Comparison` of a candidate with the leader reports the mean difference, a Nadeau–Bengio
corrected t interval (the folds' training sets overlap, which a naive t-test ignores: Nadeau &
Bengio 2003, as Bouckaert & Frank 2004 apply it to repeated K-fold), a one-sided Wilcoxon
signed-rank test on the per-prompt differences (the contributions are heavy-tailed), and the share
of prompts that favour each side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from grace_engine.errors import InvalidInput
from grace_engine.science.evidence import Evidence
from grace_engine.science.grace import fold_energies

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

FOLDS = 10  # a fold trains on 90% of the prompts, as a GRACE split with test_fraction 0.1 does
REPEATS = 10  # 10 x 10-fold: Bouckaert & Frank's recommendation for a replicable corrected test


def fold_assignment(n_prompts: int, *, folds: int = FOLDS, repeats: int = REPEATS, seed: int = 0) -> IntArray:
    """``(repeats, n_prompts)``: the fold of each prompt in each repeat; each repeat a seeded
    permutation cut into ``min(folds, n_prompts)`` folds whose sizes differ by at most one."""
    if n_prompts < 2:
        raise InvalidInput("cross-validation needs at least 2 prompts", field="prompts")
    k = min(folds, n_prompts)
    out = np.empty((repeats, n_prompts), dtype=np.int64)
    for r in range(repeats):
        for j, part in enumerate(np.array_split(np.random.default_rng([seed, r]).permutation(n_prompts), k)):
            out[r, part] = j
    return out


def held_out_row_energies(
    ev: Evidence, folds: IntArray, *, smoothing: float = 1e-3, copies: IntArray | None = None
) -> FloatArray:
    """``(repeats, N)`` per repeat, each response's held-out whitened energy ``x^T K_tr^-1 x``, with
    ``K_tr`` trained on the other folds of that repeat (module docstring).

    Args:
        folds: ``(repeats, n)`` the fold of each of ``ev``'s prompts (:func:`fold_assignment`).
        copies: ``(N,)`` per row its near-duplicate cluster
            (:class:`~grace_engine.science.near_duplicates.Copies`):
            rows of a cluster with a held-out member are left out of that fold's training side.
            Ignored where that would leave a fold fewer than ``m`` training rows.
    """
    if not ev.has_gradients:
        raise InvalidInput("GRACE contributions need gradients", field="predictors")
    repeat_of: list[int] = []
    splits: list[tuple[IntArray, IntArray]] = []
    for r, assignment in enumerate(folds):
        for j in np.unique(assignment):
            repeat_of.append(r)
            splits.append(
                (ev.rows(np.flatnonzero(assignment == j)), ev.rows(np.flatnonzero(assignment != j)))
            )
    if copies is not None:
        purged = [(test, train[~np.isin(copies[train], copies[test])]) for test, train in splits]
        if min(len(train) for _, train in purged) >= ev.m:
            splits = purged
    energies = fold_energies(ev.gradients, splits, smoothing=smoothing)
    rows = np.empty((len(folds), ev.losses.shape[0]))
    for r, (test, _), e in zip(repeat_of, splits, energies, strict=True):
        rows[r, test] = e
    return rows


def grace_contributions(
    ev: Evidence, folds: IntArray, *, smoothing: float = 1e-3, copies: IntArray | None = None
) -> FloatArray:
    """``(repeats, n)`` per repeat, each prompt's contribution: the mean of its responses'
    :func:`held_out_row_energies` (same arguments)."""
    rows = held_out_row_energies(ev, folds, smoothing=smoothing, copies=copies)
    contributions: FloatArray = rows.reshape(len(folds), ev.n_prompts, ev.m).mean(axis=2)
    return contributions


@dataclass(frozen=True)
class Comparison:
    """A candidate against the leader, prompt by prompt, in the score's units.

    Attributes:
        gap: the mean over prompts of (candidate's contribution - leader's): the score difference
            as the cross-validation estimates it at the job's ``n``.
        interval: its two-sided ``confidence`` interval (Nadeau–Bengio corrected when the score is
            cross-validated, else a paired t interval over prompts); it is centred on ``gap``.
        p_value: one-sided, of the t statistic against "the leader is no better".
        wilcoxon_p: one-sided Wilcoxon signed-rank p-value on the per-prompt differences, same
            alternative.
        leader_better, candidate_better: shares of the prompts on which each side's contribution is
            the better one (the rest are ties).
        n_prompts: prompts compared (teacher accuracy: those with answers).
        se, df: the (corrected) standard error of ``gap`` and its t degrees of freedom.
    """

    gap: float
    interval: tuple[float, float]
    se: float
    df: int
    p_value: float
    wilcoxon_p: float
    leader_better: float
    candidate_better: float
    n_prompts: int

    def leader_wins(self, confidence: float) -> bool:
        """The leader beats this candidate at ``confidence``: the interval excludes 0 on the
        leader's side and the signed-rank test rejects at the same one-sided level."""
        alpha = (1.0 - confidence) / 2
        return self.p_value < alpha and self.wilcoxon_p < alpha


def compare(
    leader: FloatArray,
    other: FloatArray,
    folds: IntArray,
    *,
    lower_is_better: bool,
    confidence: float,
    trained: bool,
) -> Comparison:
    """Compare ``other`` with ``leader`` (both ``(repeats, n)`` contributions on shared ``folds``)."""
    from scipy import stats

    diff = other - leader  # candidate - leader, raw units
    keep = ~np.isnan(diff).any(axis=0)
    if keep.sum() < 2:
        raise InvalidInput("a paired comparison needs at least 2 prompts with values", field="prompts")
    diff, assignment = diff[:, keep], folds[:, keep]
    per_prompt = diff.mean(axis=0)
    gap = float(per_prompt.mean())
    sign = 1.0 if lower_is_better else -1.0  # oriented: positive = the leader is better
    if trained:
        fold_means, ratios = [], []
        for r in range(diff.shape[0]):
            for j in np.unique(assignment[r]):
                held = assignment[r] == j
                fold_means.append(diff[r, held].mean())
                ratios.append(held.sum() / (~held).sum())
        spread = float(np.var(fold_means, ddof=1)) if len(fold_means) > 1 else 0.0
        se = math.sqrt((1.0 / len(fold_means) + float(np.mean(ratios))) * spread)
        df = len(fold_means) - 1
    else:
        se = float(np.std(per_prompt, ddof=1)) / math.sqrt(len(per_prompt))
        df = len(per_prompt) - 1
    half = float(stats.t.ppf((1.0 + confidence) / 2, df)) * se
    oriented = sign * gap
    # A zero spread: the sign of the gap is certain.
    p_value = float(stats.t.sf(oriented / se, df)) if se > 0 else (0.0 if oriented > 0 else 1.0)
    signed = sign * per_prompt
    nonzero = signed[signed != 0]
    wilcoxon_p = 1.0  # no prompt favours either side
    if len(nonzero):
        wilcoxon_p = float(stats.wilcoxon(nonzero, alternative="greater").pvalue)
    return Comparison(
        gap=gap,
        interval=(gap - half, gap + half),
        se=se,
        df=df,
        p_value=p_value,
        wilcoxon_p=wilcoxon_p,
        leader_better=float(np.mean(signed > 0)),
        candidate_better=float(np.mean(signed < 0)),
        n_prompts=len(per_prompt),
    )
