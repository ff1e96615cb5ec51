"""The settings of a scoring job (:class:`ScoringConfig`); defaults follow the paper."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from grace_engine.errors import InvalidInput
from grace_engine.models.candidates import Candidate
from grace_engine.models.data import (
    DEFAULT_INSTRUCTION,
    StudentFormat,
)
from grace_engine.science.adaptive import RankingBudget
from grace_engine.science.grace import (
    auto_proj_dim,
)
from grace_engine.science.gradient_space import GradientSpace, PathKind
from grace_engine.science.predictors import (
    PREDICTOR_NAMES,
    GraceSettings,
    check_predictors,
)
from grace_engine.science.uncertainty import (
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
    generation_backend: str = "auto"
    predictors: tuple[str, ...] = PREDICTOR_NAMES  # gradient ones need the backward pass
    budget: RankingBudget | None = None  # budget-aware ranking in rounds (grace_engine.science.adaptive)
    rank_by: str | None = None  # the predictor that orders the ranking; None: GRACE when computed
    bootstrap: int = DEFAULT_RESAMPLES  # resamples over prompts for P(top-1) and intervals; 0: none
    confidence: float = DEFAULT_CONFIDENCE
    max_params: int | None = None  # the guidance's parameter-count limit (no effect on any score)

    @property
    def ranking_score(self) -> str:
        """The predictor the ranking is ordered by."""
        if self.rank_by is not None:
            return self.rank_by
        return "grace" if "grace" in self.predictors else self.predictors[0]

    def resolved(
        self, n_prompts: int, candidates: Sequence[Candidate], *, auto: int | None = None
    ) -> ScoringConfig:
        """This config with ``proj_dim`` fixed, the one place an ``auto`` d is resolved: by the
        rule (:meth:`auto_dim`) for ``n_prompts`` prompts and these candidates, or as ``auto``
        when a pipeline has its own default (influence has no splits to size d by)."""
        if self.proj_dim != "auto":
            return self
        return replace(self, proj_dim=auto if auto is not None else self.auto_dim(n_prompts, candidates))

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

    def gradient_settings(self) -> dict[str, Any]:
        """Everything a candidate's projected gradients depend on besides the student, the prompts
        and the responses (``proj_dim`` resolved): the student format (as requested: the student's
        content fixes its context), the gradient space and the projection. The gradient store's
        keys and the leaderboards' comparisons are made of it: a setting that changes gradients
        is listed here, once."""
        return {
            "format": asdict(self.student_format),
            "space": asdict(self.gradient_space),
            "projection": {
                "d": self.dim,
                "seed": self.seed,
                "path": self.path,
                "factor_dim": self.factor_dim,
            },
        }

    @property
    def grace_settings(self) -> GraceSettings:
        return GraceSettings(self.n_splits, self.test_fraction, self.smoothing)

    def check(self) -> None:
        if self.proj_dim != "auto" and (not isinstance(self.proj_dim, int) or self.proj_dim < 1):
            raise InvalidInput('must be "auto" or at least 1', field="proj_dim")
        for name in (
            "responses_per_prompt",
            "n_splits",
            "factor_dim",
        ):
            if getattr(self, name) < 1:
                raise InvalidInput("must be at least 1", field=name)
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
            self.budget.check()
            if self.bootstrap < 1:
                raise InvalidInput(
                    "a budget-aware ranking needs the bootstrap (at least 1)", field="bootstrap"
                )
