"""Job service functions: keyword-only, session first, testable without HTTP.

State changes are conditional UPDATEs (``... WHERE status = <expected>``), so an API cancel and a
worker claim racing on the same row cannot both win.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Sequence

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, defer
from sqlalchemy.orm.interfaces import ORMOption

from app.errors import ApiError, not_found
from app.services.pages import newest_first
from grace_engine.errors import InvalidInput
from grace_engine.models.candidates import check_candidates, provided_responses
from grace_engine.models.data import Prompt, check_prompts
from grace_engine.models.facts import model_facts
from grace_engine.models.loading import configured_context, resolve_model
from grace_engine.science.cost import WorkEstimate
from grace_infra import tracing
from grace_infra.db.base import utcnow
from grace_infra.db.models import Dataset, Job, JobStatus, JobUnit, Tenant
from grace_infra.queue import JobQueue
from grace_infra.settings import Settings
from grace_jobs import lifecycle, quotas, webhooks
from grace_jobs.kinds import AnyKind
from grace_jobs.policy import policy_from
from grace_jobs.requests import JobCreate, LimitExceeded, engine_prompts

log = logging.getLogger("grace.jobs")


def check_webhook(job_in: JobCreate, tenant: Tenant, settings: Settings) -> None:
    """A job's webhook needs an allowed target and a signing secret to sign with."""
    if job_in.webhook is None:
        return
    problem = webhooks.check_target(job_in.webhook.url, allow_private=settings.webhook_allow_private).problem
    if problem is not None:
        raise ApiError(422, "Validation Error", problem, field="webhook.url")
    if tenant.webhook_secret is None:
        raise ApiError(
            422,
            "Validation Error",
            "create your webhook signing secret first: POST /v1/webhook-secret (or grace keys "
            "webhook-secret --tenant NAME)",
            field="webhook",
        )


