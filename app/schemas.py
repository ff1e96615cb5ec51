"""Response bodies of the HTTP API, and the scaling law's synchronous inputs (pydantic; no
FastAPI, no ORM). What a job asks for is in :mod:`grace_jobs.requests` and each kind's module
(:mod:`grace_jobs.kinds`), with the body of its result.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    Field,
    model_validator,
)

from grace_jobs.public import WarningPublic
from grace_jobs.requests import (
    StrictModel,
    exactly_one,
)


class DatasetPublic(BaseModel):
    id: str
    name: str | None
    n_prompts: int
    created_at: datetime


class DatasetsPublic(BaseModel):
    data: list[DatasetPublic]
    next_cursor: str | None


class Links(BaseModel):
    self: str
    cancel: str
    ranking: str
    scores: str


class JobAccepted(BaseModel):
    id: str
    status: str
    links: Links


class StageProgress(BaseModel):
    done: int
    total: int


class CandidateProgress(BaseModel):
    generate: StageProgress | None = None
    gradients: StageProgress | None = None
    score: StageProgress | None = Field(None, description="GRACE's splits, counted as they run")
    uncertainty: StageProgress | None = Field(
        None,
        description="the ranking's uncertainty: its subsamples' splits (or, for a score other than "
        "GRACE, its subsamples), counted as they run",
    )
    distil: StageProgress | None = None


class Progress(BaseModel):
    stage: str | None = None
    candidates: dict[str, CandidateProgress] = Field(default_factory=dict)


class ErrorInfo(BaseModel):
    code: str
    message: str


class UnitPublic(BaseModel):
    """One unit of the job's work, claimed and attempted on its own: one candidate of a fanned-out
    scoring job, or the whole job (``candidate`` null)."""

    candidate: str | None
    status: str
    stage: str | None
    attempts: int
    worker_id: str | None = Field(
        description="an opaque label of the worker that ran (or runs) this unit, the same for every "
        "unit it ran (not the worker's host or process)"
    )
    progress: dict[str, CandidateProgress]
    started_at: datetime | None
    finished_at: datetime | None
    error: ErrorInfo | None


# The one-field-per-predictor view of results from before ``values``: field -> predictor.
LEGACY_FIELDS = {
    "grace": "grace",
    "g_norm": "g_norm",
    "g_vendi": "g_vendi",
    "student_nll": "student_nll",
    "rsr": "rsr",
    "accuracy": "teacher_accuracy",
}


class PredictorValues(BaseModel):
    """``values``: every predictor the job computed, by name (``GET /v1/predictors`` lists them),
    null where one is undefined for the candidate. The single fields beside it are the view from
    before ``values`` (deprecated; a predictor added since has none). Rows stored before ``values``
    existed are read into it."""

    values: dict[str, float | None] = Field(
        default_factory=dict, description="every predictor the job computed, by name"
    )
    g_norm: float | None = Field(None, deprecated="read values.g_norm")
    g_vendi: float | None = Field(None, deprecated="read values.g_vendi")
    student_nll: float | None = Field(None, deprecated="read values.student_nll")
    rsr: float | None = Field(None, deprecated="read values.rsr")
    accuracy: float | None = Field(None, deprecated="read values.teacher_accuracy")

    @model_validator(mode="before")
    @classmethod
    def _both_views(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        values = data.get("values")
        if values is None:  # stored before values: one field per predictor
            data["values"] = {p: data[f] for f, p in LEGACY_FIELDS.items() if data.get(f) is not None}
        else:
            for f, p in LEGACY_FIELDS.items():
                data.setdefault(f, values.get(p))
        return data


class RankingEntry(PredictorValues):
    """One candidate's place and every predictor's value."""

    rank: int
    name: str
    score: str = Field("grace", description="the predictor the ranking is ordered by")
    value: float | None = Field(None, description="the candidate's value of that predictor")
    grace: float | None
    grace_std: float | None
    agreement_with_next: float | None
    mean_response_tokens: float | None = Field(None, description="mean response length in student tokens")
    p_top1: float | None = Field(
        None, description="share of subsamples of half the prompts (without replacement) it scores best in"
    )
    gap: float | None = Field(
        None,
        description="its value of `score` minus the leader's, as the paired cross-validation estimates "
        "it at the job's n (null for the leader)",
    )
    gap_interval: list[float] | None = Field(
        None, description="the gap's interval at the uncertainty's confidence (Nadeau-Bengio corrected)"
    )
    gap_p_value: float | None = Field(None, description="one-sided t-test p that the leader is no better")
    gap_wilcoxon_p: float | None = Field(None, description="the same by the Wilcoxon signed-rank test")


class UncertaintyPublic(BaseModel):
    """What ``settled``, ``p_top1`` and the gaps rest on (design §2.11)."""

    method: Literal["paired_cv", "paired", "subsampling"] = Field(
        description="paired_cv: repeated K-fold cross-validation over prompts, paired across "
        "candidates (GRACE); paired: a paired test over prompts (predictors that are means); "
        "subsampling: P(top-1) at half the prompts (G-Vendi)"
    )
    score: str
    n_prompts: int
    confidence: float
    seed: int
    folds: int
    repeats: int
    n_subsamples: int = Field(description="subsamples behind p_top1")
    subsample_size: int = Field(description="prompts per subsample (half the job's)")
    leader: str
    runner_up: str | None
    settled: bool = Field(
        description="the leader beats the runner-up at `confidence`: the gap's interval excludes 0 "
        "and the signed-rank test agrees"
    )
    prompts_to_settle: int | None = Field(
        None, description="when not settled: prompts in all that the learning curves say would settle it"
    )
    curves_cross_at: int | None = Field(
        None, description="prompts from which the runner-up's learning curve would lead"
    )


class ProjectionPublic(BaseModel):
    """The identity of the job's random projection: equal identities mean the same map."""

    kind: str
    seed: int
    d: int
    grad_dim: int
    factor_dim: int | None
    checksum: str
    folded_to: int | None = Field(
        None, description="the d the projections were folded to before scoring (budget-aware ranking)"
    )


