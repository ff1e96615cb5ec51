"""Per-tenant quotas, checked when a job is about to be stored: jobs in flight, submissions per
minute, and the estimated compute of the jobs in flight (``jobs.cost_seconds``, from
:mod:`grace_engine.science.cost`). One tenant cannot fill the queue or the workers for the others.

Counted from the jobs table, so every API replica sees the same figures with nothing else to keep
consistent. The check starts with a write to the tenant's row (a no-op UPDATE), held until the
caller commits the job it inserts: PostgreSQL locks that row, and SQLite takes its database write
lock (it ignores ``FOR UPDATE``, and would otherwise count outside any write transaction), so
concurrent submissions of one tenant cannot all pass on the same count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from grace_infra.db.models import TERMINAL, Job, JobStatus, Tenant
from grace_infra.settings import Settings

WINDOW = timedelta(minutes=1)
ACTIVE = tuple(s.value for s in JobStatus if s not in TERMINAL)
# A job in flight frees its share when it ends, which no one can predict: the client looks again soon.
BUSY_RETRY_AFTER_SECONDS = 30


@dataclass
class QuotaExceeded(Exception):
    """A tenant over one of its quotas: ``quota`` names the setting (``GRACE_TENANT_<QUOTA>``)."""

    quota: str
    limit: float
    current: float
    retry_after: int
    detail: str


def check_quotas(
    session: Session, tenant: Tenant, cost_seconds: float, settings: Settings, now: datetime
) -> None:
    """Raise :class:`QuotaExceeded` if one more job of ``cost_seconds`` (estimated CPU-seconds)
    would take ``tenant`` over a quota (a job over the compute quota on its own is the caller's
    422). Locks the tenant's row until the caller's commit or rollback."""
    session.execute(update(Tenant).where(Tenant.id == tenant.id).values(id=Tenant.id))
    active, in_flight = session.execute(
        select(func.count(), func.sum(Job.cost_seconds)).where(
            Job.tenant_id == tenant.id, Job.status.in_(ACTIVE)
        )
    ).one()
    compute = float(in_flight or 0.0)
    if active >= settings.tenant_max_active_jobs:
        raise QuotaExceeded(
            "max_active_jobs",
            settings.tenant_max_active_jobs,
            active,
            BUSY_RETRY_AFTER_SECONDS,
            f"{active} of your jobs are queued or running; at most {settings.tenant_max_active_jobs} "
            "at once (GRACE_TENANT_MAX_ACTIVE_JOBS): wait for one to end, or cancel one",
        )
    recent, oldest = session.execute(
        select(func.count(), func.min(Job.created_at)).where(
            Job.tenant_id == tenant.id, Job.created_at > now - WINDOW
        )
    ).one()
    if recent >= settings.tenant_submissions_per_minute:
        wait = (oldest + WINDOW - now).total_seconds() if oldest is not None else WINDOW.total_seconds()
        raise QuotaExceeded(
            "submissions_per_minute",
            settings.tenant_submissions_per_minute,
            recent,
            max(1, math.ceil(wait)),
            f"{recent} jobs submitted in the last minute; at most "
            f"{settings.tenant_submissions_per_minute} (GRACE_TENANT_SUBMISSIONS_PER_MINUTE)",
        )
    if compute + cost_seconds > settings.tenant_max_compute_seconds:
        raise QuotaExceeded(
            "max_compute_seconds",
            settings.tenant_max_compute_seconds,
            compute,
            BUSY_RETRY_AFTER_SECONDS,
            f"this job's estimated {cost_seconds:,.0f} CPU-seconds on top of the {compute:,.0f} of your "
            f"jobs in flight exceeds your {settings.tenant_max_compute_seconds:,.0f} "
            "(GRACE_TENANT_MAX_COMPUTE_SECONDS): wait for a job to end, or cancel one",
        )
