"""What every job asks for: the parts every kind's request shares (prompts, candidates, scoring
settings, webhook) and :class:`JobCreate`, the body of ``POST /v1/jobs`` that each kind's own
request extends (pydantic; no web framework, no ORM). The API validates them; the worker reads the
stored request back through the same models and converts it to engine objects
(:meth:`JobCreate.inputs`, :meth:`ScoringIn.to_engine`), so it runs exactly what the API accepted.

Request models are strict (a boolean is not a number) and forbid unknown keys; every list and
string is bounded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal, NamedTuple

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    PrivateAttr,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from grace_engine.errors import InvalidInput
from grace_engine.models.data import (
    DEFAULT_INSTRUCTION,
    DEFAULT_STUDENT_TEMPLATE,
    Prompt,
    StudentFormat,
    at_temperature,
    candidate_name,
)
from grace_engine.science.cost import (
    WorkEstimate,
    candidate_scoring_seconds,
    decode_seconds,
    pass_seconds,
    text_tokens,
)
from grace_jobs.sanitize import MAX_ITEMS, MAX_TEXT, text_problem

if TYPE_CHECKING:  # the engine's objects, built by to_engine(); importing them here would load torch
    from grace_engine.models.candidates import Candidate
    from grace_engine.pipelines.config import ScoringConfig
    from grace_engine.pipelines.context import JobInputs
    from grace_engine.pipelines.distillation import DistillConfig
    from grace_engine.pipelines.validation import ValidationConfig
    from grace_engine.science.adaptive import RankingBudget

ParamCounts = Callable[[str], int | None]  # a model reference's parameter count (None: unknown)


class LimitExceeded(InvalidInput):
    """A request the schema accepts but one of the operator's limits (``Settings.max_*``) refuses."""

    code = "limit_exceeded"
    title = "Limit Exceeded"


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

# The schema states the guard's ceilings (grace_jobs.sanitize), tighter ones where a list is naturally small;
# the operator's limits (Settings.max_*, 422 "Limit Exceeded") are tighter still, checked after.
MAX_LIST = MAX_ITEMS
MAX_CANDIDATES = 1024
MAX_TEMPERATURES = 16  # temperatures one model candidate lists
Temperature = Annotated[float, Field(ge=0, le=10)]
MAX_RESPONSES = 1024  # responses supplied for one prompt


def exactly_one(*groups: tuple[str, ...]) -> ConfigDict:
    """A request model's config whose schema states what its cross-field validator checks: exactly
    one of ``groups`` is given (each of its fields present and not null), in the description and as
    ``x-exactly-one`` for tools. Not as a ``oneOf``: its untyped members stop common generators
    (openapi-python-client) from parsing the body, and so from creating any job."""
    rule = " or ".join(" with ".join(f"`{name}`" for name in group) for group in groups)

    def extra(schema: dict[str, Any]) -> None:
        schema["description"] = (
            f"{schema.get('description', '').rstrip()}\n\nGive exactly one of {rule}.".lstrip()
        )
        schema["x-exactly-one"] = [list(group) for group in groups]

    return ConfigDict(extra="forbid", strict=True, json_schema_extra=extra)


class StrictModel(BaseModel):
    # strict: a JSON true is not the number 1, nor "1" a number; what the schema says is what passes
    model_config = ConfigDict(extra="forbid", strict=True)


class PromptIn(StrictModel):
    id: Annotated[Text, Field(min_length=1, max_length=200)] | None = None
    prompt: NonBlankText
    answer: Text | float | int | None = Field(None, description="reference answer; enables teacher accuracy")


class CandidateIn(StrictModel):
    """A teacher to score: a model with sampling settings, or responses you supply."""

    # what _model_xor_responses checks
    model_config = exactly_one(("model",), ("responses",))

    name: Annotated[NonBlankText, Field(max_length=200)]
    model: Annotated[Text, Field(min_length=1, max_length=1024)] | None = None
    temperature: Temperature = 0.6
    temperatures: Annotated[list[Temperature], Field(min_length=1, max_length=MAX_TEMPERATURES)] | None = (
        Field(
            None,
            description="sample the model at each of these instead of `temperature`: the job scores one "
            "candidate per temperature, named `name@T` (e.g. `tutor@0.3`), and its guidance names the "
            "best temperature",
        )
    )
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
        if self.temperatures is not None:
            if self.model is None:
                raise ValueError("'temperatures' samples a model; supplied responses have none")
            if "temperature" in self.model_fields_set:
                raise ValueError("give 'temperature' or 'temperatures', not both")
            if len(set(self.temperatures)) != len(self.temperatures):
                raise ValueError("'temperatures' lists a temperature twice")
        return self

    def expanded(self) -> list[CandidateIn]:
        """This candidate, or one per temperature when it lists ``temperatures``."""
        if self.temperatures is None:
            return [self]
        return [
            self.model_copy(
                update={"name": at_temperature(self.name, t), "temperature": t, "temperatures": None}
            )
            for t in self.temperatures
        ]

    @field_validator("name")
    @classmethod
    def _distinct_name(cls, name: str) -> str:
        try:
            return candidate_name(name)
        except InvalidInput as exc:
            raise ValueError(exc.message) from exc

    def to_engine(self) -> Candidate:
        from grace_engine.models.candidates import Candidate

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
    # "auto" as a typed one-value enum, not a bare const: generators then try both members
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": MAX_PROJ_DIM},
                {"type": "string", "enum": ["auto"]},
            ]
        }
    ),
]


