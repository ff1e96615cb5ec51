"""/v1/jobs: submit, poll, list, cancel, and read results."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from app.deps import BearerDep, CurrentJob, CurrentTenant, SessionDep, SettingsDep, Submission, current_tenant
from app.errors import ApiError
from app.schemas import (
    CandidateProgress,
    CandidateScores,
    ErrorInfo,
    JobAccepted,
    JobPublic,
    JobsPublic,
    Links,
    Progress,
    RankingEntry,
    RankingPublic,
    ScoresPublic,
    UnitPublic,
    result_summary,
)
from app.services import jobs as job_service
from grace_engine.models.data import SftForm, StudentFormat
from grace_engine.science.mixture import MixedExample, sft_jsonl
from grace_infra.db.models import Job, JobStatus
from grace_jobs import kinds
from grace_jobs.kinds import AnyKind
from grace_jobs.kinds.score import KIND as SCORE
from grace_jobs.public import worker_label
from grace_jobs.requests import JobCreate

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
NDJSON, OCTET_STREAM = "application/x-ndjson", "application/octet-stream"


def links(request: Request, job_id: str) -> Links:
    base = str(request.url_for("get_job", job_id=job_id).path)
    return Links(self=base, cancel=f"{base}/cancel", ranking=f"{base}/ranking", scores=f"{base}/scores")


def accepted(request: Request, response: Response, job: Job) -> JobAccepted:
    """The 202 body and ``Location`` of a stored job (new, or an idempotent replay)."""
    job_links = links(request, job.id)
    response.headers["Location"] = job_links.self
    return JobAccepted(id=job.id, status=job.status, links=job_links)


def _error(code: str | None, message: str | None) -> ErrorInfo | None:
    return ErrorInfo(code=code, message=message or "") if code else None


def job_public(request: Request, job: Job) -> JobPublic:
    units = [
        UnitPublic(
            candidate=u.candidate,
            status=u.status,
            stage=u.stage,
            attempts=u.attempts,
            worker_id=worker_label(u.worker_id),
            progress={name: CandidateProgress.model_validate(p) for name, p in (u.progress or {}).items()},
            started_at=u.started_at,
            finished_at=u.finished_at,
            error=_error(u.error_code, u.error_message),
        )
        for u in job.units
    ]
    # A candidate's stages may come from several units (its own, then the whole-job unit's).
    stages: dict[str, dict[str, Any]] = {}
    for u in units:
        for name, p in u.progress.items():
            stages.setdefault(name, {}).update(p.model_dump(exclude_none=True))
    candidates = {name: CandidateProgress.model_validate(s) for name, s in stages.items()}
    return JobPublic(
        id=job.id,
        kind=job.kind,
        status=job.status,
        stage=job.stage,
        student=job.student,
        attempts=job.attempts,
        created_at=job.created_at,
        updated_at=job.updated_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        progress=Progress(stage=job.stage, candidates=candidates),
        units=units,
        assembled_by=worker_label(job.worker_id),
        examples_scored=job.examples_scored,
        error=_error(job.error_code, job.error_message),
        ranking=[RankingEntry.model_validate(r) for r in job.ranking] if job.ranking else None,
        prompt_set=job.prompt_set,
        **result_summary(job.result),
        links=links(request, job.id),
    )


def submit(submission: Submission, job_in: JobCreate, kind: AnyKind) -> JobAccepted:
    """Store and enqueue a job of ``kind``; the 202 body (the original job on an idempotent replay)."""
    job, _created = job_service.create_job(
        session=submission.session,
        tenant=submission.tenant,
        job_in=job_in,
        idempotency_key=submission.idempotency_key,
        queue=submission.queue,
        settings=submission.settings,
        kind=kind,
    )
    return accepted(submission.request, submission.response, job)


def etagged(model: BaseModel, if_none_match: str | None) -> Response:
    """``model`` as JSON with an ETag of its bytes, or a bodiless 304 when ``If-None-Match``
    names that ETag: pollers (the dashboard, ``grace_client.wait``) pay for changes only."""
    body = model.model_dump_json().encode()
    etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if if_none_match is not None and etag in {t.strip() for t in if_none_match.split(",")}:
        return Response(status_code=304, headers=headers)
    return Response(content=body, media_type="application/json", headers=headers)


@router.get("", response_model=JobsPublic, responses={304: {"description": "not modified"}})
def list_jobs(
    request: Request,
    session: SessionDep,
    tenant: CurrentTenant,
    settings: SettingsDep,
    if_none_match: Annotated[str | None, Header()] = None,
    status: Annotated[JobStatus | None, Query()] = None,
    student: Annotated[str | None, Query(max_length=1024)] = None,
    kind: Annotated[str | None, Query(max_length=20, description="only jobs of this kind")] = None,
    q: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=200,
            description="search: a job id's beginning, or part of the student's name (any case)",
        ),
    ] = None,
    limit: Annotated[
        int,
        Query(ge=1, description="page size; more than the server's maximum (100 by default) gets that many"),
    ] = 20,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Response:
    """Your jobs, newest first; pass ``next_cursor`` back as ``cursor`` for the next page. Poll
    with ``If-None-Match: <ETag>`` to get a bodiless 304 while the page is unchanged."""
    # Clamped, not refused: the maximum is the operator's setting, which the schema cannot state.
    page = min(limit, settings.page_size_max)
    jobs, next_cursor = job_service.list_jobs(
        session=session,
        tenant=tenant,
        limit=page,
        cursor=cursor,
        status=status,
        student=student,
        kind=kind,
        search=q,
    )
    return etagged(
        JobsPublic(data=[job_public(request, j) for j in jobs], next_cursor=next_cursor), if_none_match
    )


@router.get("/{job_id}", response_model=JobPublic, responses={304: {"description": "not modified"}})
async def get_job(
    request: Request,
    job_id: str,
    settings: SettingsDep,
    credentials: BearerDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Status, stage, per-candidate progress, timestamps, error, and the ranking once done.
    Poll with ``If-None-Match: <ETag>`` to get a bodiless 304 while nothing changed."""

    # The route clients poll does all its database work in one hop to the thread pool: the session,
    # tenant and job dependencies took five (enter, tenant, job, endpoint, exit), about a fifth of a
    # poll's CPU when 200 arrive at once (benchmarks/concurrency.py).
    def answer() -> Response:
        with request.app.state.session_factory() as session:
            tenant = current_tenant(session, settings, credentials)
            job = job_service.get_job(
                session=session, tenant=tenant, job_id=job_id, options=job_service.LISTING
            )
            return etagged(job_public(request, job), if_none_match)

    return await run_in_threadpool(answer)


