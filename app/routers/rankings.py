"""/v1/rankings: a student's ranking history across jobs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from app.deps import CurrentTenant, SessionDep
from app.schemas import RankingEntry, RankingHistory, RankingPublic, result_summary
from app.services import jobs as job_service
from grace_infra.db.models import Job, JobStatus

router = APIRouter(prefix="/v1/rankings", tags=["rankings"])


@router.get("", response_model=RankingHistory)
def ranking_history(
    session: SessionDep,
    tenant: CurrentTenant,
    student: Annotated[str, Query(min_length=1, max_length=1024)],
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> RankingHistory:
    """Rankings of your succeeded jobs for ``student``, newest first."""
    jobs = session.scalars(
        select(Job)
        .options(*job_service.LISTING)
        .where(Job.tenant_id == tenant.id, Job.student == student, Job.status == JobStatus.SUCCEEDED)
        .order_by(Job.finished_at.desc(), Job.id.desc())
        .limit(limit)
    )
    return RankingHistory(
        student=student,
        data=[
            RankingPublic(
                job_id=j.id,
                student=j.student,
                finished_at=j.finished_at,
                ranking=[RankingEntry.model_validate(r) for r in j.ranking or []],
                **result_summary(j.result),
            )
            for j in jobs
        ],
    )
