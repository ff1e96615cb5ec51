"""A job's states, its units' states, and the transitions between them.

A job's work is done in units (:class:`~grace_infra.db.models.JobUnit`, :func:`plan_units`): a scoring job
with several candidates has one per candidate, and the worker finishing the last assembles the
ranking; a validation job with several candidates has one per candidate that distils the student
on that candidate's responses, and an influence job one per candidate that only collects its
responses, each followed by a whole-job unit, ``waiting`` until they are done (the worker finishing
the last releases it and runs it); any other job has one whole-job unit. A unit is what a
worker claims, attempts, heartbeats and hands back; the job's state follows its units
(:func:`_settle`)::

    unit:  waiting --the units before it done--> queued
           queued --claim--> running --done--> succeeded
              ^                 |--error / out of attempts--> failed    (fails the job)
              `--hand back------|--job cancelled or failed--> cancelled
    job:   queued --first claim--> running --all units succeeded, assembled--> succeeded
                                      |--a unit failed--> failed
                                      `--cancel--> cancelling --no unit running--> cancelled

Every transition is one transaction that first takes the job's row (:func:`_lock`), so transitions
of one job's units, an API cancel and the assembly are serialised: two units finishing together see
each other, exactly one of them sees the last one done, and exactly one assembly is written. Whatever
else writes a job's row and its units' in one transaction (the API marking units sent, progress)
takes them in the same order, job first: the other order deadlocks with a claim. A
worker-side transition is conditional on that worker still owning the unit, so a worker declared
dead that comes back can never overwrite what another worker did. The transition that ends a job
also writes its webhook event to the outbox (:func:`grace_jobs.webhooks.record_end`), in the same
transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from grace_infra.db.base import utcnow
from grace_infra.db.models import TERMINAL, Job, JobResult, JobStatus, JobUnit
from grace_jobs import durations, webhooks
from grace_jobs.kinds.base import FanOut

LIVE = (JobStatus.RUNNING, JobStatus.CANCELLING)
WAITING = "waiting"  # a unit's state until the units it needs are done
NOT_STARTED = (JobStatus.QUEUED, WAITING)


class Outcome(StrEnum):
    """What a transition, or a unit's run, came to besides a job status."""

    LOST = "lost"  # the unit (or job) is no longer this worker's: nothing was written
    ASSEMBLE = "assemble"  # the last candidate unit of an assembled job is done: the caller assembles
    RELEASE = "release"  # the last candidate unit released the whole-job unit: the caller runs it
    DUPLICATE = "duplicate"  # the job was already assembled by another worker
    HANDED_BACK = "handed_back"  # back in the queue for another worker (shutdown)
    SKIPPED = "skipped"  # not claimable: finished, cancelled, or owned by a live worker
    OUTAGE = "outage"  # the database stayed down past the stale bound: left for the reconciler


Transition = JobStatus | Outcome


class AlreadyFinished(Exception):
    """A cancel of a job that has already ended."""

    def __init__(self, status: str) -> None:
        super().__init__(f"job already {status}")
        self.status = status


def unit_key(job_id: str, position: int) -> str:
    """A unit's queue message: ``{job_id}/{position}``."""
    return f"{job_id}/{position}"


def parse_unit_key(key: str) -> tuple[str, int]:
    """The ``(job_id, position)`` of a :func:`unit_key` (a bare job id: its first unit)."""
    job_id, _, position = key.partition("/")
    return job_id, int(position or 0)


def plan_units(job: Job, candidates: Sequence[str], fan_out: FanOut, now: datetime) -> None:
    """Give a new ``job`` its units as its kind's ``fan_out`` says: one per name in ``candidates``
    (followed, for ``THEN_WHOLE``, by a whole-job unit waiting for them), or one for the whole job."""
    names: list[str | None] = [None] if fan_out == FanOut.WHOLE else list(candidates)
    states: list[str] = [JobStatus.QUEUED] * len(names)
    if fan_out == FanOut.THEN_WHOLE:
        names.append(None)
        states.append(WAITING)
    job.units = [
        JobUnit(position=i, candidate=name, status=state, attempts=0, progress={}, updated_at=now)
        for i, (name, state) in enumerate(zip(names, states, strict=True))
    ]


