"""Request and response bodies of the HTTP API (pydantic; no FastAPI, no ORM).

Request models forbid unknown keys and convert themselves to engine objects
(:meth:`JobCreate.to_engine`), so the worker runs exactly what the API accepted.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from app.sanitize import MAX_ITEMS, MAX_TEXT, text_problem
from grace_engine.adaptive import RankingBudget
from grace_engine.data import DEFAULT_STUDENT_TEMPLATE, Prompt, StudentFormat, ValidationExample
from grace_engine.distillation import DistillConfig
from grace_engine.generation import DEFAULT_INSTRUCTION, Candidate
from grace_engine.gradients import GradientSpace
from grace_engine.pipeline import ScoringConfig
from grace_engine.predictors import PREDICTOR_NAMES, PredictorName
from grace_engine.uncertainty import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES
from grace_engine.validation import ValidationConfig


def _storable(value: str) -> str:
    why = text_problem(value)
    if why:
        raise ValueError(why)
    return value


# Python's str.isspace() characters (what str.strip() removes), as a JSON Schema character class.
_SPACE = (
    "\\t\\n\\u000b\\u000c\\r\\u001c-\\u001f \\u0085\\u00a0\\u1680"
    "\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
)


class _StorableSchema:
    """Says in the JSON schema what the validators check: no NUL (lone surrogates cannot be written
    in a JSON Schema pattern; generators do not produce them) and, for ``nonblank``, a character
    that is not white space."""

    def __init__(self, *, nonblank: bool = False) -> None:
        self.nonblank = nonblank

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        found = handler(schema)
        found["pattern"] = f"^[^\\u0000]*[^\\u0000{_SPACE}][^\\u0000]*$" if self.nonblank else "^[^\\u0000]*$"
        return found


def _nonblank(value: str) -> str:
    if not value.strip():
        raise ValueError("must contain more than white space")
    return value


# Text stored in PostgreSQL; the request guard applies the same rule to every string of a request.
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT), AfterValidator(_storable), _StorableSchema()]
NonBlankText = Annotated[
    str,
    StringConstraints(max_length=MAX_TEXT),
    AfterValidator(_storable),
    AfterValidator(_nonblank),
    _StorableSchema(nonblank=True),
]
Seed = Annotated[int, Field(ge=0, description="seeds the projection, splits and sampling (0 or more)")]

# The schema states the guard's ceilings (app.sanitize), tighter ones where a list is naturally small;
# the operator's limits (Settings.max_*, 422 "Limit Exceeded") are tighter still, checked after.
MAX_LIST = MAX_ITEMS
MAX_CANDIDATES = 1024
MAX_RESPONSES = 1024  # responses supplied for one prompt


def _present(**types: str) -> dict[str, Any]:
    """JSON Schema: each named field is present and not null, of its JSON type."""
    return {"required": list(types), "properties": {name: {"type": t} for name, t in types.items()}}


def _exactly_one(*alternatives: dict[str, Any]) -> ConfigDict:
    """A request model's config whose JSON schema says what its cross-field validator checks:
    exactly one of ``alternatives`` holds."""
    return ConfigDict(extra="forbid", strict=True, json_schema_extra={"oneOf": list(alternatives)})


class _Request(BaseModel):
    # strict: a JSON true is not the number 1, nor "1" a number; what the schema says is what passes
    model_config = ConfigDict(extra="forbid", strict=True)


class PromptIn(_Request):
    id: Annotated[Text, Field(min_length=1, max_length=200)] | None = None
    prompt: NonBlankText
    answer: Text | float | int | None = Field(None, description="reference answer; enables teacher accuracy")


class CandidateIn(_Request):
    """A teacher to score: a model with sampling settings, or responses you supply."""

    # what _model_xor_responses checks
    model_config = _exactly_one(_present(model="string"), _present(responses="object"))

    name: Annotated[NonBlankText, Field(max_length=200)]
    model: Annotated[Text, Field(min_length=1, max_length=1024)] | None = None
    temperature: Annotated[float, Field(ge=0, le=10)] = 0.6
    top_p: Annotated[float, Field(gt=0, le=1)] = 1.0
    max_tokens: Annotated[int, Field(ge=1)] = 1024
    responses_per_prompt: Annotated[int, Field(ge=1)] | None = None
    responses: (
        Annotated[
            dict[Text, Annotated[list[Text], Field(max_length=MAX_RESPONSES)]], Field(max_length=MAX_LIST)
        ]
        | None
    ) = Field(None, description="prompt id -> that prompt's responses")

    @model_validator(mode="after")
    def _model_xor_responses(self) -> CandidateIn:
        if (self.model is None) == (self.responses is None):
            raise ValueError("give exactly one of 'model' or 'responses'")
        return self

    def to_engine(self) -> Candidate:
        return Candidate(
            name=self.name,
            model=self.model,
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=self.max_tokens,
            responses_per_prompt=self.responses_per_prompt,
            responses=self.responses,
        )


def _proj_dim(value: int | str) -> int | str:
    # One validator for both forms, so an error names scoring.proj_dim, not a member of a union.
    if value == "auto" or (isinstance(value, int) and 1 <= value <= MAX_PROJ_DIM):
        return value
    raise ValueError(f'must be "auto" or an integer from 1 to {MAX_PROJ_DIM}')


MAX_PROJ_DIM = 16384
ProjDim = Annotated[
    int | str,
    AfterValidator(_proj_dim),
    WithJsonSchema(
        {"anyOf": [{"type": "integer", "minimum": 1, "maximum": MAX_PROJ_DIM}, {"const": "auto"}]}
    ),
]


class BudgetIn(_Request):
    """A budget-aware ranking: score prompts in rounds until the ranking is settled or this is spent."""

    examples: Annotated[int, Field(ge=1)] | None = Field(
        None, description="gradient examples (responses scored) at most, over all candidates"
    )
    seconds: Annotated[float, Field(gt=0, le=7 * 86400)] | None = Field(
        None, description="wall seconds at most, checked between rounds"
    )
    initial_prompts: Annotated[int, Field(ge=4)] = 16
    growth: Annotated[float, Field(gt=1, le=16)] = 2.0
    drop_below: Annotated[float, Field(ge=0, lt=0.5)] = Field(
        0.01, description="a candidate whose P(top-1) falls below this leaves the race"
    )

    def to_engine(self, seed: int) -> RankingBudget:
        return RankingBudget(
            self.examples, self.seconds, self.initial_prompts, self.growth, self.drop_below, seed
        )


PredictorList = Annotated[list[PredictorName], Field(min_length=1, max_length=len(PREDICTOR_NAMES))]


class ScoringIn(_Request):
    """Scoring settings; the defaults follow the paper."""

    responses_per_prompt: Annotated[int, Field(ge=1)] = 4
    proj_dim: ProjDim = Field(
        "auto", description='projection dimension; "auto": from the training rows per split (README)'
    )
    n_splits: Annotated[int, Field(ge=1, le=1000)] = 10
    test_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.1
    smoothing: Annotated[float, Field(ge=0, le=1)] = 1e-3
    gradient_space: Literal["full", "output_layer", "lora"] = "full"
    lora_rank: Annotated[int, Field(ge=1, le=1024)] = 8
    path: Literal["fast", "exact"] = "fast"
    seed: Seed = 0
    length_factor: bool = False
    max_length: Annotated[int, Field(ge=2)] | None = None
    truncate: bool = False
    student_template: Text = DEFAULT_STUDENT_TEMPLATE
    instruction: Text = DEFAULT_INSTRUCTION
    generation_backend: Literal["auto", "vllm", "transformers"] | None = Field(
        None, description="override the worker's GRACE_GENERATION_BACKEND for this job"
    )
    predictors: (
        Annotated[list[PredictorName], Field(min_length=1, max_length=len(PREDICTOR_NAMES))] | None
    ) = Field(
        None,
        description="predictors to compute (default: all); without grace, g_norm and g_vendi the "
        "job runs the student's forward pass only",
    )
    rank_by: PredictorName | None = Field(
        None, description="the predictor that orders the ranking (default: grace when computed)"
    )
    bootstrap: Annotated[int, Field(ge=0, le=2000)] = Field(
        DEFAULT_RESAMPLES, description="bootstrap resamples over prompts for P(top-1) and intervals; 0: none"
    )
    confidence: Annotated[float, Field(gt=0, lt=1)] = DEFAULT_CONFIDENCE
    budget: BudgetIn | None = Field(None, description="rank in rounds within a budget (README)")

    def to_engine(self) -> ScoringConfig:
        return ScoringConfig(
            responses_per_prompt=self.responses_per_prompt,
            proj_dim="auto" if self.proj_dim == "auto" else int(self.proj_dim),
            n_splits=self.n_splits,
            test_fraction=self.test_fraction,
            smoothing=self.smoothing,
            gradient_space=GradientSpace(self.gradient_space, lora_rank=self.lora_rank),
            path=self.path,
            seed=self.seed,
            length_factor=self.length_factor,
            student_format=StudentFormat(self.student_template, self.max_length, self.truncate),
            instruction=self.instruction,
            generation_backend=self.generation_backend or "auto",
            predictors=tuple(self.predictors or PREDICTOR_NAMES),
            rank_by=self.rank_by,
            bootstrap=self.bootstrap,
            confidence=self.confidence,
            budget=None if self.budget is None else self.budget.to_engine(self.seed),
        )


class JobCreate(_Request):
    """``POST /v1/jobs``: rank ``candidates`` as teachers for ``student`` on ``prompts`` (inline)
    or on an uploaded dataset (``dataset_id``)."""

    # what _prompts_xor_dataset checks
    model_config = _exactly_one(_present(prompts="array"), _present(dataset_id="string"))

    student: Annotated[Text, Field(min_length=1, max_length=1024)]
    candidates: Annotated[list[CandidateIn], Field(min_length=1, max_length=MAX_CANDIDATES)]
    prompts: (
        Annotated[
            list[PromptIn], Field(min_length=2, max_length=MAX_LIST, description="GRACE needs at least 2")
        ]
        | None
    ) = None
    dataset_id: Annotated[Text, Field(max_length=36)] | None = None
    scoring: ScoringIn = Field(default_factory=ScoringIn)

    @model_validator(mode="after")
    def _prompts_xor_dataset(self) -> JobCreate:
        if (self.prompts is None) == (self.dataset_id is None):
            raise ValueError("give exactly one of 'prompts' or 'dataset_id'")
        return self


def engine_prompts(prompts: list[PromptIn] | list[dict[str, Any]]) -> list[Prompt]:
    """Prompts as the engine wants them; a missing id becomes the prompt's position."""
    out = []
    for i, raw in enumerate(prompts):
        p = raw if isinstance(raw, PromptIn) else PromptIn.model_validate(raw)
        out.append(
            Prompt(id=p.id or str(i), prompt=p.prompt, answer=None if p.answer is None else str(p.answer))
        )
    return out


