"""/v1/influence: influence jobs (same queue, states and storage as scoring jobs) and their results."""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import CurrentJob, SubmissionDep
from app.routers.jobs import finished, submit
from app.schemas import InfluencePublic, JobAccepted
from grace_jobs.requests import InfluenceCreate

router = APIRouter(tags=["influence"])


@router.post("/v1/influence", status_code=202, response_model=JobAccepted)
def create_influence_job(job_in: InfluenceCreate, submission: SubmissionDep) -> JobAccepted:
    """Accept an influence job; follow it at ``/v1/jobs/{id}`` like any job."""
    return submit(submission, job_in, kind="influence")


@router.get("/v1/jobs/{job_id}/influence", response_model=InfluencePublic)
def get_influence(job: CurrentJob) -> InfluencePublic:
    """Per-response influence (positive = training on it lowers the validation loss), per-candidate
    means, the best response per prompt, and the selected (filtered) responses."""
    finished(job, "influence")
    assert job.result is not None
    return InfluencePublic(job_id=job.id, **job.result)