class RoundPublic(BaseModel):
    """One round of a budget-aware ranking."""

    index: int
    n_prompts: int = Field(description="prompts scored in all, for the candidates still active")
    proj_dim: int | None = Field(None, description="the d this round was scored at")
    active: list[str]
    examples: int = Field(description="gradient examples used in all so far")
    seconds: float
    settled: bool
    leader: str
    p_top1: dict[str, float]


class BudgetPublic(BaseModel):
    """What a budget-aware ranking spent against a full run (every candidate on every prompt)."""

    stopped: Literal["settled", "budget", "exhausted"]
    examples_used: int
    examples_full: int
    compute_fraction: float = Field(description="examples_used / examples_full")
    seconds: float
    rounds: list[RoundPublic]
    dropped: dict[str, int] = Field(
        description="candidates that left the race, with the round they left after"
    )


class TeacherPublic(BaseModel):
    """What generated a candidate: its model (as given), the temperature it sampled at, and from
    the model's files its family (config `model_type`) and parameter count."""

    model: str
    temperature: float
    family: str | None
    params: int | None


class TemperatureChoicePublic(BaseModel):
    model: str
    candidate: str = Field(description="the model's best candidate")
    temperature: float = Field(description="the temperature that candidate sampled at")
    rank: int
    temperatures: list[float] = Field(description="every temperature the model was tried at")


class FamilyChoicePublic(BaseModel):
    family: str
    candidate: str = Field(description="the family's best candidate")
    params: int | None
    rank: int
    n_candidates: int


class SizeChoicePublic(BaseModel):
    max_params: int
    candidate: str | None = Field(description="the best candidate within the limit; null: none fits")
    params: int | None
    rank: int | None
    n_within: int = Field(description="candidates within the limit")
    unknown: list[str] = Field(description="generated candidates whose size is unknown, left out")


class GuidancePublic(BaseModel):
    """The paper's three uses of a ranking, each the best candidate of its group in the ranking's
    order: per model, its best temperature; per family, its best candidate; and the best candidate
    whose model has at most `max_params` parameters (null when the job set none). Candidates with
    supplied responses have no model and stay out."""

    best_temperature: list[TemperatureChoicePublic]
    best_per_family: list[FamilyChoicePublic]
    under_max_params: SizeChoicePublic | None


class ResultSummary(BaseModel):
    """What qualifies a ranking, as a worker stored it with the job."""

    settled: bool | None = Field(
        None, description="whether the leader beats the runner-up at the stated confidence"
    )
    proj_dim: int | None = Field(None, description="the projection dimension d the scores were computed at")
    uncertainty: UncertaintyPublic | None = None
    projection: ProjectionPublic | None = None
    budget: BudgetPublic | None = Field(None, description="a budget-aware ranking's compute, else null")
    guidance: GuidancePublic | None = Field(
        None, description="the best temperature, per family and under the size limit (scoring jobs)"
    )
    warnings: list[WarningPublic] = Field(
        default_factory=list, description="what qualifies the result: small samples, cut responses"
    )


def result_summary(result: dict[str, Any] | None) -> dict[str, Any]:
    """The fields of :class:`ResultSummary` from a stored result, for a response model's kwargs."""
    stored = result or {}
    return ResultSummary.model_validate(
        {k: stored.get(k) for k in ("settled", "proj_dim", "uncertainty", "projection", "budget", "guidance")}
        | {"warnings": stored.get("warnings", [])}
    ).model_dump()


class JobPublic(ResultSummary):
    id: str
    kind: str
    status: str
    stage: str | None
    student: str
    attempts: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    progress: Progress
    units: list[UnitPublic]
    assembled_by: str | None = Field(None, description="the label of the worker that wrote the results")
    examples_scored: int
    error: ErrorInfo | None
    ranking: list[RankingEntry] | None
    prompt_set: str | None = Field(None, description="hash of the prompt texts: `/v1/leaderboards?dataset=`")
    links: Links