@router.get("/{job_id}/request", response_model=dict[str, Any])
def get_job_request(job: CurrentJob) -> dict[str, Any]:
    """The job's submission as stored: the body it was created from, every default filled in (what
    ran, and a body to submit again to re-run it)."""
    return job.request


@router.post("/{job_id}/cancel", status_code=202, response_model=JobPublic)
def cancel_job(request: Request, job: CurrentJob, session: SessionDep) -> JobPublic:
    """queued: cancelled at once; running: ``cancelling`` until the worker stops at its next batch
    boundary; already finished: 409."""
    return job_public(request, job_service.cancel_job(session=session, job=job))


def finished(job: Job, kind: AnyKind | None = None, extra_kinds: Sequence[str] = ()) -> None:
    """409 unless ``job`` succeeded (and is of ``kind`` when given: else pointing to where its
    kind's results are; ``extra_kinds``: the operator's, ``Settings.job_kinds``)."""
    if kind is not None and job.kind != kind.name:
        own = next((k for k in kinds.enabled(extra_kinds) if k.name == job.kind), None)
        where = f"; its results are at {own.results_at(job.id)}" if own is not None else ""
        raise ApiError(409, "Conflict", f"not a {kind.name} job but a {job.kind} job{where}")
    if job.status != JobStatus.SUCCEEDED or (
        kind is not None and kind.public is not None and job.result is None
    ):
        raise ApiError(
            409,
            "Conflict",
            f"the job is {job.status}; results exist once it has succeeded",
            extra={"job_status": job.status},
        )


