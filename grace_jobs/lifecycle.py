"""A job's states and the transitions between them, as conditional UPDATEs on ``jobs``.

    queued --claim--> running --succeed/fail--> succeeded | failed
      |                 |--cancel--> cancelling --(next batch boundary)--> cancelled
      |                 `--hand back (worker shutting down)--> queued   (attempt not counted)
      `--cancel--> cancelled

Every worker-side transition is conditional on that worker still owning the job (``worker_id``)
and the job still being live, so a worker declared dead that comes back can never overwrite what
another worker did. A claim counts an attempt; a claim with none left fails the job as
``worker_lost``. Each function is one transaction on the session it is given.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import TERMINAL, Job, JobResult, JobStatus

LIVE = (JobStatus.RUNNING, JobStatus.CANCELLING)


class AlreadyFinished(Exception):
    """A cancel of a job that has already ended."""

    def __init__(self, status: str) -> None:
        super().__init__(f"job already {status}")
        self.status = status


class StateRace(Exception):
    """The job kept changing state under a transition; the caller may retry."""


def gave_up(max_attempts: int, now: datetime) -> dict[str, Any]:
    """Column values of a job failed because the workers running it kept dying."""
    return {
        "status": JobStatus.FAILED,
        "error_code": "worker_lost",
        "error_message": f"the workers running this job were lost; gave up after {max_attempts} attempts",
        "finished_at": now,
        "updated_at": now,
        "stage": None,
    }


def claim(
    session: Session, job_id: str, worker_id: str, *, stale_after_seconds: float, max_attempts: int
) -> bool:
    """Take the job if it is queued, or running with a stale heartbeat, and attempts remain
    (``max_attempts``: the setting, for the message of a job that has none left)."""
    now = utcnow()
    stale = now - timedelta(seconds=stale_after_seconds)
    claimable = or_(
        Job.status == JobStatus.QUEUED,
        and_(Job.status == JobStatus.RUNNING, or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < stale)),
    )
    done = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.attempts < Job.max_attempts, claimable)
        .values(
            status=JobStatus.RUNNING,
            attempts=Job.attempts + 1,
            worker_id=worker_id,
            heartbeat_at=now,
            started_at=func.coalesce(Job.started_at, now),
            updated_at=now,
            stage="starting",
        )
    )
    if not done.rowcount:  # type: ignore[attr-defined]
        # Out of attempts: the earlier workers died with it. Give up loudly.
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.attempts >= Job.max_attempts, claimable)
            .values(**gave_up(max_attempts, now))
        )
    session.commit()
    return bool(done.rowcount)  # type: ignore[attr-defined]


def finish(
    session: Session,
    job_id: str,
    worker_id: str,
    status: JobStatus,
    code: str | None = None,
    message: str | None = None,
) -> str:
    """End a live job of ``worker_id`` as ``status``; ``lost`` if it is no longer its."""
    now = utcnow()
    done = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.worker_id == worker_id, Job.status.in_(LIVE))
        .values(
            status=status, error_code=code, error_message=message, finished_at=now, updated_at=now, stage=None
        )
    )
    session.commit()
    return str(status) if done.rowcount else "lost"  # type: ignore[attr-defined]


def hand_back(session: Session, job_id: str, worker_id: str) -> str:
    """Return a job its worker stopped for shutdown to the queue, as if never claimed: its attempt
    is not counted (the job did nothing wrong) and its progress restarts. A cancel that arrived
    meanwhile wins: the job is then cancelled, not queued."""
    now = utcnow()
    job = session.scalars(select(Job).where(Job.id == job_id).with_for_update()).one()
    if job.worker_id != worker_id or job.status not in LIVE:
        return "lost"
    if job.status == JobStatus.CANCELLING:
        job.status, job.finished_at, job.stage = JobStatus.CANCELLED, now, None
        outcome = str(JobStatus.CANCELLED)
    else:
        job.status, job.stage, job.worker_id = JobStatus.QUEUED, None, None
        job.attempts = max(job.attempts - 1, 0)
        job.heartbeat_at, job.enqueued_at = None, None
        job.progress = {}
        outcome = "handed_back"
    job.updated_at = now
    session.commit()
    return outcome


def succeed(session: Session, job_id: str, worker_id: str, write: Callable[[Job], None]) -> str:
    """Replace the job's results (``write`` sets them on the locked row) and mark it succeeded, in
    one transaction; a cancel that arrived meanwhile wins, and a job no longer ours is ``lost``."""
    now = utcnow()
    job = session.scalars(select(Job).where(Job.id == job_id).with_for_update()).one()
    if job.worker_id != worker_id or job.status not in LIVE:
        return "lost"
    if job.status == JobStatus.CANCELLING:
        job.status, job.finished_at, job.updated_at, job.stage = JobStatus.CANCELLED, now, now, None
        session.commit()
        return str(JobStatus.CANCELLED)
    session.execute(delete(JobResult).where(JobResult.job_id == job_id))
    write(job)
    job.status = JobStatus.SUCCEEDED
    job.stage = "done"
    job.finished_at = job.updated_at = now
    session.commit()
    return str(JobStatus.SUCCEEDED)


def request_cancel(session: Session, job: Job) -> Job:
    """queued -> cancelled now; running -> cancelling (the worker stops at its next batch);
    cancelling stays. Raises :class:`AlreadyFinished` for an ended job, :class:`StateRace` when
    the row kept moving (a worker claiming it)."""
    now = utcnow()
    for _ in range(3):  # the row may move under us; re-read and retry
        session.refresh(job)
        if job.status in TERMINAL:
            raise AlreadyFinished(job.status)
        if job.status == JobStatus.CANCELLING:
            return job
        target = JobStatus.CANCELLED if job.status == JobStatus.QUEUED else JobStatus.CANCELLING
        values: dict[str, Any] = {"status": target, "cancel_requested_at": now, "updated_at": now}
        if target == JobStatus.CANCELLED:
            values.update(finished_at=now, stage=None)
        done = session.execute(update(Job).where(Job.id == job.id, Job.status == job.status).values(**values))
        session.commit()
        if done.rowcount:  # type: ignore[attr-defined]
            session.refresh(job)
            return job
    raise StateRace("the job changed state while cancelling; retry")
