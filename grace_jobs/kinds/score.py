"""Scoring jobs (``POST /v1/jobs``): rank the candidates as teachers for the student.

A job with several candidates fans out when their work is independent until the ranking: the
workers' gradient store is on (to hand each unit's gradients to the assembly), no budget (a
budget-aware job picks each round's prompts from every candidate's scores so far), and a gradient
predictor is asked for. Each candidate's unit then collects its responses, computes its gradients
under the job's one projection and its own scores; whichever unit finishes last ranks them all
from the stored gradients, reusing each unit's uncertainty draws.

Results: the ranking and what qualifies it on the job, one ``job_results`` row per candidate (its
predictors' values and details), read at ``/ranking``, ``/scores`` and on leaderboards.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from grace_engine.models.data import Prompt
from grace_engine.pipelines.results import RankingResult
from grace_engine.science.predictors import needs_gradients
from grace_engine.science.uncertainty import Draws
from grace_infra.db.models import Job, JobResult
from grace_jobs.kinds.base import FanOut, JobKind, UnitResults
from grace_jobs.leaderboards import comparison_key, prompt_set_hash
from grace_jobs.requests import JobCreate

if TYPE_CHECKING:
    from grace_engine.pipelines.context import EngineContext

# The parts of a ranking kept on the job; per-candidate details go to job_results.
RANKING_KEPT = ("warnings", "settled", "uncertainty", "projection", "proj_dim", "budget", "mixed", "guidance")


def unit_result(ranking: RankingResult) -> dict[str, Any]:
    """What a candidate's unit leaves for the assembly: its ranking row, and its uncertainty draws
    so the assembly does not resample it."""
    (row,) = ranking.ranking_rows()
    own: dict[str, Any] = dict(row)
    if ranking.uncertainty is not None:
        (draws,) = ranking.uncertainty.draws.values()
        own["draws"] = draws.to_json()
    return own


def known_draws(units: UnitResults) -> dict[str, Draws] | None:
    """Each candidate unit's uncertainty draws (:func:`unit_result`); None when none left any."""
    found = {c: Draws.from_json(r["draws"]) for c, r in units.items() if "draws" in r}
    return found or None


def examples_scored(ranking: RankingResult) -> int:
    return sum(c.n_responses for c in ranking.candidates.values())


class Score(JobKind[JobCreate, RankingResult]):
    name = "score"
    request = JobCreate
    path = "/v1/jobs"
    operation = "job"
    tag = "jobs"
    summary = (
        "Accept a scoring job. Same ``Idempotency-Key`` and body: the same job again; same key with "
        "another body: 422; while the first request with that key is still in flight: 409."
    )

    def results_at(self, job_id: str) -> str:
        return f"/v1/jobs/{job_id}/ranking and /scores"

    def fan_out(self, request: JobCreate, *, gradient_store: bool) -> FanOut:
        independent = len(request.candidates) > 1 and gradient_store and request.scoring.budget is None
        if independent and needs_gradients(request.scoring.to_engine().predictors):
            return FanOut.ASSEMBLED
        return FanOut.WHOLE

    def keys(self, request: JobCreate, prompts: list[Prompt]) -> tuple[str | None, str | None]:
        """None for the comparison of a budget-aware job, whose final d depends on how many prompts
        it ends up scoring."""
        prompt_set = prompt_set_hash(prompts)
        if request.scoring.budget is not None:
            return prompt_set, None
        cfg = request.scoring.to_engine().resolved(len(prompts), request.inputs(prompts).candidates)
        return prompt_set, comparison_key(request.student, prompt_set, cfg)

    def run_candidate(
        self, request: JobCreate, prompts: list[Prompt], name: str, ctx: EngineContext
    ) -> dict[str, Any]:
        from grace_engine.pipelines.scoring import rank_teachers

        ranking = rank_teachers(request.inputs(prompts), request.scoring.to_engine(), ctx, only=name)
        return unit_result(ranking)

    def run_whole(
        self, request: JobCreate, prompts: list[Prompt], units: UnitResults, ctx: EngineContext
    ) -> RankingResult:
        from grace_engine.pipelines.scoring import rank_teachers

        spec = request.scoring.to_engine()
        return rank_teachers(request.inputs(prompts), spec, ctx, known=known_draws(units))

    def write(self, session: Session, job: Job, request: JobCreate, result: RankingResult) -> None:
        full = result.to_dict(include_responses=False)
        details = full["candidates"]
        job.ranking = result.ranking_rows()
        job.result = {k: full[k] for k in RANKING_KEPT}
        for row in job.ranking:
            session.add(
                JobResult(
                    job_id=job.id,
                    candidate=row["name"],
                    rank=row["rank"],
                    predictor_values=row["values"],
                    details=details[row["name"]],
                )
            )
        job.examples_scored = examples_scored(result)


KIND = Score()
