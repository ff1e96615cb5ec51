"""Running one unit of a job in a worker: claim it, run its kind's unit (:mod:`grace_jobs.kinds`:
a candidate's part, or the whole job) in an :class:`~grace_engine.pipelines.context.EngineContext`
with progress, heartbeats and cancellation, and write the outcome; after a fanned-out job's last
unit, assemble it. The state transitions themselves are :mod:`grace_jobs.lifecycle`'s, each
retried through a database outage.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from grace_engine.errors import Cancelled, GraceError, InvalidInput
from grace_engine.memory import MemoryBudget
from grace_engine.models.data import Prompt
from grace_engine.models.generation import (
    Generated,
    GenerationBackend,
    TransformersBackend,
    VllmBackend,
    generated_from_json,
    generated_to_json,
    select_backend,
)
from grace_engine.models.loading import ModelCache
from grace_engine.pipelines.context import EngineContext
from grace_engine.progress import ProgressEvent
from grace_engine.stores.gradient_store import StoredGradients
from grace_infra import logs, tracing
from grace_infra.db.base import utcnow
from grace_infra.db.models import Dataset, GradientSet, Job, JobStatus, JobUnit, ResponseSet
from grace_infra.settings import Settings
from grace_jobs import kinds, lifecycle
from grace_jobs.lifecycle import LIVE, Outcome, Transition
from grace_jobs.policy import policy_from
from grace_jobs.requests import JobCreate, engine_prompts

log = logging.getLogger("grace.worker")
T = TypeVar("T")
P = ParamSpec("P")
OUTAGE_RETRY_SECONDS = 0.5  # between tries of a job-thread transaction while the database is down


def through_outage(step: Callable[[], T], *, bound_seconds: float, what: str) -> T:
    """``step`` (one database transaction), retried while the database is unreachable, for up to
    ``bound_seconds`` (the stale bound): a blip delays the job instead of failing it. Past the
    bound the job's heartbeat is stale anyway and the error goes up."""
    deadline = time.monotonic() + bound_seconds
    while True:
        try:
            return step()
        except (OperationalError, InterfaceError):
            if time.monotonic() >= deadline:
                raise
            log.warning("%s: database unavailable, retrying", what)
            time.sleep(OUTAGE_RETRY_SECONDS)


def _retried(method: Callable[Concatenate[JobRunner, P], T]) -> Callable[Concatenate[JobRunner, P], T]:
    """A :class:`JobRunner` method that is one transaction, run through :func:`through_outage`."""

    @functools.wraps(method)
    def wrapper(self: JobRunner, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self.through_outage(
            lambda: method(self, *args, **kwargs), f"{method.__name__} of job {args[0]}"
        )

    return wrapper


@dataclass(frozen=True)
class LoadedJob:
    """A job as a unit runs it: its kind, its request (as the kind's model), tenant, prompts, and
    the unit's candidate (None: the whole job)."""

    kind: kinds.AnyKind
    request: JobCreate
    tenant_id: str
    prompts: list[Prompt]
    candidate: str | None


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class _TenantRows:
    """One tenant's rows of a cache table, each under a hash of (tenant, ``namespace``, key); each
    read and write goes through ``retry`` (:meth:`JobRunner.through_outage`)."""

    namespace = ""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        tenant_id: str,
        retry: Callable[[Callable[[], Any], str], Any],
    ) -> None:
        self.session_factory, self.tenant_id, self.retry = session_factory, tenant_id, retry

    def _key(self, key: str) -> str:
        return hashlib.sha256(f"{self.tenant_id}/{self.namespace}{key}".encode()).hexdigest()


class DbResponseStore(_TenantRows):
    """Generated responses kept in ``response_sets``, scoped to the tenant."""

    def get(self, key: str) -> Generated | None:
        generated: Generated | None = self.retry(lambda: self._get(key), "response store read")
        return generated

    def put(self, key: str, generated: Generated) -> None:
        self.retry(lambda: self._put(key, generated), "response store write")

    def _get(self, key: str) -> Generated | None:
        with self.session_factory() as session:
            row = session.get(ResponseSet, self._key(key))
            return generated_from_json(row.responses_json) if row is not None else None

    def _put(self, key: str, generated: Generated) -> None:
        with self.session_factory() as session:
            row = session.get(ResponseSet, self._key(key))
            if row is not None:  # an entry from before cap counting, which get() ignores
                row.responses_json = generated_to_json(generated)
            else:
                session.add(
                    ResponseSet(
                        key=self._key(key),
                        tenant_id=self.tenant_id,
                        responses_json=generated_to_json(generated),
                    )
                )
            try:
                session.commit()
            except IntegrityError:  # the same responses stored by a concurrent run
                session.rollback()


