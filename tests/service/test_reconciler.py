"""The reconciler's decisions, one unit state at a time, on real PostgreSQL and Redis. Each job here
has one unit; ``make_job`` returns that unit's queue key."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from grace_infra.db.base import utcnow
from grace_infra.db.models import Job, JobStatus, JobUnit
from grace_infra.queue import RedisJobQueue
from grace_infra.settings import Settings
from grace_jobs import lifecycle
from grace_jobs.kinds import FanOut
from grace_jobs.kinds.score import KIND as SCORE
from grace_jobs.tenants import get_or_create_tenant
from workers.reconciler import reconcile
from workers.runner import JobRunner


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The service tests' settings, with queued units re-sent after 2 s: what the reconciler does
    with them is tested here (elsewhere it is off, so other tests' queued jobs stay put)."""
    return settings.model_copy(update={"requeue_queued_after_seconds": 2.0})


@pytest.fixture
def make_job(session_factory: sessionmaker[Session]) -> Any:
    def make(status: JobStatus, created_at: datetime | None = None, **unit: Any) -> str:
        """A job in ``status`` whose one unit has ``unit``'s values (queued or running: the job's
        own status if it is one of those, else running)."""
        with session_factory() as session:
            tenant = get_or_create_tenant(session=session, name="reconciler-tests")
            now = utcnow()
            job = Job(
                tenant_id=tenant.id,
                kind=SCORE.name,
                student="student",
                request={},
                request_hash="h",
                status=status,
                attempts=unit.get("attempts", 0),
                max_attempts=3,
                created_at=created_at or now,
            )
            unit_status = status if status in (JobStatus.QUEUED, JobStatus.RUNNING) else JobStatus.RUNNING
            lifecycle.plan_units(job, [], FanOut.WHOLE, now)
            for name, value in {"status": unit_status, **unit}.items():
                setattr(job.units[0], name, value)
            session.add(job)
            session.commit()
            return lifecycle.unit_key(job.id, 0)

    return make


def _job(session_factory: sessionmaker[Session], key: str) -> Job:
    job_id, _ = lifecycle.parse_unit_key(key)
    with session_factory() as session:
        return session.scalars(select(Job).where(Job.id == job_id)).one()


def _unit(session_factory: sessionmaker[Session], key: str) -> JobUnit:
    return _job(session_factory, key).units[0]


def test_reconcile_pass(settings: Settings, session_factory: sessionmaker[Session], make_job: Any) -> None:
    queue = RedisJobQueue(settings)
    long_ago = utcnow() - timedelta(minutes=10)
    lost_message = make_job(status=JobStatus.QUEUED, enqueued_at=long_ago, created_at=long_ago)
    never_sent = make_job(status=JobStatus.QUEUED, created_at=long_ago)
    waiting = make_job(status=JobStatus.QUEUED, enqueued_at=long_ago, created_at=long_ago)
    queue.enqueue(waiting)  # still pending in Redis: must not be sent twice
    fresh = make_job(status=JobStatus.QUEUED, created_at=utcnow())
    orphan = make_job(status=JobStatus.RUNNING, attempts=1, heartbeat_at=long_ago)
    alive = make_job(status=JobStatus.RUNNING, attempts=1, heartbeat_at=utcnow())
    exhausted = make_job(status=JobStatus.RUNNING, attempts=3, heartbeat_at=long_ago)
    stuck_cancel = make_job(status=JobStatus.CANCELLING, attempts=1, heartbeat_at=long_ago)
    depth = queue.depth()

    resent = set(reconcile(session_factory=session_factory, queue=queue, settings=settings))

    assert {lost_message, never_sent, orphan} <= resent
    assert not {waiting, fresh, alive, exhausted, stuck_cancel} & resent
    assert queue.is_pending(lost_message)
    assert queue.depth() == (depth or 0) + len(resent)
    assert _unit(session_factory, never_sent).enqueued_at is not None
    failed = _job(session_factory, exhausted)
    assert failed.status == JobStatus.FAILED
    assert failed.error_code == "worker_lost"
    assert failed.finished_at is not None
    assert _unit(session_factory, exhausted).status == JobStatus.FAILED
    assert _job(session_factory, stuck_cancel).status == JobStatus.CANCELLED
    assert _unit(session_factory, stuck_cancel).status == JobStatus.CANCELLED
    assert _job(session_factory, alive).status == JobStatus.RUNNING
    queue.close()


def test_claim_guard(settings: Settings, session_factory: sessionmaker[Session], make_job: Any) -> None:
    runner = JobRunner(settings, session_factory, worker_id="w-test")
    long_ago = utcnow() - timedelta(minutes=10)
    for status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.CANCELLING):
        assert runner.run(make_job(status=status, heartbeat_at=utcnow())) == "skipped"
    alive = make_job(status=JobStatus.RUNNING, attempts=1, heartbeat_at=utcnow(), worker_id="other")
    assert not runner.claim(*lifecycle.parse_unit_key(alive))
    assert _unit(session_factory, alive).worker_id == "other"
    stale = make_job(status=JobStatus.RUNNING, attempts=1, heartbeat_at=long_ago, worker_id="dead")
    assert runner.claim(*lifecycle.parse_unit_key(stale))
    reclaimed = _unit(session_factory, stale)
    assert reclaimed.worker_id == "w-test"
    assert reclaimed.attempts == 2
    assert _job(session_factory, stale).attempts == 2
    spent = make_job(status=JobStatus.RUNNING, attempts=3, heartbeat_at=long_ago)
    assert not runner.claim(*lifecycle.parse_unit_key(spent))
    assert _job(session_factory, spent).error_code == "worker_lost"
    # A stale unit of a job being cancelled is not run again: it is cancelled, and so is its job.
    dying = make_job(status=JobStatus.CANCELLING, attempts=1, heartbeat_at=long_ago, worker_id="dead")
    assert runner.run(dying) == "skipped"
    assert _unit(session_factory, dying).status == JobStatus.CANCELLED
    assert _job(session_factory, dying).status == JobStatus.CANCELLED


def test_heartbeats_are_not_judged_before_a_whole_stale_window_of_reachability(
    settings: Settings, session_factory: sessionmaker[Session], make_job: Any
) -> None:
    """Right after an outage (or a start) stale heartbeats prove nothing: nothing running is
    reclaimed, failed or cancelled; queued jobs are still re-sent."""
    queue = RedisJobQueue(settings)
    long_ago = utcnow() - timedelta(minutes=10)
    orphan = make_job(status=JobStatus.RUNNING, attempts=1, heartbeat_at=long_ago)
    exhausted = make_job(status=JobStatus.RUNNING, attempts=3, heartbeat_at=long_ago)
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
    assert _unit(session_factory, cancelling).status == JobStatus.RUNNING
    queue.close()