class JobsPublic(BaseModel):
    data: list[JobPublic]
    next_cursor: str | None


class RankingPublic(ResultSummary):
    job_id: str
    student: str
    finished_at: datetime | None
    ranking: list[RankingEntry]


class CandidateScores(BaseModel):
    """Everything computed for one candidate (GRACE splits, variance/bias parts, baselines)."""

    name: str
    rank: int
    details: dict[str, Any]


class ScoresPublic(BaseModel):
    job_id: str
    candidates: list[CandidateScores]


class LeaderboardEntry(PredictorValues):
    rank: int
    candidate: str
    grace: float | None = None
    grace_std: float | None
    job_id: str = Field(description="the job that scored it (its latest score)")
    scored_at: datetime
    teacher: TeacherPublic | None = Field(None, description="what generated it; null: supplied responses")


class BoardPublic(BaseModel):
    """A leaderboard there is to open (``/v1/leaderboards?dataset=<prompt_set>&comparison=...``)."""

    prompt_set: str = Field(description="hash of the prompt texts")
    comparison: str = Field(description="the configuration's key")
    jobs: int = Field(description="succeeded score jobs that fed it")
    latest_job_id: str
    latest_at: datetime
    scoring: dict[str, Any] = Field(description="the latest job's scoring settings, as submitted")


class BoardsPublic(BaseModel):
    student: str
    data: list[BoardPublic] = Field(description="the most recently fed first")


class LeaderboardPublic(BaseModel):
    """Every candidate you scored for ``student`` on one prompt set under one configuration,
    best GRACE first, each with its latest score and the job that gave it."""

    student: str
    prompt_set: str = Field(description="hash of the prompt texts (a job's `prompt_set`)")
    comparison: str | None = Field(description="the configuration ranked; null: nothing scored yet")
    comparisons: list[str] = Field(description="every configuration scored for this student and prompt set")
    total: int
    data: list[LeaderboardEntry]
    next_offset: int | None
    guidance: GuidancePublic = Field(description="the three answers over every entry, not only this page")


class RankingHistory(BaseModel):
    student: str
    data: list[RankingPublic]


# --- scaling law -----------------------------------------------------------------------------------

Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class ScalingPredictIn(StrictModel):
    """The student's loss after distillation on ``student_tokens`` from a teacher given by its loss
    or by its size and pretraining tokens."""

    model_config = exactly_one(("teacher_loss",), ("teacher_params", "teacher_tokens"))  # _one_teacher

    n_student: Positive
    student_tokens: Positive
    teacher_loss: Positive | None = None
    teacher_params: Positive | None = None
    teacher_tokens: Positive | None = None
    coefficients: Annotated[dict[str, float], Field(max_length=32)] | None = None

    @model_validator(mode="after")
    def _one_teacher(self) -> ScalingPredictIn:
        by_size = self.teacher_params is not None and self.teacher_tokens is not None
        if (self.teacher_loss is None) == (not by_size) or (
            self.teacher_loss is not None and (self.teacher_params or self.teacher_tokens)
        ):
            raise ValueError("give either teacher_loss, or teacher_params and teacher_tokens")
        return self


class ScalingPrediction(BaseModel):
    student_loss: float
    supervised_loss: float = Field(
        description="the same student trained on the same tokens without a teacher"
    )
    teacher_loss: float
    distillation_helps: bool
    coefficients: dict[str, float]
    coefficients_source: str


ScenarioName = Literal[
    "best_case", "teacher_inference", "teacher_pretraining", "teacher_pretraining_and_inference"
]
ALL_SCENARIOS: list[ScenarioName] = [
    "best_case",
    "teacher_inference",
    "teacher_pretraining",
    "teacher_pretraining_and_inference",
]


class ScalingPlanIn(StrictModel):
    n_student: Positive
    compute_flops: Positive
    scenarios: Annotated[list[ScenarioName], Field(min_length=1, max_length=len(ALL_SCENARIOS))] = Field(
        default_factory=lambda: list(ALL_SCENARIOS)
    )
    coefficients: Annotated[dict[str, float], Field(max_length=32)] | None = None


class ScalingPlans(BaseModel):
    plans: list[dict[str, Any]]
    coefficients: dict[str, float]
    coefficients_source: str


class WebhookSecretPublic(BaseModel):
    secret: str = Field(description="whsec_...: shown once; sign-verification key for your deliveries")
    created_at: datetime
    previous_valid_until: datetime | None = Field(
        None, description="until when deliveries also carry a signature by the secret this one replaced"
    )


class DeliveryPublic(BaseModel):
    attempt: int
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: float


class WebhookEventPublic(BaseModel):
    id: str = Field(description="the webhook-id header: stable across retries, deduplicate on it")
    type: str
    url: str
    status: str = Field(description="pending, delivered or failed (attempts used up)")
    attempts: int
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None
    deliveries: list[DeliveryPublic]


class DeliveriesPublic(BaseModel):
    job_id: str
    webhook_url: str | None
    data: list[WebhookEventPublic]
