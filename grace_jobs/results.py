"""A finished job's results, shaped for storage: what goes into ``jobs.result`` and
``jobs.ranking``, and one ``job_results`` row per candidate."""

from __future__ import annotations

from dataclasses import asdict

from sqlalchemy.orm import Session

from grace_engine.influence import InfluenceResult
from grace_engine.results import RankingResult
from grace_engine.validation import ValidationResult
from grace_infra.db.models import Job, JobResult
from grace_jobs.requests import InfluenceCreate, JobCreate

Result = RankingResult | InfluenceResult | ValidationResult
# The parts of a ranking kept on the job; per-candidate details go to job_results.
RANKING_KEPT = ("warnings", "settled", "uncertainty", "projection", "proj_dim", "budget", "mixed")


def write_result(session: Session, job: Job, request: JobCreate, result: Result) -> None:
    """Set ``job``'s result columns (and add its candidate rows) from ``result``; the caller has
    deleted any earlier rows and commits."""
    if isinstance(result, InfluenceResult):
        assert isinstance(request, InfluenceCreate)
        kept = result.select(keep_fraction=request.keep_fraction, drop_negative=request.drop_negative)
        job.result = {**result.to_dict(), "selected": [asdict(r) for r in kept]}
        job.examples_scored = len(result.responses)
    elif isinstance(result, ValidationResult):
        job.result = result.to_dict()
        job.ranking = result.ranking.ranking_rows()
        job.examples_scored = sum(c.n_responses for c in result.ranking.candidates.values())
    else:
        _write_ranking(session, job, result)


def _write_ranking(session: Session, job: Job, result: RankingResult) -> None:
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
                grace=row["grace"],
                grace_std=row["grace_std"],
                g_norm=row["g_norm"],
                g_vendi=row["g_vendi"],
                student_nll=row["student_nll"],
                accuracy=row["accuracy"],
                details=details[row["name"]],
            )
        )
    job.examples_scored = sum(c.n_responses for c in result.candidates.values())