@router.get("/{job_id}/ranking", response_model=RankingPublic)
def get_ranking(job: CurrentJob, settings: SettingsDep) -> RankingPublic:
    """Candidates best first (lower GRACE = better teacher for this student)."""
    finished(job, SCORE, settings.job_kinds)
    return RankingPublic(
        job_id=job.id,
        student=job.student,
        finished_at=job.finished_at,
        ranking=[RankingEntry.model_validate(r) for r in job.ranking or []],
        **result_summary(job.result),
    )


@router.get(
    "/{job_id}/dataset",
    response_class=Response,
    responses={
        200: {
            # Both forms of the same bytes: generators that know no x-ndjson (openapi-python-client
            # among them) keep the operation through octet-stream, which `Accept` selects.
            "content": {
                NDJSON: {"schema": {"type": "string", "description": "JSON lines"}},
                OCTET_STREAM: {"schema": {"type": "string", "format": "binary"}},
            },
            "description": "one example per prompt in the chosen format, as JSON lines",
        }
    },
)
def get_mixed_dataset(
    job: CurrentJob,
    request: Request,
    settings: SettingsDep,
    form: Annotated[
        SftForm,
        Query(
            alias="format",
            description="chat: the teacher's conversation (its instruction + the prompt, then the "
            "response); prompt_completion: the exact text the student was scored on (its template "
            "around the prompt, then the response)",
        ),
    ] = "chat",
) -> Response:
    """The mixed-teacher dataset as JSON lines: for each prompt, the response of the candidate the
    scores favour there (score and validation jobs: per-prompt GRACE contributions; influence jobs:
    mean influence on the validation loss). Each line is ``{"messages": [user, assistant]}``
    (``format=chat``) or ``{"prompt", "completion"}`` (``format=prompt_completion``), with
    ``prompt_id`` and ``teacher``; ``datasets.load_dataset("json", ...)`` and TRL's ``SFTTrainer``
    read both. Train on ``prompt_completion`` to train on what GRACE scored."""
    finished(job)
    rows = (job.result or {}).get("mixed") or []
    if not rows:
        raise ApiError(
            409,
            "Conflict",
            "this job has no mixed dataset: routing by GRACE needs a gradient predictor "
            "(grace, g_norm or g_vendi) in scoring.predictors",
        )
    scoring = kinds.get(job.kind, settings.job_kinds).request.model_validate(job.request).scoring
    body = sft_jsonl(
        [MixedExample(**r) for r in rows],
        form,
        student_format=StudentFormat(scoring.student_template),
        instruction=scoring.instruction,
    )
    accept = request.headers.get("accept", "")
    wants_bytes = OCTET_STREAM in accept and NDJSON not in accept
    return Response(
        content=body,
        media_type=OCTET_STREAM if wants_bytes else NDJSON,
        headers={"Content-Disposition": f'attachment; filename="grace-mixed-{job.id}.jsonl"'},
    )


@router.get("/{job_id}/scores", response_model=ScoresPublic)
def get_scores(job: CurrentJob, settings: SettingsDep) -> ScoresPublic:
    """Every score of every candidate: GRACE split values, its variance and bias parts, baselines."""
    finished(job, SCORE, settings.job_kinds)
    return ScoresPublic(
        job_id=job.id,
        candidates=[CandidateScores(name=r.candidate, rank=r.rank, details=r.details) for r in job.results],
    )
