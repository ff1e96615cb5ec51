"""Each job kind's routes, built from the registry (:mod:`grace_jobs.kinds`): ``POST {kind.path}``
accepts a job of the kind, and, where the kind has a public result body,
``GET /v1/jobs/{id}/{kind.name}`` reads it. Jobs of every kind are followed, listed and cancelled
at ``/v1/jobs`` alike."""

from __future__ import annotations

import inspect
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from app.deps import CurrentJob, SettingsDep, SubmissionDep
from app.routers.jobs import finished, submit
from app.schemas import JobAccepted
from grace_jobs.kinds import AnyKind
from grace_jobs.requests import JobCreate


def kind_router(kind: AnyKind) -> APIRouter:
    """The routes of ``kind``; their names keep the OpenAPI operation ids clients are generated with."""
    router = APIRouter(tags=[kind.tag or kind.name])

    def create(job_in: JobCreate, submission: SubmissionDep) -> JobAccepted:
        return submit(submission, job_in, kind)

    # The body's model is the kind's: FastAPI reads the signature, so it is given there.
    create.__signature__ = inspect.signature(create).replace(  # type: ignore[attr-defined]
        parameters=[
            inspect.Parameter("job_in", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=kind.request),
            inspect.Parameter(
                "submission", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=SubmissionDep
            ),
        ],
        return_annotation=JobAccepted,
    )
    router.add_api_route(
        kind.path,
        create,
        methods=["POST"],
        status_code=202,
        response_model=JobAccepted,
        name=f"create_{kind.operation}",
        description=kind.summary,
    )
    if kind.public is not None:

        def read(job: CurrentJob, settings: SettingsDep) -> Any:
            finished(job, kind, settings.job_kinds)
            body: BaseModel = kind.result_body(job)
            return body

        router.add_api_route(
            f"/v1/jobs/{{job_id}}/{kind.name}",
            read,
            methods=["GET"],
            response_model=kind.public,
            name=f"get_{kind.name}",
            description=kind.result_summary,
        )
    return router
