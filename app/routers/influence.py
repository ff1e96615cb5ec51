"""/v1/influence: influence jobs (same queue, states and storage as scoring jobs) and their results."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request, Response

from app.deps import CurrentJob, CurrentTenant, QueueDep, SessionDep, SettingsDep
from app.routers.jobs import accepted, finished
from app.schemas import InfluenceCreate, InfluencePublic, JobAccepted
from app.services import jobs as job_service

router = APIRouter(tags=["influence"])


@router.post("/v1/influence", status_code=202, response_model=JobAccepted)
def create_influence_job(
    job_in: InfluenceCreate,
    request: Request,
    response: Response,
    session: SessionDep,
    tenant: CurrentTenant,
    queue: QueueDep,
    settings: SettingsDep,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> JobAccepted:
    """Accept an influence job; follow it at ``/v1/jobs/{id}`` like any job."""
    job, _ = job_service.create_job(
        session=session,
        tenant=tenant,
        job_in=job_in,
        idempotency_key=idempotency_key,
        queue=queue,
        settings=settings,
        kind="influence",
    )
    return accepted(request, response, job)


@router.get("/v1/jobs/{job_id}/influence", response_model=InfluencePublic)
def get_influence(job: CurrentJob) -> InfluencePublic:
    """Per-response influence (positive = training on it lowers the validation loss), per-candidate
    means, the best response per prompt, and the selected (filtered) responses."""
    finished(job, "influence")
    assert job.result is not None
    return InfluencePublic(job_id=job.id, **job.result)