class BudgetIn(StrictModel):
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
        from grace_engine.science.adaptive import RankingBudget

        return RankingBudget(
            self.examples, self.seconds, self.initial_prompts, self.growth, self.drop_below, seed
        )


def _predictor(name: str) -> str:
    from grace_engine.science.predictors import PREDICTORS

    if name not in PREDICTORS:
        raise ValueError(f"unknown predictor; choose from {', '.join(PREDICTORS)}")
    return name


class _PredictorSchema:
    """Lists the registry's predictors in the JSON schema, read when the schema is made."""

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        from grace_engine.science.predictors import PREDICTORS

        return {"type": "string", "enum": list(PREDICTORS)}


# A predictor's name, one of the registry's (grace_engine.science.predictors).
PredictorName = Annotated[str, AfterValidator(_predictor), _PredictorSchema()]


class ScoringIn(StrictModel):
    """Scoring settings; the defaults follow the paper."""

    responses_per_prompt: Annotated[int, Field(ge=1)] = Field(
        4, description="m: responses per prompt of each generated candidate (a candidate may set its own)"
    )
    proj_dim: ProjDim = Field(
        "auto", description='projection dimension; "auto": from the training rows per split (README)'
    )
    n_splits: Annotated[int, Field(ge=1, le=1000)] = Field(10, description="GRACE's random prompt splits")
    test_fraction: Annotated[float, Field(gt=0, lt=1)] = Field(0.1, description="prompts held out per split")
    smoothing: Annotated[float, Field(ge=0, le=1)] = Field(
        1e-3, description="spectral smoothing of the training kernel (the paper's nu)"
    )
    gradient_space: Literal["full", "output_layer", "lora"] = Field(
        "full", description="the parameters gradients are taken with respect to"
    )
    lora_rank: Annotated[int, Field(ge=1, le=1024)] = Field(8, description="the LoRA gradient space's rank")
    lora_alpha: Annotated[float, Field(gt=0, le=1e4, allow_inf_nan=False)] = Field(
        16.0, description="the LoRA gradient space's scale (alpha / rank)"
    )
    path: Literal["fast", "exact"] = Field("fast", description="the gradient path (README: fast vs exact)")
    factor_dim: Annotated[int, Field(ge=1, le=4096)] = Field(
        64, description="the fast path's per-layer factor size (README: fast vs exact)"
    )
    seed: Seed = 0
    length_factor: bool = Field(False, description="scale each gradient row by ln(response length)")
    max_length: Annotated[int, Field(ge=2)] | None = Field(
        None, description="student tokens per example at most"
    )
    truncate: bool = Field(False, description="cut examples above max_length instead of refusing them")
    student_template: Text = Field(
        DEFAULT_STUDENT_TEMPLATE, description="the student's text before a response; contains {prompt}"
    )
    instruction: Text = Field(DEFAULT_INSTRUCTION, description="the teacher's user turn before the prompt")
    generation_backend: Literal["auto", "vllm", "transformers"] | None = Field(
        None, description="override the worker's GRACE_GENERATION_BACKEND for this job"
    )
    predictors: Annotated[list[PredictorName], Field(min_length=1)] | None = Field(
        None,
        description="predictors to compute (default: all); without grace, g_norm and g_vendi the "
        "job runs the student's forward pass only",
    )
    rank_by: PredictorName | None = Field(
        None, description="the predictor that orders the ranking (default: grace when computed)"
    )
    bootstrap: Annotated[int, Field(ge=0, le=2000)] = Field(
        200,
        description="subsamples of half the prompts for P(top-1) (the gaps and settled come from "
        "cross-validation); 0: no uncertainty",
    )
    confidence: Annotated[float, Field(gt=0, lt=1)] = Field(
        0.9, description="the level of the gaps' intervals and of settled"
    )
    budget: BudgetIn | None = Field(None, description="rank in rounds within a budget (README)")
    max_params: Annotated[int, Field(ge=1)] | None = Field(
        None,
        description="the guidance's size limit: it names the best candidate whose model has at most "
        "this many parameters (read from the model's files); no effect on any score",
    )
    _engine: ScoringConfig | None = PrivateAttr(None)

    def to_engine(self) -> ScoringConfig:
        """The engine's config of these settings, made once per request (the submission's checks
        and each unit read it)."""
        if self._engine is None:
            self._engine = self._convert()
        return self._engine

    def _convert(self) -> ScoringConfig:
        from grace_engine.pipelines.config import ScoringConfig
        from grace_engine.science.gradient_space import GradientSpace
        from grace_engine.science.predictors import PREDICTOR_NAMES

        return ScoringConfig(
            responses_per_prompt=self.responses_per_prompt,
            proj_dim="auto" if self.proj_dim == "auto" else int(self.proj_dim),
            n_splits=self.n_splits,
            test_fraction=self.test_fraction,
            smoothing=self.smoothing,
            gradient_space=GradientSpace(self.gradient_space, self.lora_rank, self.lora_alpha),
            path=self.path,
            factor_dim=self.factor_dim,
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
            max_params=self.max_params,
        )


