"""What a job kind is: one object that says everything the service does with jobs of that kind.

A kind declares its request model, how a job fans out into units, how a candidate's unit runs,
how the whole job runs (or is assembled from what its candidate units left), how its result is
stored, and the public model of that result. The API's routes, the lifecycle's unit plan, the
worker's runner and the result writer read all of it from here, so a new kind is one module
(:mod:`grace_jobs.kinds` finds it).

A kind imports the pipeline that runs it inside its ``run_*`` methods: the API imports every kind
to check and serve its jobs, and never runs one, so it never loads torch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy.orm import Session

from grace_engine.models.data import Prompt
from grace_engine.science.cost import WorkEstimate
from grace_infra.db.models import Job
from grace_infra.settings import Settings
from grace_jobs.requests import JobCreate, ParamCounts

if TYPE_CHECKING:  # the API validates and serves with kinds and never runs one: no torch there
    from grace_engine.pipelines.context import EngineContext

R = TypeVar("R", bound=JobCreate)
Result = TypeVar("Result")
UnitResults = Mapping[str, Mapping[str, Any]]  # candidate name -> what its unit left (JSON)


class FanOut(StrEnum):
    """How a job's work splits into units."""

    WHOLE = "whole"  # one unit runs the whole job
    ASSEMBLED = "assembled"  # a unit per candidate; whichever finishes last assembles the result
    THEN_WHOLE = "then_whole"  # a unit per candidate, then a whole-job unit the last one releases


class JobKind(ABC, Generic[R, Result]):
    """A kind of job. Subclasses set the class attributes and implement the methods.

    Attributes:
        name: the kind's name, stored on each job (``jobs.kind``).
        request: the body of the kind's ``POST`` (a :class:`~grace_jobs.requests.JobCreate`).
        path: where jobs of this kind are submitted.
        operation: the route's name, so the OpenAPI operation id: ``create_<operation>``, and
            ``get_<name>`` for the result.
        summary: the submission route's description.
        tag: the routes' OpenAPI tag (default: ``name``).
        public: the result's body at ``GET /v1/jobs/{id}/{name}`` (None: the kind serves its
            results through routes of its own).
        result_summary: that route's description.
        ranks: whether its jobs compute GRACE's splits and their uncertainty, so the scoring cost
            bound (``GRACE_MAX_SCORING_SECONDS``) applies to them.
    """

    name: ClassVar[str]
    request: type[R]
    path: ClassVar[str]
    operation: ClassVar[str]
    summary: ClassVar[str]
    tag: ClassVar[str] = ""
    public: ClassVar[type[BaseModel] | None] = None
    result_summary: ClassVar[str] = ""
    ranks: ClassVar[bool] = True

    def fan_out(self, request: R, *, gradient_store: bool) -> FanOut:
        """How a job of this kind splits (``gradient_store``: the workers' store is on)."""
        del request, gradient_store
        return FanOut.WHOLE

    def check(self, request: R, prompts: list[Prompt], settings: Settings) -> None:
        """The kind's own checks at submission, beyond every job's (raise
        :class:`~grace_engine.errors.InvalidInput` or :class:`~grace_jobs.requests.LimitExceeded`
        naming the field)."""
        del request, prompts, settings

    def work(self, request: R, prompts: list[Prompt], params: ParamCounts) -> WorkEstimate:
        """The job's estimated CPU seconds by stage (:meth:`~grace_jobs.requests.JobCreate.work`),
        checked against the operator's bounds at submission; a kind with stages of its own adds
        them."""
        return request.work(prompts, params, ranks=self.ranks)

    def keys(self, request: R, prompts: list[Prompt]) -> tuple[str | None, str | None]:
        """The job's prompt set and leaderboard comparison key (None: not on leaderboards)."""
        del request, prompts
        return None, None

    def run_candidate(
        self, request: R, prompts: list[Prompt], name: str, ctx: EngineContext
    ) -> dict[str, Any]:
        """Candidate ``name``'s unit of a fanned-out job; returns what it leaves for the job's last
        unit (JSON). A kind that fans out implements it."""
        raise NotImplementedError(f"{self.name} jobs do not fan out")

    @abstractmethod
    def run_whole(self, request: R, prompts: list[Prompt], units: UnitResults, ctx: EngineContext) -> Result:
        """The whole job, or its assembly, given what its candidate units left (``units``; empty
        when it did not fan out)."""

    @abstractmethod
    def write(self, session: Session, job: Job, request: R, result: Result) -> None:
        """Set ``job``'s result columns (and add any rows of its own) from ``result``; the caller
        has deleted the job's earlier rows and commits."""

    def results_at(self, job_id: str) -> str:
        """Where a succeeded job's results are read."""
        return f"/v1/jobs/{job_id}/{self.name}"

    def result_body(self, job: Job) -> BaseModel:
        """The body of ``GET /v1/jobs/{id}/{name}`` for a succeeded job."""
        assert self.public is not None
        assert job.result is not None
        return self.public(job_id=job.id, **job.result)