class DbGradientStore(_TenantRows):
    """Projected gradients kept in ``gradient_sets`` (:mod:`grace_engine.stores.gradient_store`), scoped to
    the tenant: at most ``tenant_bytes`` of one tenant's and ``max_bytes`` in all. After a put, the
    tenant's own least recently used go first until both bounds hold: a tenant never evicts
    another's, and when its own are not enough, what it just stored goes too (a cache: the job
    keeps its results, a re-score computes them again). In the database rather than on a worker's
    disk, so every worker (and, with fan-out, the one that assembles a ranking) reads what any
    other stored."""

    namespace = "gradients/"

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        tenant_id: str,
        max_bytes: int,
        retry: Callable[[Callable[[], Any], str], Any],
        *,
        tenant_bytes: int | None = None,
    ) -> None:
        super().__init__(session_factory, tenant_id, retry)
        self.max_bytes = max_bytes
        self.tenant_bytes = max_bytes if tenant_bytes is None else min(tenant_bytes, max_bytes)

    def get(self, key: str) -> StoredGradients | None:
        found: StoredGradients | None = self.retry(lambda: self._get(key), "gradient store read")
        return found

    def put(self, key: str, gradients: StoredGradients) -> None:
        self.retry(lambda: self._put(key, gradients), "gradient store write")

    def _get(self, key: str) -> StoredGradients | None:
        with self.session_factory() as session:
            row = session.get(GradientSet, self._key(key))
            if row is None:
                return None
            data = row.data
            row.used_at = utcnow()
            session.commit()
        return StoredGradients.from_bytes(data)

    def _put(self, key: str, gradients: StoredGradients) -> None:
        data = gradients.to_bytes()
        with self.session_factory() as session:
            session.merge(
                GradientSet(
                    key=self._key(key),
                    tenant_id=self.tenant_id,
                    data=data,
                    nbytes=len(data),
                    used_at=utcnow(),
                )
            )
            try:
                session.commit()
            except IntegrityError:  # the same gradients stored by a concurrent run
                session.rollback()
            # The tenant's own, oldest first, until both bounds hold; a row's size is read, never its data.
            total = session.scalar(select(func.coalesce(func.sum(GradientSet.nbytes), 0))) or 0
            mine = session.execute(
                select(GradientSet.key, GradientSet.nbytes)
                .where(GradientSet.tenant_id == self.tenant_id)
                .order_by(GradientSet.used_at)
            ).all()
            own = sum(row.nbytes for row in mine)
            doomed = []
            for row in mine:
                if total <= self.max_bytes and own <= self.tenant_bytes:
                    break
                doomed.append(row.key)
                total, own = total - row.nbytes, own - row.nbytes
            if doomed:
                session.execute(delete(GradientSet).where(GradientSet.key.in_(doomed)))
                session.commit()


class UnitSession:
    """Progress, heartbeat and cancellation polling for one claimed unit."""

    def __init__(self, runner: JobRunner, job_id: str, position: int) -> None:
        self.runner, self.job_id, self.position = runner, job_id, position
        self.progress: dict[str, Any] = {}
        self.stage: str | None = None
        self._last_write = 0.0
        self._last_poll = 0.0
        self._stop_requested = False
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, name=f"heartbeat-{job_id[:8]}", daemon=True)

    def _owned(self) -> Any:
        return and_(
            JobUnit.job_id == self.job_id,
            JobUnit.position == self.position,
            JobUnit.worker_id == self.runner.worker_id,
            JobUnit.status == JobStatus.RUNNING,
        )

    def __enter__(self) -> UnitSession:
        self._beat.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._beat.join()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.runner.settings.heartbeat_seconds):
            try:
                with self.runner.session_factory() as session:
                    session.execute(update(JobUnit).where(self._owned()).values(heartbeat_at=utcnow()))
                    session.commit()
            except Exception:  # a missed beat is survivable; the next one retries
                log.warning("heartbeat for unit %s/%d failed", self.job_id, self.position, exc_info=True)

    def update(self, event: ProgressEvent) -> None:
        if event.candidate is not None:
            self.progress.setdefault(event.candidate, {})[event.stage] = {
                "done": event.done,
                "total": event.total,
            }
        changed = event.stage != self.stage
        self.stage = event.stage
        now = time.monotonic()
        if changed or event.done >= event.total or now - self._last_write >= self.runner.progress_interval:
            self._last_write = now
            values = {"progress": dict(self.progress), "stage": event.stage}

            def write() -> None:
                with self.runner.session_factory() as session:
                    at = utcnow()
                    # The job's row before the unit's, the order of every transition: no deadlock.
                    session.execute(
                        update(Job)
                        .where(Job.id == self.job_id, Job.status.in_(LIVE))
                        .values(stage=event.stage, updated_at=at)
                    )
                    session.execute(update(JobUnit).where(self._owned()).values(**values, updated_at=at))
                    session.commit()

            self.runner.through_outage(write, f"progress of job {self.job_id}")

    def should_cancel(self) -> bool:
        """True once the job is no longer running (cancelled, or failed by another unit), the unit
        is no longer ours, or this worker is shutting down; polled between batches."""
        if self.runner.shutdown.is_set():
            return True
        now = time.monotonic()
        if not self._stop_requested and now - self._last_poll >= self.runner.progress_interval:
            self._last_poll = now

            def read() -> Any:
                with self.runner.session_factory() as session:
                    query = (
                        select(Job.status, JobUnit.status.label("unit"), JobUnit.worker_id)
                        .join(JobUnit, JobUnit.job_id == Job.id)
                        .where(Job.id == self.job_id, JobUnit.position == self.position)
                    )
                    return session.execute(query).one()

            row = self.runner.through_outage(read, f"cancel poll of job {self.job_id}")
            self._stop_requested = (
                row.status != JobStatus.RUNNING
                or row.unit != JobStatus.RUNNING
                or row.worker_id != self.runner.worker_id
            )
        return self._stop_requested