class WebhookIn(StrictModel):
    """Where to POST the job's end (``job.succeeded``, ``job.failed``, ``job.cancelled``), signed
    per Standard Webhooks with your tenant's secret (``POST /v1/webhook-secret``)."""

    url: Annotated[Text, Field(min_length=1, max_length=2048, description="http(s); public hosts only")]


class JobCreate(StrictModel):
    """``POST /v1/jobs``: rank ``candidates`` as teachers for ``student`` on ``prompts`` (inline)
    or on an uploaded dataset (``dataset_id``)."""

    # what _prompts_xor_dataset checks
    model_config = exactly_one(("prompts",), ("dataset_id",))

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
    webhook: WebhookIn | None = None

    @model_validator(mode="after")
    def _prompts_xor_dataset(self) -> JobCreate:
        if (self.prompts is None) == (self.dataset_id is None):
            raise ValueError("give exactly one of 'prompts' or 'dataset_id'")
        # One candidate per temperature from here on: the job's units, names, limits and stored
        # request are the candidates it scores.
        self.candidates = [one for c in self.candidates for one in c.expanded()]
        return self

    def inputs(self, prompts: list[Prompt]) -> JobInputs:
        """What the engine scores: ``prompts`` (inline or the dataset's), candidates, student."""
        from grace_engine.pipelines.context import JobInputs

        return JobInputs(prompts, [c.to_engine() for c in self.candidates], self.student)

    def scoring_cost(self, n_prompts: int) -> ScoringCost | None:
        """One candidate's estimated scoring (:func:`~grace_engine.science.cost.candidate_scoring_seconds`)
        at the job's ``d`` (an ``auto`` one resolved by the config's own rule) and most responses
        per prompt; None where no GRACE is computed."""
        scoring = self.scoring
        if n_prompts < 2 or "grace" not in (scoring.predictors or ["grace"]):
            return None
        m = max(c.responses_per_prompt or scoring.responses_per_prompt for c in self.candidates)
        d = scoring.to_engine().resolved(n_prompts, [c.to_engine() for c in self.candidates]).dim
        seconds = candidate_scoring_seconds(
            prompts=n_prompts, m=m, d=d, n_splits=scoring.n_splits, bootstrap=scoring.bootstrap
        )
        return ScoringCost(seconds, d, m)

    def student_examples(self, prompts: list[Prompt]) -> list[tuple[float, float]]:
        """Per candidate, the student's ``(examples, tokens)``: one example per response, its
        tokens the prompt's and the response's (``max_tokens`` for one still to be generated)."""
        prompt_tokens = sum(text_tokens(len(p.prompt)) for p in prompts)
        out: list[tuple[float, float]] = []
        for c in self.candidates:
            m = c.responses_per_prompt or self.scoring.responses_per_prompt
            if c.responses is None:
                out.append((len(prompts) * m, len(prompts) * m * c.max_tokens + m * prompt_tokens))
            else:
                texts = [t for ts in c.responses.values() for t in ts]
                out.append((len(texts), sum(text_tokens(len(t)) for t in texts) + m * prompt_tokens))
        return out

    def work(self, prompts: list[Prompt], params: ParamCounts, *, ranks: bool) -> WorkEstimate:
        """The CPU seconds of generating every response (``max_tokens`` each, an upper bound),
        the student's gradient passes over prompt and response, and (``ranks``) scoring each
        candidate. ``params``: a model reference's parameter count, None where unknown."""
        seconds = {"generation": 0.0, "gradients": 0.0, "scoring": 0.0}
        unknown: list[str] = []
        prompt_tokens = sum(text_tokens(len(p.prompt)) for p in prompts)
        for i, c in enumerate(self.candidates):
            if c.responses is not None:
                continue
            m = c.responses_per_prompt or self.scoring.responses_per_prompt
            teacher = params(c.model or "")
            if teacher is None:
                unknown.append(f"candidates[{i}].model")
                continue
            seconds["generation"] += decode_seconds(teacher, len(prompts) * m * c.max_tokens)
            seconds["generation"] += pass_seconds(teacher, m * prompt_tokens, backward=False)
        student = params(self.student)
        if student is None:
            unknown.append("student")
        else:
            tokens = sum(t for _, t in self.student_examples(prompts))
            seconds["gradients"] = pass_seconds(student, tokens, backward=True)
        scoring = self.scoring_cost(len(prompts)) if ranks else None
        if scoring is not None:
            seconds["scoring"] = scoring.seconds * len(self.candidates)
        return WorkEstimate(
            {k: v for k, v in seconds.items() if v > 0},
            {
                "generation": ("candidates", "candidates[].max_tokens", "scoring.responses_per_prompt"),
                "gradients": ("prompts", "candidates", "scoring.responses_per_prompt"),
                "scoring": ("scoring.n_splits", "scoring.bootstrap", "scoring.proj_dim"),
            },
            tuple(unknown),
        )


