"""/v1/validations: validation jobs (same queue, states and storage as scoring jobs) and their results."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request, Response

from app.deps import CurrentJob, CurrentTenant, QueueDep, SessionDep, SettingsDep
from app.routers.jobs import accepted, finished
from app.schemas import JobAccepted, ValidationCreate, ValidationPublic
from app.services import jobs as job_service

router = APIRouter(tags=["validations"])


@router.post("/v1/validations", status_code=202, response_model=JobAccepted)
def create_validation_job(
    job_in: ValidationCreate,
    request: Request,
    response: Response,
    session: SessionDep,
    tenant: CurrentTenant,
    queue: QueueDep,
    settings: SettingsDep,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> JobAccepted:
    """Accept a validation job: score the candidates, distil the student on each one's responses,
    evaluate, correlate. Follow it at ``/v1/jobs/{id}`` like any job."""
    job, _ = job_service.create_job(
        session=session,
        tenant=tenant,
        job_in=job_in,
        idempotency_key=idempotency_key,
        queue=queue,
        settings=settings,
        kind="validation",
    )
    return accepted(request, response, job)


@router.get("/v1/jobs/{job_id}/validation", response_model=ValidationPublic)
def get_validation(job: CurrentJob) -> ValidationPublic:
    """Per candidate its scores and the distilled student's outcome, the untrained student's, and
    each score's correlation with the outcome (Spearman, Kendall, bootstrap 95% interval, regret)."""
    finished(job, "validation")
    assert job.result is not None
    return ValidationPublic(job_id=job.id, **job.result)
