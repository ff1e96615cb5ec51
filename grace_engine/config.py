"""The settings of a scoring job (:class:`ScoringConfig`); defaults follow the paper."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from grace_engine.adaptive import RankingBudget
from grace_engine.data import (
    StudentFormat,
)
from grace_engine.errors import InvalidInput
from grace_engine.generation import (
    DEFAULT_INSTRUCTION,
    Candidate,
)
from grace_engine.gradients import (
    GradientSpace,
    PathKind,
)
from grace_engine.predictors import (
    PREDICTOR_NAMES,
    GraceSettings,
    check_predictors,
)
from grace_engine.scores import (
    auto_proj_dim,
)
from grace_engine.uncertainty import (
    DEFAULT_CONFIDENCE,
    DEFAULT_RESAMPLES,
)


@dataclass(frozen=True)
class ScoringConfig:
    """Settings of a scoring job; defaults follow the paper (m = 4, d = 512, 10 splits)."""

    responses_per_prompt: int = 4
    proj_dim: int | Literal["auto"] = "auto"  # auto: from the training rows per split (auto_proj_dim)
    n_splits: int = 10
    test_fraction: float = 0.1
    smoothing: float = 1e-3
    gradient_space: GradientSpace = field(default_factory=GradientSpace)
    path: PathKind = "fast"
    seed: int = 0
    factor_dim: int = 64
    length_factor: bool = False
    student_format: StudentFormat = field(default_factory=StudentFormat)
    instruction: str = DEFAULT_INSTRUCTION
    max_tokens_per_batch: int | None = None  # an extra cap on padded tokens; the memory budget sizes batches
    max_batch: int = 64
    generation_batch: int = 64  # sequences per generate() call at most; the memory budget may lower it
    generation_backend: str = "auto"
    release_below_gb: float = 8.0  # free GPU memory under which vLLM engines are dropped before gradients
    predictors: tuple[str, ...] = PREDICTOR_NAMES  # gradient ones need the backward pass
    budget: RankingBudget | None = None  # budget-aware ranking in rounds (grace_engine.adaptive)
    rank_by: str | None = None  # the predictor that orders the ranking; None: GRACE when computed
    bootstrap: int = DEFAULT_RESAMPLES  # resamples over prompts for P(top-1) and intervals; 0: none
    confidence: float = DEFAULT_CONFIDENCE

    @property
    def ranking_score(self) -> str:
        """The predictor the ranking is ordered by."""
        if self.rank_by is not None:
            return self.rank_by
        return "grace" if "grace" in self.predictors else self.predictors[0]

    def resolved(self, n_prompts: int, candidates: Sequence[Candidate]) -> ScoringConfig:
        """This config with ``proj_dim`` fixed for ``n_prompts`` prompts and these candidates (the
        fewest responses per prompt of any candidate sets the rows)."""
        if self.proj_dim != "auto":
            return self
        return replace(self, proj_dim=self.auto_dim(n_prompts, candidates))

    def auto_dim(self, n_prompts: int, candidates: Sequence[Candidate]) -> int:
        """The ``auto`` rule's d for ``n_prompts`` prompts of these candidates (the fewest responses
        per prompt of any candidate sets the rows)."""
        m = (
            min((c.responses_per_prompt or self.responses_per_prompt) for c in candidates)
            if candidates
            else 1
        )
        return auto_proj_dim(n_prompts, m, self.test_fraction)

    @property
    def dim(self) -> int:
        """``proj_dim`` once resolved (:meth:`resolved`)."""
        if self.proj_dim == "auto":
            raise ValueError("proj_dim is still 'auto': resolve the config for the job first")
        return self.proj_dim

    @property
    def grace_settings(self) -> GraceSettings:
        return GraceSettings(self.n_splits, self.test_fraction, self.smoothing)

    def validate(self) -> None:
        if self.proj_dim != "auto" and (not isinstance(self.proj_dim, int) or self.proj_dim < 1):
            raise InvalidInput('must be "auto" or at least 1', field="proj_dim")
        for name in (
            "responses_per_prompt",
            "n_splits",
            "factor_dim",
            "max_batch",
            "generation_batch",
        ):
            if getattr(self, name) < 1:
                raise InvalidInput("must be at least 1", field=name)
        if self.max_tokens_per_batch is not None and self.max_tokens_per_batch < 2:
            raise InvalidInput("must be at least 2", field="max_tokens_per_batch")
        if not 0.0 < self.test_fraction < 1.0:
            raise InvalidInput("must be strictly between 0 and 1", field="test_fraction")
        if not 0.0 <= self.smoothing <= 1.0:
            raise InvalidInput("must be between 0 and 1", field="smoothing")
        check_predictors(self.predictors, self.ranking_score)
        if self.seed < 0:
            raise InvalidInput("must be 0 or more (NumPy's generators take no negative seed)", field="seed")
        if self.bootstrap < 0:
            raise InvalidInput("must be 0 (off) or more", field="bootstrap")
        if not 0.0 < self.confidence < 1.0:
            raise InvalidInput("must be strictly between 0 and 1", field="confidence")
        if self.budget is not None:
            self.budget.validate()
            if self.bootstrap < 1:
                raise InvalidInput(
                    "a budget-aware ranking needs the bootstrap (at least 1)", field="bootstrap"
                )
