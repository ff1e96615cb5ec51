"""Every predictor of teacher quality, each one object in one registry (:data:`PREDICTORS`).

A :class:`Predictor` says its name, the direction in which it ranks teachers, what it needs (the
student's forward pass, its gradients, or only the prompts' answers), and how it is computed from
a candidate's :class:`~grace_engine.science.evidence.Evidence` under optional per-prompt weights
(a resample over prompts), with, where it has them, its per-prompt contributions (the paired
comparisons of :mod:`~grace_engine.science.uncertainty`). Results, the CLI table, the API, the
dashboard, leaderboards and the validation correlations all iterate over the registry: a new
predictor is one more entry here.

==================== ================ ==========================================================
name                 better when      needs
==================== ================ ==========================================================
``grace``            lower            gradients (the backward pass)
``g_norm``           lower            gradients
``g_vendi``          higher           gradients
``student_nll``      lower            the forward pass
``rsr``              lower            the forward pass (Rank-Surprisal Ratio, Yang et al. 2026)
``length``           higher           the forward pass (mean response tokens: a confounder to watch)
``teacher_accuracy`` higher           nothing (the responses' answers against the prompts')
==================== ================ ==========================================================
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from grace_engine.errors import InvalidInput
from grace_engine.science.crossval import grace_contributions
from grace_engine.science.evidence import Evidence, FloatArray, GraceSettings
from grace_engine.science.grace import NORM_EPS, GraceResult, grace, unit_rows

IntArray = npt.NDArray[np.int64]


class Need(StrEnum):
    """What a predictor needs beyond the responses."""

    GRADIENTS = "gradients"  # the student's backward pass
    FORWARD = "forward"  # the student's forward pass
    ANSWERS = "answers"  # answers on the prompts; no model


# (evidence, settings, per-prompt weights or None, GRACE's max_workers) -> value, None where undefined
Compute = Callable[[Evidence, GraceSettings, FloatArray | None, int | None], float | None]
# (evidence, folds (repeats, n), settings, near-duplicate cluster per row or None) -> (repeats, n)
Contributions = Callable[[Evidence, IntArray, GraceSettings, IntArray | None], FloatArray]


@dataclass(frozen=True)
class Predictor:
    """One predictor of teacher quality.

    Attributes:
        name: its name in requests, results and tables.
        lower_is_better: the direction in which it ranks teachers.
        needs: what it needs (:class:`Need`); a gradient predictor is None without gradients.
        summary: one line for ``GET /v1/predictors``.
        label: its column header in tables.
        fmt: how tables print its value (a format spec).
        compute: its value (see :data:`Compute`).
        contributions: per prompt, what the paired comparison of two candidates differences (see
            :data:`Contributions`); None: it has none (its uncertainty comes from subsampling).
    """

    name: str
    lower_is_better: bool
    needs: Need
    summary: str
    label: str
    fmt: str
    compute: Compute
    contributions: Contributions | None = None

    def value(
        self,
        ev: Evidence,
        settings: GraceSettings,
        weights: FloatArray | None = None,
        max_workers: int | None = None,
    ) -> float | None:
        """Its value on ``ev`` (``weights``: per-prompt multiplicities of a resample); None where it
        cannot be computed (no gradients for a gradient predictor, no answers for accuracy)."""
        if self.needs == Need.GRADIENTS and not ev.has_gradients:
            return None
        return self.compute(ev, settings, weights, max_workers)


def _row_weights(ev: Evidence, weights: FloatArray | None) -> FloatArray:
    return np.ones(ev.losses.shape[0]) if weights is None else np.repeat(weights, ev.m)


def _per_prompt(rows: FloatArray, m: int) -> FloatArray:
    means: FloatArray = rows.reshape(-1, m).mean(axis=1)
    return means


def _means(per_prompt: Callable[[Evidence], FloatArray]) -> Contributions:
    """The contributions of a predictor that trains nothing: the same per-prompt values in every
    repeat, whose mean over prompts is the predictor's value."""

    def contributions(
        ev: Evidence, folds: IntArray, settings: GraceSettings, copies: IntArray | None
    ) -> FloatArray:
        del settings, copies
        out: FloatArray = np.broadcast_to(per_prompt(ev), folds.shape).copy()
        return out

    return contributions


