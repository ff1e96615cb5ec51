"""Every predictor of teacher quality, computed from one candidate's per-example evidence.

A candidate's :class:`Evidence` is what the student's passes over its responses leave behind, row by
row and prompt-major (the ``m`` responses of a prompt adjacent): projected gradients, losses,
response tokens and target ranks, and whether each response's answer is right. Every predictor is a
function of these rows and of optional per-prompt weights, so a bootstrap resample over prompts
(:mod:`~grace_engine.uncertainty`) re-computes all of them without running a model again: a prompt
drawn ``k`` times is given weight ``k``.

Predictors (design §2.5, §2.11), with the direction in which each ranks teachers:

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

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

from grace_engine.errors import InvalidInput
from grace_engine.scores import GraceResult, g_vendi, grace, prompt_rows, student_nll

FloatArray = npt.NDArray[np.float64]

PredictorName = Literal["grace", "g_norm", "g_vendi", "student_nll", "rsr", "length", "teacher_accuracy"]
LOWER_IS_BETTER: dict[str, bool] = {
    "grace": True,
    "g_norm": True,
    "g_vendi": False,
    "student_nll": True,
    "rsr": True,
    "length": False,
    "teacher_accuracy": False,
}
PREDICTOR_NAMES: tuple[str, ...] = get_args(PredictorName)
GRADIENT_PREDICTORS: frozenset[str] = frozenset({"grace", "g_norm", "g_vendi"})


@dataclass(frozen=True)
class GraceSettings:
    """The cross-validation settings GRACE is computed with (design §2.5)."""

    n_splits: int = 10
    test_fraction: float = 0.1
    smoothing: float = 1e-3


@dataclass(frozen=True)
class Evidence:
    """One candidate's per-example rows, prompt-major, ``m`` per prompt.

    Attributes:
        gradients: ``(N, d)`` float64 projected gradients (any length factor applied); ``d = 0``
            when the job ran without the backward pass.
        losses: ``(N,)`` mean NLL of each response's tokens, nats/token.
        n_tokens: ``(N,)`` response tokens (EOS included).
        rank_sums: ``(N,)`` summed clipped target ranks.
        correct: ``(N,)`` 1.0/0.0 whether the response's answer matches its prompt's, NaN where the
            prompt carries no answer.
        m: responses per prompt.
        prompts: ``(N / m,)`` the job's index of each prompt (a budget-aware ranking takes them in
            a seeded order); None: ``0 .. n - 1``.
    """

    gradients: FloatArray
    losses: FloatArray
    n_tokens: FloatArray
    rank_sums: FloatArray
    correct: FloatArray
    m: int
    prompts: npt.NDArray[np.int64] | None = None

    @property
    def prompt_index(self) -> npt.NDArray[np.int64]:
        """The job's index of each prompt of this evidence, in row order."""
        return np.arange(self.n_prompts) if self.prompts is None else self.prompts

    @property
    def n_prompts(self) -> int:
        return int(self.losses.shape[0] // self.m)

    @property
    def has_gradients(self) -> bool:
        return bool(self.gradients.shape[1] > 0)

    def rows(self, prompts: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Row indices of ``prompts`` (prompt indices into this evidence), prompt-major."""
        return prompt_rows(np.asarray(prompts, dtype=np.int64), self.m)

    def take(self, prompts: npt.ArrayLike) -> Evidence:
        """The evidence of ``prompts`` only, in that order."""
        r = self.rows(prompts)
        return Evidence(
            self.gradients[r],
            self.losses[r],
            self.n_tokens[r],
            self.rank_sums[r],
            self.correct[r],
            self.m,
            self.prompt_index[np.asarray(prompts, dtype=np.int64)],
        )

    def folded(self, d: int) -> Evidence:
        """The evidence with its projected gradients folded to ``d`` dimensions (coordinate b goes
        to b mod d; ``d`` divides the current dimension) and scaled by ``sqrt(d / current)``. A
        CountSketch folds to a CountSketch with ``d`` buckets, a dense ±1 map to a dense map with
        i.i.d. entries of the same variance, both with ``E<y, y'> = (d / D) <g, g'>`` as if projected
        to ``d`` directly: one gradient pass at a large d serves every smaller one, in its units."""
        g = self.gradients
        if g.shape[1] == d:
            return self
        scale = math.sqrt(d / g.shape[1])
        return replace(self, gradients=g.reshape(g.shape[0], -1, d).sum(axis=1) * scale)

    def in_prompt_order(self) -> Evidence:
        """The evidence with its prompts in the job's order (ascending index), so anything scored
        from it depends on which prompts it holds, not on the order they were taken."""
        return self if self.prompts is None else self.take(np.argsort(self.prompts, kind="stable"))

    @staticmethod
    def concat(parts: Sequence[Evidence]) -> Evidence:
        """Rows of ``parts`` one after another (prompts of later parts follow)."""
        first = parts[0]
        return Evidence(
            np.concatenate([p.gradients for p in parts]),
            np.concatenate([p.losses for p in parts]),
            np.concatenate([p.n_tokens for p in parts]),
            np.concatenate([p.rank_sums for p in parts]),
            np.concatenate([p.correct for p in parts]),
            first.m,
            np.concatenate([p.prompt_index for p in parts]),
        )


def check_predictors(names: Sequence[str], rank_by: str) -> None:
    """Refuse unknown, repeated or empty predictor lists, and a ``rank_by`` not among them."""
    if not names:
        raise InvalidInput("must name at least one predictor", field="predictors")
    unknown = [n for n in names if n not in LOWER_IS_BETTER]
    if unknown:
        raise InvalidInput(
            f"unknown predictor {unknown[0]!r}; choose from {', '.join(PREDICTOR_NAMES)}", field="predictors"
        )
    if len(set(names)) != len(names):
        raise InvalidInput("lists a predictor twice", field="predictors")
    if rank_by not in names:
        raise InvalidInput(f"{rank_by!r} is not among the job's predictors", field="rank_by")


def needs_gradients(names: Sequence[str]) -> bool:
    """Whether any of ``names`` needs the backward pass."""
    return any(n in GRADIENT_PREDICTORS for n in names)


def _row_weights(ev: Evidence, weights: FloatArray | None) -> FloatArray:
    return np.ones(ev.losses.shape[0]) if weights is None else np.repeat(weights, ev.m)


def grace_of(
    ev: Evidence, settings: GraceSettings, weights: FloatArray | None = None, max_workers: int | None = None
) -> GraceResult:
    """GRACE of the evidence (``weights``: per-prompt multiplicities of a resample; ``max_workers``
    as :func:`~grace_engine.scores.grace`)."""
    return grace(
        ev.gradients,
        ev.m,
        n_splits=settings.n_splits,
        test_fraction=settings.test_fraction,
        smoothing=settings.smoothing,
        max_workers=max_workers,
        prompt_weights=weights,
    )


def value(
    name: str,
    ev: Evidence,
    settings: GraceSettings,
    weights: FloatArray | None = None,
    max_workers: int | None = None,
) -> float | None:
    """Predictor ``name`` on ``ev``; ``None`` where it cannot be computed (no gradients for a
    gradient predictor, no answers for teacher accuracy). ``max_workers`` is GRACE's."""
    if name in GRADIENT_PREDICTORS and not ev.has_gradients:
        return None
    w = _row_weights(ev, weights)
    if name == "grace":
        return grace_of(ev, settings, weights, max_workers).score
    if name == "g_norm":
        return float(np.average(np.sum(ev.gradients**2, axis=1), weights=w))
    if name == "g_vendi":
        return g_vendi(ev.gradients, w)
    if name == "student_nll":
        return student_nll(ev.losses, ev.n_tokens * w)
    if name == "rsr":
        avg_rank = ev.rank_sums / np.maximum(ev.n_tokens, 1.0)
        return float(np.average(avg_rank, weights=w) / max(float(np.average(ev.losses, weights=w)), 1e-12))
    if name == "length":
        return float(np.average(ev.n_tokens, weights=w))
    if name == "teacher_accuracy":
        known = ~np.isnan(ev.correct)
        return float(np.average(ev.correct[known], weights=w[known])) if known.any() else None
    raise InvalidInput(f"unknown predictor {name!r}", field="predictors")


def better_first(values: dict[str, float], name: str) -> list[str]:
    """Candidate names ordered best first by predictor ``name`` (name breaks exact ties)."""
    sign = 1.0 if LOWER_IS_BETTER[name] else -1.0
    return sorted(values, key=lambda c: (sign * values[c], c))
