"""What the student's passes over one candidate's responses leave behind, row by row
(:class:`Evidence`), and the settings GRACE is computed with. Every predictor
(:mod:`~grace_engine.science.predictors`) is a function of these rows and of optional per-prompt
weights, so a resample over prompts re-computes all of them without running a model again: a
prompt drawn ``k`` times is given weight ``k``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from grace_engine.science.grace import prompt_rows

FloatArray = npt.NDArray[np.float64]


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
