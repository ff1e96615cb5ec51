"""Validation jobs (``POST /v1/validations``): ground truth for a ranking. Score the candidates,
distil a fresh copy of the student on each candidate's responses, evaluate it, and correlate every
predictor with the outcome.

Each candidate's distillation is independent: with several candidates a unit per candidate
collects its responses, stores its gradients when the store is on, and distils and evaluates the
student on them; the whole-job unit they release scores the job from what they stored, evaluates
the untrained student (and the mixed-teacher set) and correlates.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field
from sqlalchemy.orm import Session

from grace_engine.errors import InvalidInput
from grace_engine.models.data import Prompt, ReferenceExample
from grace_engine.pipelines.context import EngineContext
from grace_engine.pipelines.validation import (
    CandidateValidation,
    ValidationInputs,
    ValidationResult,
    ValidationSpec,
    run_validation,
    validate_candidate,
)
from grace_engine.science.cost import (
    WorkEstimate,
    decode_seconds,
    pass_seconds,
    text_tokens,
    training_steps,
)
from grace_infra.db.models import Job
from grace_infra.settings import Settings
from grace_jobs.kinds.base import FanOut, JobKind, UnitResults
from grace_jobs.kinds.score import examples_scored, known_draws, unit_result
from grace_jobs.public import ValidationPublic
from grace_jobs.requests import (
    MAX_LIST,
    EvalIn,
    JobCreate,
    LimitExceeded,
    ParamCounts,
    ValidationSettingsIn,
)


class ValidationCreate(JobCreate, ValidationSettingsIn):
    """``POST /v1/validations``: score ``candidates`` (as ``POST /v1/jobs``), distil a fresh copy of
    the student on each candidate's responses, evaluate it on ``eval``, and correlate every score
    with the outcome. Generated responses a scoring job already stored are reused."""

    eval: Annotated[list[EvalIn], Field(min_length=1, max_length=MAX_LIST)]

    def eval_examples(self) -> list[ReferenceExample]:
        return [
            ReferenceExample(e.prompt, e.solution, None if e.answer is None else str(e.answer))
            for e in self.eval
        ]

    def inputs(self, prompts: list[Prompt]) -> ValidationInputs:
        base = super().inputs(prompts)
        return ValidationInputs(base.prompts, base.candidates, base.student, eval_set=self.eval_examples())

    def spec(self) -> ValidationSpec:
        return ValidationSpec(scoring=self.scoring.to_engine(), validation=self.to_validation())


def _limit(condition: bool, field: str, detail: str) -> None:
    if condition:
        raise LimitExceeded(detail, field=field)


class Validation(JobKind[ValidationCreate, ValidationResult]):
    name = "validation"
    request = ValidationCreate
    path = "/v1/validations"
    operation = "validation_job"
    tag = "validations"
    summary = (
        "Accept a validation job: score the candidates, distil the student on each one's responses, "
        "evaluate, correlate. Follow it at ``/v1/jobs/{id}`` like any job."
    )
    public = ValidationPublic
    result_summary = (
        "Per candidate its scores and the distilled student's outcome, the untrained student's, and "
        "each score's correlation with the outcome (Spearman, Kendall, bootstrap 95% interval, regret)."
    )

    def fan_out(self, request: ValidationCreate, *, gradient_store: bool) -> FanOut:
        del gradient_store
        return FanOut.THEN_WHOLE if len(request.candidates) > 1 else FanOut.WHOLE

    def check(self, request: ValidationCreate, prompts: list[Prompt], settings: Settings) -> None:
        """Eval problems, their length, and training steps within the operator's limits; the
        distillation settings as the engine checks them."""
        del prompts
        _limit(
            len(request.eval) > settings.max_eval_examples,
            "eval",
            f"{len(request.eval)} eval problems; at most {settings.max_eval_examples} per job",
        )
        for i, e in enumerate(request.eval):
            _limit(
                len(e.prompt) > settings.max_prompt_chars,
                f"eval[{i}].prompt",
                f"{len(e.prompt)} characters; at most {settings.max_prompt_chars}",
            )
            _limit(
                len(e.solution) > settings.max_response_chars,
                f"eval[{i}].solution",
                f"{len(e.solution)} characters; at most {settings.max_response_chars}",
            )
        steps = request.distill.max_steps
        _limit(
            steps is not None and steps > settings.max_training_steps,
            "distill.max_steps",
            f"at most {settings.max_training_steps} steps per distilled student",
        )
        try:
            request.to_validation().check(request.eval_examples())
        except InvalidInput as exc:
            top = ("eval", "train_seeds", "outcome")
            field = exc.field if exc.field is None or exc.field.startswith(top) else f"distill.{exc.field}"
            raise InvalidInput(exc.message, field=field) from exc

    def work(self, request: ValidationCreate, prompts: list[Prompt], params: ParamCounts) -> WorkEstimate:
        """Scoring's stages, then one distillation per candidate and seed (and the mixed set's),
        and the evaluation of each distilled student and the untrained one: likelihoods of the
        eval solutions and, for accuracy, greedy decoding up to ``eval_max_tokens``."""
        base = super().work(request, prompts, params)
        student = params(request.student)
        if student is None:
            return base
        distill, seeds = request.distill, len(request.train_seeds)
        per_student = []
        for examples, tokens in request.student_examples(prompts):
            steps = training_steps(
                int(examples),
                batch_size=distill.batch_size,
                epochs=distill.epochs,
                max_steps=distill.max_steps,
            )
            per_student.append(
                pass_seconds(student, steps * distill.batch_size * tokens / max(examples, 1), backward=True)
            )
        # the mixed set is as large as a candidate's: one more student per seed, of average cost
        students = len(per_student) + request.mixed
        distillation = seeds * (sum(per_student) + request.mixed * sum(per_student) / len(per_student))
        # greedy decoding runs only when every eval problem has an answer (``evaluate``)
        decoded = request.accuracy and all(e.answer is not None for e in request.eval)
        answered = len(request.eval) if decoded else 0
        one_eval = pass_seconds(
            student, sum(text_tokens(len(e.prompt) + len(e.solution)) for e in request.eval), backward=False
        ) + decode_seconds(student, answered * request.eval_max_tokens)
        evaluations = seeds * students + 1
        return WorkEstimate(
            {**base.seconds, "distillation": distillation, "evaluation": evaluations * one_eval},
            {
                **base.drivers,
                "distillation": ("distill.epochs", "distill.max_steps", "train_seeds", "candidates"),
                "evaluation": ("eval", "eval_max_tokens", "train_seeds", "candidates"),
            },
            base.unknown,
        )

    def run_candidate(
        self, request: ValidationCreate, prompts: list[Prompt], name: str, ctx: EngineContext
    ) -> dict[str, Any]:
        run = validate_candidate(request.inputs(prompts), request.spec(), ctx, name)
        own = {} if run.ranking is None else unit_result(run.ranking)
        return {**own, "validation": run.validation.to_dict()}

    def run_whole(
        self, request: ValidationCreate, prompts: list[Prompt], units: UnitResults, ctx: EngineContext
    ) -> ValidationResult:
        distilled = {
            c: CandidateValidation.from_dict(r["validation"]) for c, r in units.items() if "validation" in r
        }
        inputs, spec = request.inputs(prompts), request.spec()
        return run_validation(inputs, spec, ctx, distilled=distilled, known=known_draws(units))

    def write(self, session: Session, job: Job, request: ValidationCreate, result: ValidationResult) -> None:
        del session, request
        job.result = result.to_dict()
        job.ranking = result.ranking.ranking_rows()
        job.examples_scored = examples_scored(result.ranking)


KIND = Validation()