class DatasetCreate(_Request):
    name: Annotated[Text, Field(max_length=200)] | None = None
    prompts: Annotated[list[PromptIn], Field(min_length=2, max_length=MAX_LIST)]


class DatasetPublic(BaseModel):
    id: str
    name: str | None
    n_prompts: int
    created_at: datetime


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
    distil: StageProgress | None = None


class Progress(BaseModel):
    stage: str | None = None
    candidates: dict[str, CandidateProgress] = Field(default_factory=dict)


class ErrorInfo(BaseModel):
    code: str
    message: str


class WarningPublic(BaseModel):
    """A condition that qualifies a result (design §2.10): a stable ``code``, a ``message`` that
    says what to change, and the numbers behind it as further fields."""

    model_config = ConfigDict(extra="allow")

    code: str
    message: str


class RankingEntry(BaseModel):
    """One candidate's place and every predictor (null where the job did not compute it)."""

    rank: int
    name: str
    score: str = Field("grace", description="the predictor the ranking is ordered by")
    value: float | None = Field(None, description="the candidate's value of that predictor")
    grace: float | None
    grace_std: float | None
    agreement_with_next: float | None
    g_norm: float | None
    g_vendi: float | None
    student_nll: float | None
    rsr: float | None = Field(None, description="Rank-Surprisal Ratio (lower = better)")
    mean_response_tokens: float | None = Field(None, description="mean response length in student tokens")
    accuracy: float | None
    p_top1: float | None = Field(None, description="share of bootstrap resamples it ranks first in")
    interval: list[float] | None = Field(None, description="bootstrap interval of its value of `score`")