def request_hash(job_in: JobCreate) -> str:
    canonical = json.dumps(job_in.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _limit(condition: bool, field: str, detail: str) -> None:
    if condition:
        raise LimitExceeded(detail, field=field)


def check_limits(job_in: JobCreate, n_prompts: int, settings: Settings) -> None:
    """Configured limits, each a 422 naming the field."""
    _limit(
        len(job_in.candidates) > settings.max_candidates_per_job,
        "candidates",
        f"{len(job_in.candidates)} candidates; at most {settings.max_candidates_per_job} per job",
    )
    _limit(
        n_prompts > settings.max_prompts_per_job,
        "prompts",
        f"{n_prompts} prompts; at most {settings.max_prompts_per_job} per job",
    )
    _limit(
        job_in.scoring.responses_per_prompt > settings.max_responses_per_prompt,
        "scoring.responses_per_prompt",
        f"at most {settings.max_responses_per_prompt} responses per prompt",
    )
    for i, p in enumerate(job_in.prompts or []):
        _limit(
            len(p.prompt) > settings.max_prompt_chars,
            f"prompts[{i}].prompt",
            f"{len(p.prompt)} characters; at most {settings.max_prompt_chars}",
        )
    for i, c in enumerate(job_in.candidates):
        field = f"candidates[{i}]"
        _limit(
            c.model is not None and c.max_tokens > settings.max_new_tokens,
            f"{field}.max_tokens",
            f"at most {settings.max_new_tokens} new tokens per response",
        )
        m = c.responses_per_prompt or job_in.scoring.responses_per_prompt
        _limit(
            m > settings.max_responses_per_prompt,
            f"{field}.responses_per_prompt",
            f"at most {settings.max_responses_per_prompt} responses per prompt",
        )
        for pid, texts in (c.responses or {}).items():
            _limit(
                len(texts) > settings.max_responses_per_prompt,
                f"{field}.responses[{pid}]",
                f"{len(texts)} responses; at most {settings.max_responses_per_prompt} per prompt",
            )
            for j, text in enumerate(texts):
                _limit(
                    len(text) > settings.max_response_chars,
                    f"{field}.responses[{pid}][{j}]",
                    f"{len(text)} characters; at most {settings.max_response_chars}",
                )


def limit_work(job_in: JobCreate, prompts: list[Prompt], kind: AnyKind, settings: Settings) -> WorkEstimate:
    """The job's estimated work (:mod:`grace_engine.science.cost`) within the operator's bounds:
    each candidate's scoring (splits x subsamples x d cannot be cancelled cheaply mid-solve, and a
    few kilobytes of settings must not buy a worker for hours) and the whole job's CPU-seconds,
    each a 422 naming the fields that drive it and the estimate. Models are resolved already."""
    scoring = job_in.scoring_cost(len(prompts)) if kind.ranks else None
    if scoring is not None and scoring.seconds > settings.max_scoring_seconds:
        raise LimitExceeded(
            f"scoring one candidate would take about {scoring.seconds:,.0f} CPU-seconds (n_splits "
            f"{job_in.scoring.n_splits} x (1 + bootstrap {job_in.scoring.bootstrap}) splits at d = "
            f"{scoring.d} over {len(prompts)} prompts x {scoring.m} responses); at most "
            f"{settings.max_scoring_seconds:,.0f} (GRACE_MAX_SCORING_SECONDS): lower scoring.n_splits, "
            "scoring.bootstrap or scoring.proj_dim",
            field="scoring",
        )
    policy = policy_from(settings)
    params = functools.cache(lambda ref: model_facts(resolve_model(ref, policy, field="model")).params)
    work = kind.work(job_in, prompts, params)
    # A job the tenant's compute quota could never hold is refused too, not a 429 forever.
    bound, name = min(
        (settings.max_job_seconds, "GRACE_MAX_JOB_SECONDS"),
        (settings.tenant_max_compute_seconds, "GRACE_TENANT_MAX_COMPUTE_SECONDS"),
    )
    if work.seconds and work.total > bound:
        drivers = work.drivers[work.largest]
        raise ApiError(
            422,
            "Limit Exceeded",
            f"this job would take {work.describe()}; at most {bound:,.6g} "
            f"({name}): its {work.largest} is driven by {', '.join(drivers)}",
            field=drivers[0],
            extra={
                "estimate_seconds": float(f"{work.total:.4g}"),
                "stages": {k: float(f"{v:.4g}") for k, v in work.seconds.items()},
            },
        )
    return work


def check_engine_inputs(job_in: JobCreate, prompts: list[Prompt]) -> None:
    """The engine's own checks (duplicate ids and names, template, supplied responses that match
    the prompts), run before anything is stored. ``prompts``: the job's, inline or its dataset's."""
    try:
        job_in.scoring.to_engine().check()
    except InvalidInput as exc:
        raise ApiError(422, "Validation Error", exc.message, field=f"scoring.{exc.field}") from exc
    check_prompts(prompts)
    if job_in.scoring.rank_by == "teacher_accuracy" and any(p.answer is None for p in prompts):
        raise ApiError(
            422,
            "Validation Error",
            "ranking by teacher_accuracy needs an answer on every prompt",
            field="scoring.rank_by",
        )
    candidates = [c.to_engine() for c in job_in.candidates]
    check_candidates(candidates)
    for i, c in enumerate(candidates):
        if c.responses is not None:
            provided_responses(
                c, prompts, c.responses_per_prompt or job_in.scoring.responses_per_prompt, index=i
            )


def check_models(job_in: JobCreate, settings: Settings) -> None:
    """Refuse at submission, not in the worker, a model the policy would not load, and a
    ``max_tokens`` that alone fills the teacher's context (its config says; the worker checks the
    prompts' length on top, with the tokenizer)."""
    policy = policy_from(settings)
    resolve_model(job_in.student, policy, field="student")
    for i, c in enumerate(job_in.candidates):
        if c.model is not None:
            limit = configured_context(resolve_model(c.model, policy, field=f"candidates[{i}].model"))
            if limit is not None and c.max_tokens >= limit:
                raise InvalidInput(
                    f"max_tokens={c.max_tokens} leaves no room for the prompt in the teacher's context "
                    f"of {limit} tokens; at most {limit - 1}, and less the longer the prompts are",
                    field=f"candidates[{i}].max_tokens",
                )


def _with_key(session: Session, tenant: Tenant, idempotency_key: str) -> Job | None:
    """The tenant's job stored under ``idempotency_key``, if any."""
    return session.scalar(
        select(Job).where(Job.tenant_id == tenant.id, Job.idempotency_key == idempotency_key)
    )


def _replay(existing: Job, digest: str) -> Job:
    if existing.request_hash != digest:
        raise ApiError(
            422,
            "Idempotency Key Reused",
            "this Idempotency-Key was used with a different request body",
            field="Idempotency-Key",
            extra={"job_id": existing.id},
        )
    if existing.enqueued_at is None and existing.status == JobStatus.QUEUED:
        raise ApiError(
            409,
            "Request In Progress",
            "a request with this Idempotency-Key is still being processed; retry shortly",
            headers={"Retry-After": "1"},
        )
    return existing


def create_job(
    *,
    session: Session,
    tenant: Tenant,
    job_in: JobCreate,
    idempotency_key: str | None,
    queue: JobQueue,
    settings: Settings,
    kind: AnyKind,
) -> tuple[Job, bool]:
    """Store a queued job of ``kind`` (:mod:`grace_jobs.kinds`) and enqueue its units.

    Returns ``(job, created)``; a replay of an idempotent request returns the original job with
    ``created=False``."""
    digest = request_hash(job_in)
    if idempotency_key is not None:
        existing = _with_key(session, tenant, idempotency_key)
        if existing is not None:
            return _replay(existing, digest), False
    if job_in.dataset_id is not None:
        dataset = session.get(Dataset, job_in.dataset_id)
        if dataset is None or dataset.tenant_id != tenant.id:
            raise ApiError(
                422, "Validation Error", "no dataset with this id for your API key", field="dataset_id"
            )
        check_limits(job_in, dataset.n_prompts, settings)
        prompts = engine_prompts(dataset.prompts)
    else:
        assert job_in.prompts is not None  # the schema requires prompts or dataset_id
        check_limits(job_in, len(job_in.prompts), settings)
        prompts = engine_prompts(job_in.prompts)
    kind.check(job_in, prompts, settings)
    # The engine's own checks and the models first: the estimate reads the config and the models.
    check_engine_inputs(job_in, prompts)
    check_models(job_in, settings)
    work = limit_work(job_in, prompts, kind, settings)
    check_webhook(job_in, tenant, settings)
    prompt_set, comparison = kind.keys(job_in, prompts)
    now = utcnow()
    try:
        quotas.check_quotas(session, tenant, work.total, settings, now)
    except quotas.QuotaExceeded as exc:
        session.rollback()  # the tenant's row lock
        if idempotency_key is not None:
            # A retry racing its own first try: that job, stored while this one waited for the
            # lock, is the answer, never a 429 (it is what pushed the count over).
            existing = _with_key(session, tenant, idempotency_key)
            if existing is not None:
                return _replay(existing, digest), False
        raise ApiError(
            429,
            "Too Many Requests",
            exc.detail,
            headers={"Retry-After": str(exc.retry_after)},
            extra={"quota": exc.quota, "limit": exc.limit, "current": exc.current},
        ) from exc
    job = Job(
        tenant_id=tenant.id,
        kind=kind.name,
        student=job_in.student,
        request=job_in.model_dump(mode="json"),
        request_hash=digest,
        idempotency_key=idempotency_key,
        status=JobStatus.QUEUED,
        max_attempts=settings.max_attempts,
        prompt_set=prompt_set,
        comparison=comparison,
        webhook_url=None if job_in.webhook is None else job_in.webhook.url,
        trace_context=tracing.traceparent(),
        cost_seconds=work.total,
        created_at=now,
        updated_at=now,
    )
    fan_out = kind.fan_out(job_in, gradient_store=settings.gradient_store_mb > 0)
    lifecycle.plan_units(job, [c.name for c in job_in.candidates], fan_out, now)
    session.add(job)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        existing = None if idempotency_key is None else _with_key(session, tenant, idempotency_key)
        if existing is None:
            raise
        return _replay(existing, digest), False
    enqueue(session=session, job=job, queue=queue)
    return job, True


def enqueue(*, session: Session, job: Job, queue: JobQueue) -> None:
    """Send each of the job's units; a unit that could not be sent stays queued for the reconciler
    to send again."""
    now = utcnow()
    sent = []
    for unit in job.units:
        if unit.status == lifecycle.WAITING:  # sent when the units it waits for are done
            continue
        try:
            queue.enqueue(lifecycle.unit_key(job.id, unit.position))
        except Exception:
            log.warning("could not enqueue job %s now; the reconciler will retry", job.id, exc_info=True)
            break
        sent.append(unit.position)
    if not sent:
        return
    # The job's row first, as in every transition (grace_jobs.lifecycle): workers are already
    # claiming these units, and the other order deadlocks with a claim.
    session.execute(update(Job).where(Job.id == job.id).values(enqueued_at=now))
    session.execute(
        update(JobUnit).where(JobUnit.job_id == job.id, JobUnit.position.in_(sent)).values(enqueued_at=now)
    )
    session.commit()
    session.refresh(job)


def get_job(*, session: Session, tenant: Tenant, job_id: str, options: Sequence[ORMOption] = ()) -> Job:
    """The tenant's job ``job_id`` (404 otherwise); ``options``: e.g. :data:`LISTING` for a route
    that shows the job without its request."""
    job = session.get(Job, job_id, options=options)
    if job is None or job.tenant_id != tenant.id:
        raise not_found("job")
    return job


# A listing or a poll shows status and results, never the request body (prompts and supplied
# responses can be megabytes per job): it is not loaded, and touching it would raise rather than
# load it quietly.
LISTING = (defer(Job.request, raiseload=True),)


def list_jobs(
    *,
    session: Session,
    tenant: Tenant,
    limit: int,
    cursor: str | None = None,
    status: str | None = None,
    student: str | None = None,
    kind: str | None = None,
    search: str | None = None,
) -> tuple[list[Job], str | None]:
    """Newest first by (created_at, id); the cursor is the last row seen, so pages stay stable
    while new jobs arrive. ``search``: a job id's beginning or part of the student's name."""
    query = select(Job).options(*LISTING).where(Job.tenant_id == tenant.id)
    if status is not None:
        query = query.where(Job.status == status)
    if student is not None:
        query = query.where(Job.student == student)
    if kind is not None:
        query = query.where(Job.kind == kind)
    if search is not None:
        query = query.where(
            or_(Job.id.startswith(search, autoescape=True), Job.student.icontains(search, autoescape=True))
        )
    return newest_first(session, query, Job, limit=limit, cursor=cursor)


def cancel_job(*, session: Session, job: Job) -> Job:
    """The cancel transition (:func:`grace_jobs.lifecycle.request_cancel`); an ended job is a 409."""
    try:
        return lifecycle.request_cancel(session, job)
    except lifecycle.AlreadyFinished as exc:
        raise ApiError(409, "Conflict", str(exc), extra={"job_status": exc.status}) from exc