def worker_lost(max_attempts: int) -> tuple[str, str]:
    """The error of a unit whose workers kept dying."""
    return "worker_lost", f"the workers running this job were lost; gave up after {max_attempts} attempts"


def _lock(session: Session, job_id: str) -> Job | None:
    """The job and its units as they are now, its row taken for this transaction. A write, not
    ``FOR UPDATE``: it serialises on PostgreSQL (the row lock) and on SQLite (the database's write
    lock) alike. What the session held is expired first, so a job loaded earlier in it (the API's
    request) is read again with its units, not decided on as it was."""
    now = utcnow()
    session.execute(update(Job).where(Job.id == job_id).values(updated_at=now))
    session.expire_all()
    return session.get(Job, job_id)


def _unit(job: Job, position: int) -> JobUnit | None:
    return next((u for u in job.units if u.position == position), None)


def _end(unit: JobUnit, status: JobStatus, now: datetime, error: tuple[str, str] | None = None) -> None:
    unit.status, unit.finished_at, unit.updated_at, unit.stage = status, now, now, None
    if error is not None:
        unit.error_code, unit.error_message = error


def _settle(job: Job, now: datetime) -> None:
    """Move the job to where its units say it is: failed once a unit failed, cancelled once a
    cancelling job has no unit running, queued while no unit has started. Units still queued of a
    job that is ending are cancelled; running ones stop at their next batch (their worker polls)."""
    job.attempts = max((u.attempts for u in job.units), default=0)
    if job.status in TERMINAL:
        return
    failed = next((u for u in job.units if u.status == JobStatus.FAILED), None)
    if failed is not None:
        job.status, job.error_code, job.error_message = (
            JobStatus.FAILED,
            failed.error_code,
            failed.error_message,
        )
    elif job.status == JobStatus.CANCELLING and not any(u.status == JobStatus.RUNNING for u in job.units):
        job.status = JobStatus.CANCELLED
    elif all(u.status in NOT_STARTED for u in job.units):
        job.status = JobStatus.QUEUED
    if job.status in TERMINAL or job.status == JobStatus.CANCELLING:
        for u in job.units:
            if u.status in NOT_STARTED:
                _end(u, JobStatus.CANCELLED, now)
    if job.status in TERMINAL:
        job.finished_at, job.stage = now, None
        webhooks.record_end(job, now)


def _stale(unit: JobUnit, now: datetime, stale_after_seconds: float) -> bool:
    cutoff = now - timedelta(seconds=stale_after_seconds)
    return unit.status == JobStatus.RUNNING and (unit.heartbeat_at is None or unit.heartbeat_at < cutoff)


def _retire(job: Job, unit: JobUnit, now: datetime, max_attempts: int) -> bool:
    """End a unit that must not run (again): its job is ending or ended, or it is out of attempts
    (failing the job as ``worker_lost``). False for a unit that may run."""
    if job.status in TERMINAL or job.status == JobStatus.CANCELLING:
        _end(unit, JobStatus.CANCELLED, now)
    elif unit.attempts >= job.max_attempts:
        _end(unit, JobStatus.FAILED, now, worker_lost(max_attempts))
    else:
        return False
    _settle(job, now)
    return True


def claim(
    session: Session,
    job_id: str,
    position: int,
    worker_id: str,
    *,
    stale_after_seconds: float,
    max_attempts: int,
) -> bool:
    """Take the unit if it is queued, or running with a stale heartbeat, its job is live and
    attempts remain (``max_attempts``: the setting, for the message of a unit that has none)."""
    job = _lock(session, job_id)
    now = utcnow()
    unit = _unit(job, position) if job is not None else None
    if (
        job is None
        or unit is None
        or not (unit.status == JobStatus.QUEUED or _stale(unit, now, stale_after_seconds))
    ):
        session.commit()
        return False
    if _retire(job, unit, now, max_attempts):
        session.commit()
        return False
    unit.status, unit.worker_id, unit.stage = JobStatus.RUNNING, worker_id, "starting"
    unit.attempts += 1
    unit.heartbeat_at = unit.updated_at = now
    unit.started_at = unit.started_at or now
    unit.progress = {}  # a re-run starts over
    job.status = JobStatus.RUNNING
    job.started_at = job.started_at or now
    job.stage = job.stage or "starting"
    _settle(job, now)
    session.commit()
    return True