class UncertaintyPublic(BaseModel):
    """The bootstrap over prompts behind ``p_top1``, ``interval`` and ``settled`` (design §2.11)."""

    score: str
    n_prompts: int
    n_resamples: int
    confidence: float
    seed: int
    leader: str
    runner_up: str | None
    settled: bool
    prompts_to_settle: int | None = Field(
        None, description="when not settled: prompts in all that would likely settle it"
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


class ResultSummary(BaseModel):
    """What qualifies a ranking, as a worker stored it with the job."""

    settled: bool | None = Field(None, description="whether the bootstrap settles the leader")
    proj_dim: int | None = Field(None, description="the projection dimension d the scores were computed at")
    uncertainty: UncertaintyPublic | None = None
    projection: ProjectionPublic | None = None
    budget: BudgetPublic | None = Field(None, description="a budget-aware ranking's compute, else null")
    warnings: list[WarningPublic] = Field(
        default_factory=list, description="what qualifies the result: small samples, cut responses"
    )


def result_summary(result: dict[str, Any] | None) -> dict[str, Any]:
    """The fields of :class:`ResultSummary` from a stored result, for a response model's kwargs."""
    stored = result or {}
    return ResultSummary.model_validate(
        {k: stored.get(k) for k in ("settled", "proj_dim", "uncertainty", "projection", "budget")}
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
    examples_scored: int
    error: ErrorInfo | None
    ranking: list[RankingEntry] | None
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


class RankingHistory(BaseModel):
    student: str
    data: list[RankingPublic]


# --- influence jobs ------------------------------------------------------------------------------


class ValidationIn(_Request):
    prompt: Annotated[Text, Field(min_length=1)]
    solution: NonBlankText


class InfluenceCreate(JobCreate):
    """``POST /v1/influence``: the influence of each candidate response on the student's loss on
    ``validation`` (reference solutions). ``scoring`` supplies m, proj_dim, gradient_space, seed and
    the student format; its GRACE-only settings are ignored."""

    validation: Annotated[list[ValidationIn], Field(min_length=1, max_length=MAX_LIST)]
    method: Literal["exact", "projected", "finite_difference"] = "projected"
    keep_fraction: Annotated[float, Field(gt=0, le=1)] | None = None
    drop_negative: bool = True

    def validation_examples(self) -> list[ValidationExample]:
        return [ValidationExample(v.prompt, v.solution) for v in self.validation]


class InfluencePublic(BaseModel):
    job_id: str
    method: str
    validation_loss: float
    per_candidate: list[dict[str, Any]]
    best_per_prompt: dict[str, dict[str, int]]
    selected: list[dict[str, Any]]
    responses: list[dict[str, Any]]


# --- validation jobs -----------------------------------------------------------------------------


class EvalIn(_Request):
    """A held-out problem: its reference solution (the student's target) and, for greedy
    accuracy, its final answer."""

    prompt: Annotated[Text, Field(min_length=1)]
    solution: NonBlankText
    answer: Text | float | int | None = None


class DistillIn(_Request):
    """How each distilled student is trained; the defaults suit a 135M student on CPU."""

    method: Literal["lora", "full"] = "lora"
    epochs: Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)] = 1.0
    max_steps: Annotated[int, Field(ge=1)] | None = Field(None, description="replaces epochs when set")
    batch_size: Annotated[int, Field(ge=1, le=256)] = 8
    learning_rate: Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)] | None = Field(
        None, description="default: 1e-3 for LoRA, 1e-4 for full fine-tuning"
    )
    weight_decay: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.0
    lora_rank: Annotated[int, Field(ge=1, le=256)] = 16
    lora_alpha: Annotated[int, Field(ge=1, le=1024)] = 32
    lora_dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0

    def to_engine(self) -> DistillConfig:
        return DistillConfig(**self.model_dump())


