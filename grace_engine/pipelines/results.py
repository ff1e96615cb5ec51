"""What a scoring job returns: per candidate its scores and evidence, and the ranking."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from grace_engine.models.candidates import Responses
from grace_engine.pipelines.config import ScoringConfig
from grace_engine.science.adaptive import BudgetReport
from grace_engine.science.caveats import ResultWarning
from grace_engine.science.grace import (
    GraceResult,
)
from grace_engine.science.guidance import Guidance, Teacher, guide
from grace_engine.science.mixture import MixedExample
from grace_engine.science.predictors import (
    Evidence,
)
from grace_engine.science.ranking import RankedCandidate
from grace_engine.science.uncertainty import CandidateUncertainty, Uncertainty

if TYPE_CHECKING:  # results are read by the API, which never projects: no torch there
    from grace_engine.science.projection import ProjectionIdentity

Origin = Literal["provided", "generated", "stored"]  # where a candidate's responses came from


@dataclass(frozen=True)
class CandidateResult:
    """Every score of one candidate and the responses they were computed from.

    ``values`` holds every predictor the job asked for (:data:`~grace_engine.science.predictors.PREDICTORS`
    order), None where one cannot be computed (teacher accuracy without answers); ``grace`` is GRACE's
    detail (its split scores and parts) when computed.
    ``p_top1`` (stability at half the prompts) and ``uncertainty`` (the paired comparison with the
    leader, the learning curve, copies across prompts) describe the ranking's score (None without
    an uncertainty; ``p_top1`` 0 for a candidate a budget-aware ranking dropped).
    ``n_at_max_tokens`` counts generated responses that stopped at ``max_tokens``
    (None for supplied responses, where it is unknown); ``n_truncated`` counts examples cut at the
    student's ``max_length``. ``teacher``: the model, temperature, family and size behind a
    generated candidate.
    """

    name: str
    grace: GraceResult | None
    values: dict[str, float | None]
    p_top1: float | None
    uncertainty: CandidateUncertainty | None
    responses_per_prompt: int
    n_responses: int
    n_truncated: int
    n_at_max_tokens: int | None
    max_tokens: int | None
    mean_response_tokens: float
    response_source: Origin
    responses: Responses = field(repr=False)
    teacher: Teacher | None = None  # what generated it (None: supplied responses)

    def score(self, name: str) -> float | None:
        """Predictor ``name``'s value (None where the job did not compute it)."""
        return self.values.get(name)


@dataclass(frozen=True)
class RankingResult:
    """The outcome of :func:`~grace_engine.pipelines.scoring.rank_teachers`: ranking best-first plus each
    candidate's details, and the warnings that qualify them."""

    student: str
    ranking: list[RankedCandidate]
    candidates: dict[str, CandidateResult]
    config: ScoringConfig
    grad_dim: int
    n_prompts: int
    warnings: list[ResultWarning] = field(default_factory=list)
    memory_budget_gb: float | None = None
    uncertainty: Uncertainty | None = None
    projection: ProjectionIdentity | None = None
    auto_proj_dim: bool = False  # config.proj_dim was chosen by the auto rule
    budget: BudgetReport | None = None  # what a budget-aware ranking spent
    # The mixed-teacher dataset routed by per-prompt GRACE contributions (empty without gradients).
    mixed: list[MixedExample] = field(default_factory=list, repr=False)
    # Per-example rows every score was computed from (not serialised): re-scoring, studies.
    evidence: dict[str, Evidence] = field(default_factory=dict, repr=False, compare=False)

    @property
    def settled(self) -> bool | None:
        """Whether the leader beats the runner-up at the stated confidence (None without an
        uncertainty)."""
        return None if self.uncertainty is None else self.uncertainty.settled

    @property
    def guidance(self) -> Guidance:
        """The paper's three uses of the ranking: the best temperature per model, the best
        candidate per family, and the best under the config's ``max_params``."""
        return guide(
            [r.name for r in self.ranking],
            {name: c.teacher for name, c in self.candidates.items()},
            max_params=self.config.max_params,
        )

    def ranking_rows(self) -> list[dict[str, Any]]:
        """The ranking best-first, one row per candidate with every predictor's value (``values``),
        its ``p_top1``, and its ``gap`` to the leader with the gap's ``gap_interval`` and tests
        (None for the leader)."""
        rows = []
        for r in self.ranking:
            c = self.candidates[r.name]
            versus = None if c.uncertainty is None else c.uncertainty.vs_leader
            rows.append(
                {
                    **asdict(r),
                    "values": dict(c.values),
                    "mean_response_tokens": c.mean_response_tokens,
                    "p_top1": c.p_top1,
                    "gap": None if versus is None else versus.gap,
                    "gap_interval": None if versus is None else list(versus.interval),
                    "gap_p_value": None if versus is None else versus.p_value,
                    "gap_wilcoxon_p": None if versus is None else versus.wilcoxon_p,
                }
            )
        return rows

    def to_dict(self, *, include_responses: bool = True) -> dict[str, Any]:
        """JSON-ready form (the CLI's ``--out`` and the API's result body)."""
        details = {}
        for name, c in self.candidates.items():
            item = asdict(c)
            if not include_responses:
                item.pop("responses")
            if c.grace is not None:
                item["grace"]["split_std"] = c.grace.split_std
            details[name] = item
        return {
            "student": self.student,
            "n_prompts": self.n_prompts,
            "grad_dim": self.grad_dim,
            "proj_dim": self.config.proj_dim,
            "auto_proj_dim": self.auto_proj_dim,
            "config": asdict(self.config),
            "memory_budget_gb": self.memory_budget_gb,
            "projection": None if self.projection is None else asdict(self.projection),
            "settled": self.settled,
            "budget": _budget_dict(self.budget),
            "mixed": [asdict(r) for r in self.mixed],
            "uncertainty": _uncertainty_dict(self.uncertainty),
            "ranking": [asdict(r) for r in self.ranking],
            "guidance": asdict(self.guidance),
            "candidates": details,
            "warnings": [w.to_dict() for w in self.warnings],
        }


def _budget_dict(b: BudgetReport | None) -> dict[str, Any] | None:
    return None if b is None else {**asdict(b), "compute_fraction": b.compute_fraction}


def _uncertainty_dict(u: Uncertainty | None) -> dict[str, Any] | None:
    if u is None:
        return None
    item = asdict(u)
    item.pop("candidates")  # per candidate, its share sits with the candidate
    item.pop("draws")  # per candidate, subsample values and contributions: for a later assembly
    return item
