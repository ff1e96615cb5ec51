"""/v1/validations: validation jobs (same queue, states and storage as scoring jobs) and their results."""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import CurrentJob, SubmissionDep
from app.routers.jobs import finished, submit
from app.schemas import JobAccepted, ValidationPublic
from grace_jobs.requests import ValidationCreate

router = APIRouter(tags=["validations"])


@router.post("/v1/validations", status_code=202, response_model=JobAccepted)
def create_validation_job(job_in: ValidationCreate, submission: SubmissionDep) -> JobAccepted:
    """Accept a validation job: score the candidates, distil the student on each one's responses,
    evaluate, correlate. Follow it at ``/v1/jobs/{id}`` like any job."""
    return submit(submission, job_in, kind="validation")


@router.get("/v1/jobs/{job_id}/validation", response_model=ValidationPublic)
def get_validation(job: CurrentJob) -> ValidationPublic:
    """Per candidate its scores and the distilled student's outcome, the untrained student's, and
    each score's correlation with the outcome (Spearman, Kendall, bootstrap 95% interval, regret)."""
    finished(job, "validation")
    assert job.result is not None
    return ValidationPublic(job_id=job.id, **job.result)