class JobRunner:
    """Runs units of jobs one at a time in this process; loaded models stay cached between them."""

    def __init__(
        self,
        settings: Settings,
        session_factory: sessionmaker[Session],
        *,
        worker_id: str | None = None,
        models: ModelCache | None = None,
        progress_interval: float = 0.5,
        shutdown: threading.Event | None = None,
    ) -> None:
        self.settings, self.session_factory = settings, session_factory
        # Set on SIGTERM: the running unit stops at its next batch boundary and goes back to the queue.
        self.shutdown = shutdown or threading.Event()
        self.worker_id = worker_id or default_worker_id()
        self.policy = policy_from(settings)
        self.models = models or ModelCache(
            self.policy, capacity=settings.model_cache_size, device=settings.device
        )
        self.progress_interval = progress_interval
        self._backends: dict[str, GenerationBackend] = {}

    def through_outage(self, step: Callable[[], T], what: str) -> T:
        """:func:`through_outage` up to this worker's stale bound."""
        return through_outage(step, bound_seconds=self.settings.stale_after_seconds, what=what)

    def backend(self, requested: str | None) -> GenerationBackend:
        """This process's teacher backend for a job; engines (vLLM) persist between jobs."""
        name = select_backend(requested or self.settings.generation_backend)
        if name not in self._backends:
            self._backends[name] = (
                VllmBackend(
                    gpu_memory_utilization=self.settings.vllm_gpu_memory_utilization,
                    tensor_parallel_size=self.settings.vllm_tensor_parallel_size,
                )
                if name == "vllm"
                else TransformersBackend()
            )
        return self._backends[name]

    @_retried
    def claim(self, job_id: str, position: int = 0) -> bool:
        with self.session_factory() as session:
            return lifecycle.claim(
                session,
                job_id,
                position,
                self.worker_id,
                stale_after_seconds=self.settings.stale_after_seconds,
                max_attempts=self.settings.max_attempts,
            )

    def run(self, key: str) -> Transition:
        """Claim and run the unit ``key`` (:func:`~grace_jobs.lifecycle.unit_key`; a job id: its
        first unit), and assemble the job when it was its last; returns the outcome (``skipped``
        when not claimable)."""
        job_id, position = lifecycle.parse_unit_key(key)
        with (
            logs.job_context(job_id),
            tracing.continued(
                self._trace_of(job_id), "grace.unit", **{"grace.job_id": job_id, "grace.unit": position}
            ),
        ):
            return self._run(key, job_id, position)

    def _trace_of(self, job_id: str) -> str | None:
        """The traceparent the job was submitted under (read only when tracing)."""
        if tracing.provider() is None:
            return None
        with self.session_factory() as session:
            return session.scalar(select(Job.trace_context).where(Job.id == job_id))

    def _run(self, key: str, job_id: str, position: int) -> Transition:
        if not self.claim(job_id, position):
            if self._awaiting_assembly(job_id):
                return self._assemble(job_id)
            log.info("unit %s not claimable (finished, cancelled, or owned by a live worker); skipped", key)
            return Outcome.SKIPPED
        log.info("unit %s claimed by %s", key, self.worker_id)
        released: list[int] = []
        with UnitSession(self, job_id, position) as us:

            def work() -> Transition:
                job = self._load(job_id, position)
                ctx = self._context(job, us.update, us.should_cancel)
                if job.candidate is None:
                    result = job.kind.run_whole(job.request, job.prompts, self._unit_results(job_id), ctx)
                    return self._store(job_id, job, result, position)
                own = job.kind.run_candidate(job.request, job.prompts, job.candidate, ctx)
                outcome = self._unit_done(job_id, position, own)
                if outcome == Outcome.RELEASE:  # plan_units puts the whole-job unit after the candidates'
                    released.append(len(job.request.candidates))
                return outcome

            def end(status: JobStatus, code: str | None, message: str | None) -> Transition:
                if status == JobStatus.CANCELLED and self.shutdown.is_set():
                    return self._hand_back(job_id, position)
                return self._finish(job_id, position, status, code, message)

            outcome = self._guarded(job_id, work, end)
        if outcome == Outcome.RELEASE:  # this worker goes on with the job's last unit at once
            return self.run(lifecycle.unit_key(job_id, released[0]))
        return self._assemble(job_id) if outcome == Outcome.ASSEMBLE else outcome

    def _guarded(
        self,
        job_id: str,
        work: Callable[[], Transition],
        end: Callable[[JobStatus, str | None, str | None], Transition],
    ) -> Transition:
        """``work()``'s outcome, or ``end(status, code, message)``'s when it stopped: cancelled, or
        failed (bad input: its code; a bug: ``internal_error``)."""
        try:
            return work()
        except Cancelled:
            return end(JobStatus.CANCELLED, None, None)
        except GraceError as exc:
            return end(JobStatus.FAILED, exc.code, str(exc).replace("\x00", ""))
        except (OperationalError, InterfaceError):
            # Down past the stale bound: not the job's fault. Its unit stays running, the heartbeat
            # goes stale, and the reconciler sends it again (counting an attempt).
            log.exception(
                "job %s: database unreachable past the stale bound; left for the reconciler", job_id
            )
            return Outcome.OUTAGE
        except Exception as exc:
            log.exception("job %s failed", job_id)
            return end(JobStatus.FAILED, "internal_error", f"{type(exc).__name__}: {exc}")

    @_retried
    def _load(self, job_id: str, position: int | None = None) -> LoadedJob:
        """The job as its kind reads it, and the candidate of unit ``position`` (None: the whole job)."""
        with self.session_factory() as session:
            job = session.get(Job, job_id)
            assert job is not None
            kind = kinds.get(job.kind, self.settings.job_kinds)
            request = kind.request.model_validate(job.request)
            unit = next((u for u in job.units if u.position == position), None)
            candidate = unit.candidate if unit is not None else None
            if request.prompts is not None:
                raw: list[Any] = list(request.prompts)
            else:
                dataset = session.get(Dataset, request.dataset_id)
                if dataset is None:  # deleted between the job's acceptance and its run
                    raise InvalidInput("the job's dataset was deleted before the job ran", field="dataset_id")
                raw = dataset.prompts
            return LoadedJob(kind, request, job.tenant_id, engine_prompts(raw), candidate)

    def _context(
        self, job: LoadedJob, progress: Callable[[ProgressEvent], None], should_cancel: Callable[[], bool]
    ) -> EngineContext:
        """What the engine runs a unit of ``job`` in: this worker's policy, model cache, teacher
        backend and memory budget; the tenant's response and gradient stores; the unit's progress and
        cancel poll."""
        gradients = None
        if self.settings.gradient_store_mb > 0:
            gradients = DbGradientStore(
                self.session_factory,
                job.tenant_id,
                self.settings.gradient_store_mb << 20,
                self.through_outage,
                tenant_bytes=self.settings.gradient_store_tenant_mb << 20,
            )
        return EngineContext(
            policy=self.policy,
            models=self.models,
            responses=DbResponseStore(self.session_factory, job.tenant_id, self.through_outage),
            gradients=gradients,
            generator=self.backend(job.request.scoring.generation_backend),
            budget=MemoryBudget.from_gb(self.settings.memory_budget_gb),
            progress=progress,
            should_cancel=should_cancel,
            release_below_gb=self.settings.vllm_release_below_gb,
        )

    @_retried
    def _awaiting_assembly(self, job_id: str) -> bool:
        with self.session_factory() as session:
            return lifecycle.awaiting_assembly(
                session, job_id, stale_after_seconds=self.settings.stale_after_seconds
            )

    def _assemble(self, job_id: str) -> Transition:
        """Assemble a fanned-out job from what its candidate units left (a scoring job: its ranking
        from the gradients they stored, no model loaded while they are all there) and write the
        results, at most once per job (:func:`grace_jobs.lifecycle.succeed`)."""
        last_poll = [0.0]

        def stage(event: ProgressEvent) -> None:
            del event  # the units reported their own progress; the job is assembling

        def stopped() -> bool:  # polled like a unit's, but a shutdown lets a short assembly finish
            now = time.monotonic()
            if now - last_poll[0] < self.progress_interval:
                return False
            last_poll[0] = now
            return self._job_status(job_id) != JobStatus.RUNNING

        def work() -> Transition:
            job = self._load(job_id)
            self._set_stage(job_id, "assemble")
            ctx = self._context(job, stage, stopped)
            result = job.kind.run_whole(job.request, job.prompts, self._unit_results(job_id), ctx)
            return self._store(job_id, job, result, None)

        def end(status: JobStatus, code: str | None, message: str | None) -> Transition:
            if status == JobStatus.CANCELLED:  # the job was cancelled (or failed) meanwhile
                now = self._job_status(job_id)
                return Outcome.LOST if now is None else JobStatus(now)
            return self._fail(job_id, code or "internal_error", message or "")

        return self._guarded(job_id, work, end)

    @_retried
    def _unit_results(self, job_id: str) -> dict[str, dict[str, Any]]:
        """What each finished candidate unit of the job left for its last one (:meth:`_unit_done`)."""
        with self.session_factory() as session:
            units = session.scalars(select(JobUnit).where(JobUnit.job_id == job_id)).all()
            return {
                u.candidate: u.result
                for u in units
                if u.candidate is not None and u.status == JobStatus.SUCCEEDED and u.result is not None
            }

    @_retried
    def _job_status(self, job_id: str) -> str | None:
        with self.session_factory() as session:
            return session.scalar(select(Job.status).where(Job.id == job_id))

    @_retried
    def _set_stage(self, job_id: str, stage: str) -> None:
        with self.session_factory() as session:
            session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status.in_(LIVE))
                .values(stage=stage, updated_at=utcnow())
            )
            session.commit()

    @_retried
    def _hand_back(self, job_id: str, position: int) -> Transition:
        with self.session_factory() as session:
            outcome = lifecycle.hand_back(session, job_id, position, self.worker_id)
        log.info("unit %s %s (worker shutting down)", lifecycle.unit_key(job_id, position), outcome)
        return outcome

    @_retried
    def _finish(
        self,
        job_id: str,
        position: int,
        status: JobStatus,
        code: str | None = None,
        message: str | None = None,
    ) -> Transition:
        with self.session_factory() as session:
            outcome = lifecycle.finish(session, job_id, position, self.worker_id, status, code, message)
        log.info("unit %s %s: job %s", lifecycle.unit_key(job_id, position), status, outcome)
        return outcome

    @_retried
    def _fail(self, job_id: str, code: str, message: str) -> Transition:
        with self.session_factory() as session:
            outcome = lifecycle.fail(session, job_id, code, message)
        log.info("job %s assembly failed (%s): %s", job_id, code, outcome)
        return outcome

    @_retried
    def _unit_done(self, job_id: str, position: int, own: dict[str, Any]) -> Transition:
        """A candidate unit's end; ``own``: what it leaves for the job's last unit."""
        with self.session_factory() as session:
            outcome = lifecycle.unit_done(session, job_id, position, self.worker_id, own)
        log.info("unit %s done: %s", lifecycle.unit_key(job_id, position), outcome)
        return outcome

    @_retried
    def _store(self, job_id: str, job: LoadedJob, result: Any, position: int | None) -> Transition:
        """Write the results of the whole-job unit ``position``, or of an assembly (None)."""
        with self.session_factory() as session:
            outcome = lifecycle.succeed(
                session,
                job_id,
                self.worker_id,
                lambda row: job.kind.write(session, row, job.request, result),
                position,
            )
        if outcome == Outcome.LOST:
            log.warning("job %s is no longer ours; results dropped", job_id)
        elif outcome == Outcome.DUPLICATE:
            log.info("job %s was already assembled; this assembly is dropped", job_id)
        elif position is None:
            log.info("job %s assembly by %s: %s", job_id, self.worker_id, outcome)
        else:
            log.info("job %s %s", job_id, outcome)
        return outcome
