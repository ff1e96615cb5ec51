"""Dependencies injected into routes: settings, a DB session, the queue, the caller's tenant,
the job the path names (404 for another tenant's job, in one place), and a job submission."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from app.errors import ApiError
from app.services import jobs as job_service
from grace_infra.db.models import Job, Tenant
from grace_infra.queue import JobQueue
from grace_infra.settings import Settings
from grace_jobs.tenants import DEFAULT_TENANT, get_or_create_tenant, tenant_for_key


# Plain attribute reads are ``async``: FastAPI runs a sync dependency on its thread pool, and a
# hop there for each costs every request a thread handoff (issue 29's 200 concurrent polls).
async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.session_factory() as session:
        yield session


async def get_queue(request: Request) -> JobQueue:
    queue: JobQueue = request.app.state.queue
    return queue


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
QueueDep = Annotated[JobQueue, Depends(get_queue)]


# A security scheme, not a header parameter: generated clients then take the key once, as their
# token, instead of an `authorization` argument on every operation. The 401s are ours (problem+json).
_bearer = HTTPBearer(
    scheme_name="bearer", description="an API key from `grace keys create`", auto_error=False
)


BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def current_tenant(session: SessionDep, settings: SettingsDep, credentials: BearerDep) -> Tenant:
    if not settings.auth_enabled:
        return get_or_create_tenant(session=session, name=DEFAULT_TENANT)
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None:
        raise ApiError(401, "Unauthorized", "send 'Authorization: Bearer <API key>'", headers=challenge)
    tenant = tenant_for_key(session=session, key=credentials.credentials.strip())
    if tenant is None:
        raise ApiError(401, "Unauthorized", "invalid or revoked API key", headers=challenge)
    return tenant


CurrentTenant = Annotated[Tenant, Depends(current_tenant)]


def current_job(job_id: str, session: SessionDep, tenant: CurrentTenant) -> Job:
    return job_service.get_job(session=session, tenant=tenant, job_id=job_id)


CurrentJob = Annotated[Job, Depends(current_job)]


class Submission:
    """What accepting a job of any kind needs: the caller, the stores, and its ``Idempotency-Key``."""

    def __init__(
        self,
        request: Request,
        response: Response,
        session: SessionDep,
        tenant: CurrentTenant,
        queue: QueueDep,
        settings: SettingsDep,
        idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
    ) -> None:
        self.request, self.response, self.session = request, response, session
        self.tenant, self.queue, self.settings = tenant, queue, settings
        self.idempotency_key = idempotency_key


SubmissionDep = Annotated[Submission, Depends()]