def grace_of(
    ev: Evidence,
    settings: GraceSettings,
    weights: FloatArray | None = None,
    max_workers: int | None = None,
    tick: Callable[[], None] | None = None,
) -> GraceResult:
    """GRACE of the evidence, with its split scores (``weights``: per-prompt multiplicities of a
    resample; ``max_workers`` and ``tick`` as :func:`~grace_engine.science.grace.grace`)."""
    return grace(
        ev.gradients,
        ev.m,
        n_splits=settings.n_splits,
        test_fraction=settings.test_fraction,
        smoothing=settings.smoothing,
        max_workers=max_workers,
        prompt_weights=weights,
        tick=tick,
    )


def _grace(ev: Evidence, settings: GraceSettings, w: FloatArray | None, workers: int | None) -> float:
    return grace_of(ev, settings, w, workers).score


def _grace_contributions(
    ev: Evidence, folds: IntArray, settings: GraceSettings, copies: IntArray | None
) -> FloatArray:
    return grace_contributions(ev, folds, smoothing=settings.smoothing, copies=copies)


def _g_norm(ev: Evidence, settings: GraceSettings, w: FloatArray | None, workers: int | None) -> float:
    """Mean squared L2 norm of the gradient rows."""
    return float(np.average(np.sum(ev.gradients**2, axis=1), weights=_row_weights(ev, w)))


def _g_vendi(ev: Evidence, settings: GraceSettings, w: FloatArray | None, workers: int | None) -> float:
    """Vendi score of the gradients: ``exp`` of the entropy of the trace-normalized eigenvalues of
    the second moment of the L2-normalized rows, each repeated as often as its weight says. From 1
    (all rows parallel) to ``min(rows, d)`` (orthogonal rows); 0 when every row is zero."""
    x = unit_rows(ev.gradients) * np.sqrt(_row_weights(ev, w))[:, None]
    # Same non-zero spectrum either way; use the smaller Gram matrix.
    gram = x @ x.T if x.shape[0] <= x.shape[1] else x.T @ x
    eig = np.clip(np.linalg.eigvalsh(gram), 0.0, None)
    total = eig.sum()
    if total <= 0.0:
        return 0.0
    p = eig[eig > 0] / total
    return float(np.exp(-np.sum(p * np.log(p))))


def _student_nll(ev: Evidence, settings: GraceSettings, w: FloatArray | None, workers: int | None) -> float:
    """Token-weighted mean NLL (nats/token) of the responses under the student."""
    tokens = ev.n_tokens * _row_weights(ev, w)
    return float(np.sum(ev.losses * tokens) / np.sum(tokens))


def _student_nll_per_prompt(ev: Evidence) -> FloatArray:
    # V = sum(l t) / sum(t); linearised: V + (L_p - V T_p) / mean_p(T_p), whose mean is V.
    lt, t = _per_prompt(ev.losses * ev.n_tokens, ev.m), _per_prompt(ev.n_tokens, ev.m)
    v = lt.sum() / t.sum()
    linear: FloatArray = v + (lt - v * t) / t.mean()
    return linear


def _rsr(ev: Evidence, settings: GraceSettings, w: FloatArray | None, workers: int | None) -> float:
    """The mean over responses of the average clipped target rank, over the mean of the average NLL
    (nats/token), as the released code aggregates a dataset (a ratio of means)."""
    rows = _row_weights(ev, w)
    avg_rank = ev.rank_sums / np.maximum(ev.n_tokens, 1.0)
    return float(
        np.average(avg_rank, weights=rows) / max(float(np.average(ev.losses, weights=rows)), NORM_EPS)
    )


def _rsr_per_prompt(ev: Evidence) -> FloatArray:
    # V = mean(avg rank) / mean(loss); linearised: V + (A_p - V B_p) / mean_p(B_p).
    a = _per_prompt(ev.rank_sums / np.maximum(ev.n_tokens, 1.0), ev.m)
    b = _per_prompt(ev.losses, ev.m)
    v = a.mean() / max(b.mean(), NORM_EPS)
    ratio: FloatArray = v + (a - v * b) / max(b.mean(), NORM_EPS)
    return ratio


def _length(ev: Evidence, settings: GraceSettings, w: FloatArray | None, workers: int | None) -> float:
    return float(np.average(ev.n_tokens, weights=_row_weights(ev, w)))


