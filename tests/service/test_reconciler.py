"""The reconciler's decisions, one job state at a time, on real PostgreSQL and Redis."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.auth import get_or_create_tenant
from app.config import Settings
from app.db.base import utcnow
from app.db.models import Job, JobStatus
from app.queue import RedisJobQueue
from workers.reconciler import reconcile
from workers.runner import JobRunner


@pytest.fixture
def make_job(session_factory: sessionmaker[Session]) -> Any:
    def make(**values: Any) -> str:
        with session_factory() as session:
            tenant = get_or_create_tenant(session=session, name="reconciler-tests")
            job = Job(
                tenant_id=tenant.id, student="student", request={}, request_hash="h", progress={}, **values
            )
            session.add(job)
            session.commit()
            return job.id

    return make


def _job(session_factory: sessionmaker[Session], job_id: str) -> Job:
    with session_factory() as session:
        return session.scalars(select(Job).where(Job.id == job_id)).one()


def test_reconcile_pass(settings: Settings, session_factory: sessionmaker[Session], make_job: Any) -> None:
    queue = RedisJobQueue(settings)
    long_ago = utcnow() - timedelta(minutes=10)
    lost_message = make_job(status=JobStatus.QUEUED, enqueued_at=long_ago, created_at=long_ago)
    never_sent = make_job(status=JobStatus.QUEUED, created_at=long_ago)
    waiting = make_job(status=JobStatus.QUEUED, enqueued_at=long_ago, created_at=long_ago)
    queue.enqueue(waiting)  # still pending in Redis: must not be sent twice
    fresh = make_job(status=JobStatus.QUEUED, created_at=utcnow())
    orphan = make_job(status=JobStatus.RUNNING, attempts=1, max_attempts=3, heartbeat_at=long_ago)
    alive = make_job(status=JobStatus.RUNNING, attempts=1, max_attempts=3, heartbeat_at=utcnow())
    exhausted = make_job(status=JobStatus.RUNNING, attempts=3, max_attempts=3, heartbeat_at=long_ago)
    stuck_cancel = make_job(status=JobStatus.CANCELLING, attempts=1, heartbeat_at=long_ago)
    depth = queue.depth()

    resent = set(reconcile(session_factory=session_factory, queue=queue, settings=settings))

    assert {lost_message, never_sent, orphan} <= resent
    assert not {waiting, fresh, alive, exhausted, stuck_cancel} & resent
    assert queue.is_pending(lost_message)
    assert queue.depth() == (depth or 0) + len(resent)
    assert _job(session_factory, never_sent).enqueued_at is not None
    failed = _job(session_factory, exhausted)
    assert failed.status == JobStatus.FAILED
    assert failed.error_code == "worker_lost"
    assert failed.finished_at is not None
    assert _job(session_factory, stuck_cancel).status == JobStatus.CANCELLED
    assert _job(session_factory, alive).status == JobStatus.RUNNING
    queue.close()


def test_claim_guard(settings: Settings, session_factory: sessionmaker[Session], make_job: Any) -> None:
    runner = JobRunner(settings, session_factory, worker_id="w-test")
    long_ago = utcnow() - timedelta(minutes=10)
    for status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.CANCELLING):
        assert runner.run(make_job(status=status)) == "skipped"
    alive = make_job(status=JobStatus.RUNNING, attempts=1, heartbeat_at=utcnow(), worker_id="other")
    assert not runner.claim(alive)
    assert _job(session_factory, alive).worker_id == "other"
    stale = make_job(status=JobStatus.RUNNING, attempts=1, heartbeat_at=long_ago, worker_id="dead")
    assert runner.claim(stale)
    reclaimed = _job(session_factory, stale)
    assert reclaimed.worker_id == "w-test"
    assert reclaimed.attempts == 2
    spent = make_job(status=JobStatus.RUNNING, attempts=3, max_attempts=3, heartbeat_at=long_ago)
    assert not runner.claim(spent)
    assert _job(session_factory, spent).error_code == "worker_lost"


def test_heartbeats_are_not_judged_before_a_whole_stale_window_of_reachability(
    settings: Settings, session_factory: sessionmaker[Session], make_job: Any
) -> None:
    """Right after an outage (or a start) stale heartbeats prove nothing: nothing running is
    reclaimed, failed or cancelled; queued jobs are still re-sent."""
    queue = RedisJobQueue(settings)
    long_ago = utcnow() - timedelta(minutes=10)
    orphan = make_job(status=JobStatus.RUNNING, attempts=1, max_attempts=3, heartbeat_at=long_ago)
    exhausted = make_job(status=JobStatus.RUNNING, attempts=3, max_attempts=3, heartbeat_at=long_ago)
    cancelling = make_job(status=JobStatus.CANCELLING, attempts=1, heartbeat_at=long_ago)
    lost = make_job(status=JobStatus.QUEUED, enqueued_at=long_ago, created_at=long_ago)
    resent = set(
        reconcile(session_factory=session_factory, queue=queue, settings=settings, judge_heartbeats=False)
    )
    assert lost in resent
    assert not {orphan, exhausted, cancelling} & resent
    assert _job(session_factory, orphan).status == JobStatus.RUNNING
    assert _job(session_factory, exhausted).status == JobStatus.RUNNING
    assert _job(session_factory, cancelling).status == JobStatus.CANCELLING
    queue.close()