def reap(
    session: Session, job_id: str, position: int, *, stale_after_seconds: float, max_attempts: int
) -> bool:
    """The reconciler's transition for a unit whose worker stopped beating: cancelled if its job is
    ending, failed if out of attempts; True if it should be sent again (a worker re-claims it)."""
    job = _lock(session, job_id)
    now = utcnow()
    unit = _unit(job, position) if job is not None else None
    if job is None or unit is None or not _stale(unit, now, stale_after_seconds):
        session.commit()
        return False
    retired = _retire(job, unit, now, max_attempts)
    session.commit()
    return not retired


def _owned(session: Session, job_id: str, position: int, worker_id: str) -> tuple[Job, JobUnit] | None:
    """The job (:func:`_lock`) and its unit ``position``, if ``worker_id`` still runs that unit;
    else None, with the transaction ended: the caller's transition is ``lost``."""
    job = _lock(session, job_id)
    unit = _unit(job, position) if job is not None else None
    if job is None or unit is None or unit.worker_id != worker_id or unit.status != JobStatus.RUNNING:
        session.commit()
        return None
    return job, unit


def finish(
    session: Session,
    job_id: str,
    position: int,
    worker_id: str,
    status: JobStatus,
    code: str | None = None,
    message: str | None = None,
) -> Transition:
    """End a running unit of ``worker_id`` as failed or cancelled (and its job as that says);
    ``lost`` if it is no longer its. Returns the job's status."""
    owned = _owned(session, job_id, position, worker_id)
    if owned is None:
        return Outcome.LOST
    job, unit = owned
    now = utcnow()
    _end(unit, status, now, (code, message or "") if code else None)
    _settle(job, now)
    session.commit()
    return JobStatus(job.status)


def hand_back(session: Session, job_id: str, position: int, worker_id: str) -> Transition:
    """Return a unit its worker stopped for shutdown to the queue, as if never claimed: its attempt
    is not counted (the unit did nothing wrong) and its progress restarts. A cancel that arrived
    meanwhile wins: the unit is then cancelled, not queued."""
    owned = _owned(session, job_id, position, worker_id)
    if owned is None:
        return Outcome.LOST
    job, unit = owned
    now = utcnow()
    outcome: Transition
    if job.status != JobStatus.RUNNING:
        _end(unit, JobStatus.CANCELLED, now)
        outcome = JobStatus.CANCELLED
    else:
        unit.status, unit.stage, unit.worker_id = JobStatus.QUEUED, None, None
        unit.attempts = max(unit.attempts - 1, 0)
        unit.heartbeat_at, unit.enqueued_at, unit.progress, unit.updated_at = None, None, {}, now
        outcome = Outcome.HANDED_BACK
    _settle(job, now)
    session.commit()
    return outcome


def unit_done(
    session: Session, job_id: str, position: int, worker_id: str, result: dict[str, Any]
) -> Transition:
    """A candidate unit's work is done (its responses, and for a scoring job its gradients,
    stored; ``result`` its own scores). When it was the last candidate unit: ``assemble`` (the
    caller assembles the ranking, :func:`succeed`), or ``release`` when a whole-job unit waits
    for them (now queued: the caller runs it). Else the job's status, or ``lost``."""
    owned = _owned(session, job_id, position, worker_id)
    if owned is None:
        return Outcome.LOST
    job, unit = owned
    now = utcnow()
    _end(unit, JobStatus.SUCCEEDED, now)
    unit.result = result
    _settle(job, now)
    whole = next((u for u in job.units if u.candidate is None), None)
    others = [u for u in job.units if u is not whole]
    last = job.status == JobStatus.RUNNING and all(u.status == JobStatus.SUCCEEDED for u in others)
    if last and whole is not None and whole.status == WAITING:
        whole.status, whole.enqueued_at, whole.updated_at = JobStatus.QUEUED, now, now  # handed over
    session.commit()
    if not last:
        return JobStatus(job.status)
    return Outcome.ASSEMBLE if whole is None else Outcome.RELEASE


