"""Influence jobs (``POST /v1/influence``): the influence of each candidate response on the
student's loss on a reference set (the request's ``validation`` field, named before the service had
validation jobs).

Influence needs every candidate's gradients at once, so only generation splits: with several
candidates and some to generate, a unit per candidate collects (and stores) its responses, and
the whole-job unit they release does the rest.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from pydantic import Field
from sqlalchemy.orm import Session

from grace_engine.models.data import Prompt, ReferenceExample
from grace_engine.pipelines.context import EngineContext
from grace_engine.pipelines.influence import InfluenceInputs, InfluenceSpec, run_influence
from grace_engine.pipelines.prepare import prepare_candidate
from grace_engine.science.influence import InfluenceResult
from grace_infra.db.models import Job
from grace_jobs.kinds.base import FanOut, JobKind, UnitResults
from grace_jobs.public import InfluencePublic
from grace_jobs.requests import MAX_LIST, InfluenceSettingsIn, JobCreate, NonBlankText, StrictModel, Text


class ReferenceIn(StrictModel):
    prompt: Annotated[Text, Field(min_length=1)]
    solution: NonBlankText


class InfluenceCreate(JobCreate, InfluenceSettingsIn):
    """``POST /v1/influence``: the influence of each candidate response on the student's loss on
    ``validation`` (the reference set: prompts with reference solutions). ``scoring`` supplies m,
    proj_dim, gradient_space, seed and the student format; its GRACE-only settings are ignored."""

    validation: Annotated[list[ReferenceIn], Field(min_length=1, max_length=MAX_LIST)] = Field(
        description="the reference set whose loss each response's influence is measured on"
    )

    def inputs(self, prompts: list[Prompt]) -> InfluenceInputs:
        base = super().inputs(prompts)
        reference = [ReferenceExample(v.prompt, v.solution) for v in self.validation]
        return InfluenceInputs(base.prompts, base.candidates, base.student, reference=reference)

    def spec(self) -> InfluenceSpec:
        return InfluenceSpec(scoring=self.scoring.to_engine(), method=self.method)


class Influence(JobKind[InfluenceCreate, InfluenceResult]):
    name = "influence"
    request = InfluenceCreate
    path = "/v1/influence"
    operation = "influence_job"
    summary = "Accept an influence job; follow it at ``/v1/jobs/{id}`` like any job."
    public = InfluencePublic
    ranks = False  # influence, not GRACE: no splits, no bootstrap
    result_summary = (
        "Per-response influence (positive = training on it lowers the reference loss), per-candidate "
        "means, the best response per prompt, and the selected (filtered) responses."
    )

    def fan_out(self, request: InfluenceCreate, *, gradient_store: bool) -> FanOut:
        del gradient_store
        generating = any(c.model is not None for c in request.candidates)
        return FanOut.THEN_WHOLE if len(request.candidates) > 1 and generating else FanOut.WHOLE

    def run_candidate(
        self, request: InfluenceCreate, prompts: list[Prompt], name: str, ctx: EngineContext
    ) -> dict[str, Any]:
        prepare_candidate(request.inputs(prompts), request.scoring.to_engine(), ctx, name)
        return {}  # its responses are in the store

    def run_whole(
        self, request: InfluenceCreate, prompts: list[Prompt], units: UnitResults, ctx: EngineContext
    ) -> InfluenceResult:
        del units  # the candidate units left their responses in the store
        return run_influence(request.inputs(prompts), request.spec(), ctx)

    def write(self, session: Session, job: Job, request: InfluenceCreate, result: InfluenceResult) -> None:
        del session
        kept = result.select(keep_fraction=request.keep_fraction, drop_negative=request.drop_negative)
        job.result = {**result.to_dict(), "selected": [asdict(r) for r in kept]}
        job.examples_scored = len(result.responses)


KIND = Influence()
