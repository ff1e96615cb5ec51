"""The reconciler: Postgres is the truth, the queue only a delivery mechanism. It works on units
(:mod:`grace_jobs.lifecycle`), each its own message ``{job_id}/{position}``.

* A ``queued`` unit of a live job, sent longer than ``requeue_queued_after_seconds`` ago (or never)
  and not pending in the queue (never sent, or lost with a Redis restart), is sent again.
* A ``running`` unit whose heartbeat is older than ``stale_after_seconds`` lost its worker: it is
  sent again (a worker re-claims it, counting an attempt); failed with ``worker_lost`` when
  attempts are used up (failing its job); cancelled when its job is being cancelled (a cancelling
  job is cancelled once no unit runs).
* A running job whose units all succeeded longer than the stale bound ago without results lost its
  assembler: its last unit is sent again, and the worker taking it assembles.

Heartbeats are judged only once the reconciler has reached the database for a whole stale window
(:class:`Reconciler`), so a database outage does not read as every worker dying.

Sending twice is harmless: claims and the assembly are guarded by the job's row, so one worker wins.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import exists, func, or_, select, update
from sqlalchemy.orm import Session, aliased, sessionmaker

from grace_infra.db.base import utcnow
from grace_infra.db.models import Job, JobStatus, JobUnit
from grace_infra.queue import JobQueue
from grace_infra.settings import Settings
from grace_jobs import lifecycle

log = logging.getLogger("grace.reconciler")


def reconcile(
    *,
    session_factory: sessionmaker[Session],
    queue: JobQueue,
    settings: Settings,
    judge_heartbeats: bool = True,
) -> list[str]:
    """One pass; returns the unit keys sent again. ``judge_heartbeats`` False: leave running units
    alone (their heartbeats cannot be judged yet, see :class:`Reconciler`)."""
    now = utcnow()
    queued_before = now - timedelta(seconds=settings.requeue_queued_after_seconds)
    stale = now - timedelta(seconds=settings.stale_after_seconds)
    with session_factory() as session:
        # Judged by when the unit was last sent (or its job created, if never): a unit just created
        # may still be on its way into the queue.
        waiting = session.execute(
            select(JobUnit.job_id, JobUnit.position)
            .join(Job, Job.id == JobUnit.job_id)
            .where(
                JobUnit.status == JobStatus.QUEUED,
                Job.status.in_((JobStatus.QUEUED, JobStatus.RUNNING)),
                func.coalesce(JobUnit.enqueued_at, Job.created_at) < queued_before,
            )
        ).all()
        dead: Sequence[Any] = []
        unassembled: Sequence[Any] = []
        if judge_heartbeats:
            dead = session.execute(
                select(JobUnit.job_id, JobUnit.position).where(
                    JobUnit.status == JobStatus.RUNNING,
                    or_(JobUnit.heartbeat_at.is_(None), JobUnit.heartbeat_at < stale),
                )
            ).all()
            other = aliased(JobUnit)
            unfinished = exists().where(other.job_id == Job.id, other.status != JobStatus.SUCCEEDED)
            recent = exists().where(other.job_id == Job.id, other.finished_at >= stale)
            unassembled = session.execute(
                select(JobUnit.job_id, func.max(JobUnit.position))
                .join(Job, Job.id == JobUnit.job_id)
                .where(Job.status == JobStatus.RUNNING, ~unfinished, ~recent)
                .group_by(JobUnit.job_id)
            ).all()
    orphaned = []
    for job_id, position in dead:
        with session_factory() as session:
            if lifecycle.reap(
                session,
                job_id,
                position,
                stale_after_seconds=settings.stale_after_seconds,
                max_attempts=settings.max_attempts,
            ):
                orphaned.append((job_id, position))
    keys = [lifecycle.unit_key(j, p) for j, p in waiting]
    resend = [k for k in keys if not queue.is_pending(k)]
    resend += [lifecycle.unit_key(j, p) for j, p in [*orphaned, *unassembled]]
    for key in resend:
        try:
            queue.enqueue(key)
        except Exception:
            log.warning("could not re-enqueue unit %s; next pass retries", key, exc_info=True)
            continue
        job_id, position = lifecycle.parse_unit_key(key)
        with session_factory() as session:
            session.execute(
                update(JobUnit)
                .where(JobUnit.job_id == job_id, JobUnit.position == position)
                .values(enqueued_at=utcnow())
            )
            session.commit()
        log.info("re-enqueued unit %s", key)
    return resend


class Reconciler(threading.Thread):
    """Runs :func:`reconcile` every ``reconcile_every_seconds`` until stopped."""

    def __init__(
        self, *, session_factory: sessionmaker[Session], queue: JobQueue, settings: Settings
    ) -> None:
        super().__init__(name="grace-reconciler", daemon=True)
        self.session_factory, self.queue, self.settings = session_factory, queue, settings
        self._stopped = threading.Event()
        # A heartbeat older than the stale bound means a dead worker only if the database could
        # take that heartbeat all along. After an outage (or at start, not having watched), every
        # worker first gets a whole stale window to beat again: a blip costs no job an attempt.
        self._reachable_since = time.monotonic()

    def run(self) -> None:
        while not self._stopped.wait(self.settings.reconcile_every_seconds):
            judge = time.monotonic() - self._reachable_since >= self.settings.stale_after_seconds
            try:
                reconcile(
                    session_factory=self.session_factory,
                    queue=self.queue,
                    settings=self.settings,
                    judge_heartbeats=judge,
                )
            except Exception:
                self._reachable_since = time.monotonic()
                log.warning("reconcile pass failed; retrying next interval", exc_info=True)

    def stop(self) -> None:
        self._stopped.set()
        self.join()