def awaiting_assembly(session: Session, job_id: str, *, stale_after_seconds: float) -> bool:
    """True for a running job whose units all succeeded more than the stale bound ago and which
    still has no results: its assembler was lost (or never ran), and it may be assembled again."""
    job = session.get(Job, job_id)
    if job is None or job.status != JobStatus.RUNNING or not job.units:
        return False
    if any(u.status != JobStatus.SUCCEEDED for u in job.units):
        return False
    cutoff = utcnow() - timedelta(seconds=stale_after_seconds)
    return all(u.finished_at is not None and u.finished_at < cutoff for u in job.units)


def succeed(
    session: Session,
    job_id: str,
    worker_id: str,
    write: Callable[[Job], None],
    position: int | None = None,
) -> Transition:
    """Write the job's results (``write`` sets them on the locked row) and mark it succeeded, in one
    transaction. ``position``: the whole-job unit that computed them (it must still be this
    worker's); None for an assembly, which needs every unit succeeded and the job not yet done
    (a second assembler writes nothing: ``duplicate``). A cancel that arrived meanwhile wins.
    Returns ``succeeded`` when this call wrote the results; else the job's status, ``duplicate`` or
    ``lost``."""
    unit: JobUnit | None = None
    if position is None:  # an assembly: no unit of its own
        locked = _lock(session, job_id)
        if locked is None:
            session.commit()
            return Outcome.LOST
        job = locked
    else:
        owned = _owned(session, job_id, position, worker_id)
        if owned is None:
            return Outcome.LOST
        job, unit = owned
    now = utcnow()
    if job.status == JobStatus.SUCCEEDED:
        session.commit()
        return Outcome.DUPLICATE
    if unit is not None:
        _end(unit, JobStatus.CANCELLED if job.status == JobStatus.CANCELLING else JobStatus.SUCCEEDED, now)
    if job.status == JobStatus.CANCELLING:
        _settle(job, now)
    ready = job.status == JobStatus.RUNNING and all(u.status == JobStatus.SUCCEEDED for u in job.units)
    if not ready:
        session.commit()
        return JobStatus(job.status)
    session.execute(delete(JobResult).where(JobResult.job_id == job_id))
    write(job)
    job.status, job.stage, job.worker_id = JobStatus.SUCCEEDED, "done", worker_id
    job.finished_at = job.updated_at = now
    if job.started_at is not None:
        durations.record(session, (now - job.started_at).total_seconds())
    webhooks.record_end(job, now)
    session.commit()
    return JobStatus.SUCCEEDED


def fail(session: Session, job_id: str, code: str, message: str) -> Transition:
    """Fail a live job whose assembly failed (its units all succeeded)."""
    job = _lock(session, job_id)
    if job is None or job.status not in LIVE:
        session.commit()
        return Outcome.LOST
    now = utcnow()
    job.status, job.error_code, job.error_message = JobStatus.FAILED, code, message
    job.finished_at, job.stage = now, None
    webhooks.record_end(job, now)
    session.commit()
    return JobStatus(job.status)


def request_cancel(session: Session, job: Job) -> Job:
    """A queued job is cancelled now (with its units); a running one is ``cancelling`` until its
    running units stop at their next batch, and cancelled then. Raises :class:`AlreadyFinished` for
    an ended job."""
    locked = _lock(session, job.id)
    assert locked is not None
    if locked.status in TERMINAL:
        session.commit()
        raise AlreadyFinished(locked.status)
    now = utcnow()
    if locked.status != JobStatus.CANCELLING:
        locked.status, locked.cancel_requested_at = JobStatus.CANCELLING, now
        _settle(locked, now)
    session.commit()
    session.refresh(locked)
    return locked