class ValidationCreate(JobCreate):
    """``POST /v1/validations``: score ``candidates`` (as ``POST /v1/jobs``), distil a fresh copy of
    the student on each candidate's responses, evaluate it on ``eval``, and correlate every score
    with the outcome. Generated responses a scoring job already stored are reused."""

    eval: Annotated[list[EvalIn], Field(min_length=1, max_length=MAX_LIST)]
    distill: DistillIn = Field(default_factory=DistillIn)
    train_seeds: Annotated[list[Seed], Field(min_length=1, max_length=10)] = Field(
        default_factory=lambda: [0]
    )
    outcome: Literal["eval_nll", "accuracy"] = "eval_nll"
    accuracy: bool = Field(True, description="greedy-decode the eval problems that carry an answer")
    eval_max_tokens: Annotated[int, Field(ge=1, le=2048)] = 256
    mixed: bool = Field(
        False,
        description="also distil on the mixed-teacher set (per prompt, the teacher GRACE favours there) "
        "and compare it with the best single teacher",
    )

    def eval_examples(self) -> list[ValidationExample]:
        return [
            ValidationExample(e.prompt, e.solution, None if e.answer is None else str(e.answer))
            for e in self.eval
        ]

    def to_validation(self) -> ValidationConfig:
        return ValidationConfig(
            distill=self.distill.to_engine(),
            train_seeds=tuple(self.train_seeds),
            outcome=self.outcome,
            accuracy=self.accuracy,
            eval_max_tokens=self.eval_max_tokens,
            mixed=self.mixed,
        )