class ScoringCost(NamedTuple):
    """One candidate's estimated scoring CPU seconds, at projection dimension ``d`` with ``m``
    responses per prompt."""

    seconds: float
    d: int
    m: int


def engine_prompts(prompts: list[PromptIn] | list[dict[str, Any]]) -> list[Prompt]:
    """Prompts as the engine wants them; a missing id becomes the prompt's position."""
    out = []
    for i, raw in enumerate(prompts):
        p = raw if isinstance(raw, PromptIn) else PromptIn.model_validate(raw)
        out.append(
            Prompt(id=p.id or str(i), prompt=p.prompt, answer=None if p.answer is None else str(p.answer))
        )
    return out


class DatasetCreate(StrictModel):
    name: Annotated[Text, Field(max_length=200)] | None = None
    prompts: Annotated[list[PromptIn], Field(min_length=2, max_length=MAX_LIST)]


# --- validation jobs' settings ---------------------------------------------------------------------


class EvalIn(StrictModel):
    """A held-out problem: its reference solution (the student's target) and, for greedy
    accuracy, its final answer."""

    prompt: Annotated[Text, Field(min_length=1)]
    solution: NonBlankText
    answer: Text | float | int | None = None


class DistillIn(StrictModel):
    """How each distilled student is trained; the defaults suit a 135M student on CPU."""

    method: Literal["lora", "full"] = "lora"
    epochs: Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)] = 3.0
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
        from grace_engine.pipelines.distillation import DistillConfig

        return DistillConfig(**self.model_dump())


class ValidationSettingsIn(StrictModel):
    """How a validation job trains and judges each distilled student (``POST /v1/validations``
    and ``grace validate`` alike)."""

    distill: DistillIn = Field(default_factory=DistillIn)
    train_seeds: Annotated[list[Seed], Field(min_length=1, max_length=10)] = Field(
        default_factory=lambda: [0, 1, 2],
        description="one distilled student per seed: the spread between seeds is measured",
    )
    outcome: Literal["eval_nll", "accuracy"] = "eval_nll"
    accuracy: bool = Field(True, description="greedy-decode the eval problems that carry an answer")
    eval_max_tokens: Annotated[int, Field(ge=1, le=2048)] = 256
    mixed: bool = Field(
        False,
        description="also distil on the mixed-teacher set (per prompt, the teacher GRACE favours there) "
        "and compare it with the best single teacher",
    )
    bootstrap_seed: Annotated[int, Field(ge=0)] = Field(
        0, description="seeds the bootstrap intervals of the correlations"
    )

    def to_validation(self) -> ValidationConfig:
        from grace_engine.pipelines.validation import ValidationConfig

        return ValidationConfig(
            distill=self.distill.to_engine(),
            train_seeds=tuple(self.train_seeds),
            outcome=self.outcome,
            accuracy=self.accuracy,
            eval_max_tokens=self.eval_max_tokens,
            bootstrap_seed=self.bootstrap_seed,
            mixed=self.mixed,
        )


class InfluenceSettingsIn(StrictModel):
    """How an influence job measures and selects (``POST /v1/influence`` and ``grace influence``)."""

    method: Literal["exact", "projected", "finite_difference"] = "projected"
    keep_fraction: Annotated[float, Field(gt=0, le=1)] | None = Field(
        None, description="keep the most helpful share of responses"
    )
    drop_negative: bool = Field(True, description="leave out responses of negative influence")
