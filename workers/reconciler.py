"""The reconciler: Postgres is the truth, the queue only a delivery mechanism.

* A ``queued`` job older than ``requeue_queued_after_seconds`` whose id is not pending in the queue
  (never sent, or lost with a Redis restart) is sent again.
* A ``running`` job whose heartbeat is older than ``stale_after_seconds`` lost its worker: it is
  sent again (a worker re-claims it, counting an attempt), or failed with ``worker_lost`` when
  attempts are used up.
* A ``cancelling`` job whose worker died is ``cancelled``.

Heartbeats are judged only once the reconciler has reached the database for a whole stale window
(:class:`Reconciler`), so a database outage does not read as every worker dying.

Sending twice is harmless: claims are conditional, so one worker wins.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from sqlalchemy import and_, false, func, or_, select, update
from sqlalchemy import true as sql_true
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db.base import utcnow
from app.db.models import Job, JobStatus
from app.queue import JobQueue
from grace_jobs.lifecycle import gave_up

log = logging.getLogger("grace.reconciler")


def reconcile(
    *,
    session_factory: sessionmaker[Session],
    queue: JobQueue,
    settings: Settings,
    judge_heartbeats: bool = True,
) -> list[str]:
    """One pass; returns the ids sent again. ``judge_heartbeats`` False: leave running and
    cancelling jobs alone (their heartbeats cannot be judged yet, see :class:`Reconciler`)."""
    now = utcnow()
    queued_before = now - timedelta(seconds=settings.requeue_queued_after_seconds)
    stale = now - timedelta(seconds=settings.stale_after_seconds)
    dead = and_(
        or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < stale), sql_true() if judge_heartbeats else false()
    )
    with session_factory() as session:
        session.execute(
            update(Job)
            .where(Job.status == JobStatus.CANCELLING, dead)
            .values(status=JobStatus.CANCELLED, finished_at=now, updated_at=now, stage=None)
        )
        session.execute(
            update(Job)
            .where(Job.status == JobStatus.RUNNING, dead, Job.attempts >= Job.max_attempts)
            .values(**gave_up(settings.max_attempts, now))
        )
        session.commit()
        # Judged by when the job was last sent (or created, if never): a job just created may still
        # be on its way into the queue.
        waiting = session.scalars(
            select(Job.id).where(
                Job.status == JobStatus.QUEUED,
                func.coalesce(Job.enqueued_at, Job.created_at) < queued_before,
            )
        ).all()
        orphaned = session.scalars(
            select(Job.id).where(and_(Job.status == JobStatus.RUNNING, dead, Job.attempts < Job.max_attempts))
        ).all()
    resend = [j for j in waiting if not queue.is_pending(j)] + list(orphaned)
    for job_id in resend:
        try:
            queue.enqueue(job_id)
        except Exception:
            log.warning("could not re-enqueue job %s; next pass retries", job_id, exc_info=True)
            continue
        with session_factory() as session:
            session.execute(update(Job).where(Job.id == job_id).values(enqueued_at=utcnow()))
            session.commit()
        log.info("re-enqueued job %s", job_id)
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