def _accuracy(
    ev: Evidence, settings: GraceSettings, w: FloatArray | None, workers: int | None
) -> float | None:
    known = ~np.isnan(ev.correct)
    rows = _row_weights(ev, w)
    return float(np.average(ev.correct[known], weights=rows[known])) if known.any() else None


def _accuracy_per_prompt(ev: Evidence) -> FloatArray:
    with np.errstate(invalid="ignore"):
        per: FloatArray = np.nanmean(ev.correct.reshape(-1, ev.m), axis=1)
    return per


PREDICTORS: dict[str, Predictor] = {
    p.name: p
    for p in (
        Predictor(
            "grace",
            True,
            Need.GRADIENTS,
            "GRACE: held-out whitened gradient energy (Panigrahi et al. 2026)",
            "GRACE",
            ".4g",
            _grace,
            _grace_contributions,
        ),
        Predictor(
            "g_norm",
            True,
            Need.GRADIENTS,
            "mean squared norm of the projected gradients",
            "G-Norm",
            ".4g",
            _g_norm,
            _means(lambda ev: _per_prompt(np.sum(ev.gradients**2, axis=1), ev.m)),
        ),
        Predictor(
            "g_vendi",
            False,
            Need.GRADIENTS,
            "Vendi score (diversity) of the gradient directions",
            "G-Vendi",
            ".4g",
            _g_vendi,
        ),
        Predictor(
            "student_nll",
            True,
            Need.FORWARD,
            "the student's NLL of the responses, nats/token",
            "student NLL",
            ".3f",
            _student_nll,
            _means(_student_nll_per_prompt),
        ),
        Predictor(
            "rsr",
            True,
            Need.FORWARD,
            "Rank-Surprisal Ratio (Yang et al. 2026)",
            "RSR",
            ".4g",
            _rsr,
            _means(_rsr_per_prompt),
        ),
        Predictor(
            "length",
            False,
            Need.FORWARD,
            "mean response length in student tokens (a confounder to watch)",
            "tokens",
            ".0f",
            _length,
            _means(lambda ev: _per_prompt(ev.n_tokens, ev.m)),
        ),
        Predictor(
            "teacher_accuracy",
            False,
            Need.ANSWERS,
            "share of responses whose final answer matches the prompt's",
            "teacher acc",
            ".1%",
            _accuracy,
            _means(_accuracy_per_prompt),
        ),
    )
}
PREDICTOR_NAMES: tuple[str, ...] = tuple(PREDICTORS)


def predictor(name: str, *, field: str = "predictors") -> Predictor:
    """The predictor called ``name``; an unknown name is refused naming ``field``."""
    found = PREDICTORS.get(name)
    if found is None:
        raise InvalidInput(
            f"unknown predictor {name!r}; choose from {', '.join(PREDICTOR_NAMES)}", field=field
        )
    return found


def check_predictors(names: Sequence[str], rank_by: str) -> None:
    """Refuse unknown, repeated or empty predictor lists, and a ``rank_by`` not among them."""
    if not names:
        raise InvalidInput("must name at least one predictor", field="predictors")
    for name in names:
        predictor(name)
    if len(set(names)) != len(names):
        raise InvalidInput("lists a predictor twice", field="predictors")
    if rank_by not in names:
        raise InvalidInput(f"{rank_by!r} is not among the job's predictors", field="rank_by")


def needs_gradients(names: Sequence[str]) -> bool:
    """Whether any of ``names`` needs the backward pass."""
    return any(predictor(n).needs == Need.GRADIENTS for n in names)


def value(
    name: str,
    ev: Evidence,
    settings: GraceSettings,
    weights: FloatArray | None = None,
    max_workers: int | None = None,
) -> float | None:
    """Predictor ``name`` on ``ev`` (:meth:`Predictor.value`)."""
    return predictor(name).value(ev, settings, weights, max_workers)


def better_first(values: dict[str, float], name: str) -> list[str]:
    """Candidate names ordered best first by predictor ``name`` (name breaks exact ties)."""
    sign = 1.0 if predictor(name).lower_is_better else -1.0
    return sorted(values, key=lambda c: (sign * values[c], c))


__all__ = ["PREDICTORS", "PREDICTOR_NAMES", "Evidence", "GraceSettings", "Need", "Predictor"]