class CorrelationPublic(BaseModel):
    """How well one score predicted the outcome: +1 = perfectly; null when a side is constant."""

    score: str
    outcome: str
    spearman: float | None
    kendall: float | None
    ci95: tuple[float, float] | None
    regret: float
    regret_rel: float | None
    n_candidates: int
    top_pick: str
    best: str


class ValidationPublic(BaseModel):
    """A validation job's result: per candidate its scores (``grace.score``, baselines) and the
    distilled student's ``outcome``; ``correlations`` per score against ``outcome``."""

    job_id: str
    student: str
    outcome: str
    untrained: dict[str, Any]
    candidates: dict[str, dict[str, Any]]
    correlations: dict[str, CorrelationPublic]
    correlations_by_outcome: dict[str, dict[str, CorrelationPublic]]
    ranking: list[dict[str, Any]]
    mixed_candidate: dict[str, Any] | None = Field(
        None, description="the mixed-teacher set's outcome against the best single teacher's"
    )
    protocol: dict[str, Any]
    warnings: list[WarningPublic]


# --- scaling law -----------------------------------------------------------------------------------

Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class ScalingPredictIn(_Request):
    """The student's loss after distillation on ``student_tokens`` from a teacher given by its loss
    or by its size and pretraining tokens."""

    model_config = _exactly_one(  # what _one_teacher checks
        {
            **_present(teacher_loss="number"),
            "not": {"anyOf": [_present(teacher_params="number"), _present(teacher_tokens="number")]},
        },
        {
            **_present(teacher_params="number", teacher_tokens="number"),
            "not": _present(teacher_loss="number"),
        },
    )

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


class ScalingPlanIn(_Request):
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
