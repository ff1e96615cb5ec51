"""/v1/leaderboards: every candidate a tenant scored for one student and prompt set, ranked
together across jobs (grace_jobs.leaderboards)."""

from __future__ import annotations

import re
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Query

from app.deps import CurrentTenant, SessionDep
from app.errors import ApiError
from app.schemas import BoardPublic, BoardsPublic, GuidancePublic, LeaderboardEntry, LeaderboardPublic
from grace_infra.db.models import Dataset
from grace_jobs.kinds.score import KIND as SCORE
from grace_jobs.leaderboards import boards, leaderboard, prompt_set_hash
from grace_jobs.requests import engine_prompts

router = APIRouter(prefix="/v1/leaderboards", tags=["leaderboards"])
_HASH = re.compile(r"[0-9a-f]{64}")


@router.get("", response_model=LeaderboardPublic)
def get_leaderboard(
    session: SessionDep,
    tenant: CurrentTenant,
    student: Annotated[str, Query(min_length=1, max_length=1024)],
    dataset: Annotated[
        str,
        Query(
            min_length=1,
            max_length=64,
            description="an uploaded dataset's id, or a prompt set's hash (a job's `prompt_set`)",
        ),
    ],
    comparison: Annotated[
        str | None, Query(pattern="^[0-9a-f]{64}$", description="default: the latest job's")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    max_params: Annotated[
        int | None, Query(ge=1, description="the guidance's size limit: the best with at most this many")
    ] = None,
) -> LeaderboardPublic:
    """Your candidates for ``student`` on one prompt set, best GRACE first: each candidate's
    latest score among your succeeded score jobs with the same configuration, and its job."""
    if _HASH.fullmatch(dataset):
        prompt_set = dataset
    else:
        found = session.get(Dataset, dataset)
        if found is None or found.tenant_id != tenant.id:
            raise ApiError(
                422, "Validation Error", "no dataset with this id for your API key", field="dataset"
            )
        prompt_set = prompt_set_hash(engine_prompts(found.prompts))
    board = leaderboard(
        session,
        tenant_id=tenant.id,
        student=student,
        prompt_set=prompt_set,
        kind=SCORE.name,
        comparison=comparison,
        offset=offset,
        limit=limit,
        max_params=max_params,
    )
    end = offset + len(board.entries)
    return LeaderboardPublic(
        student=student,
        prompt_set=prompt_set,
        comparison=board.comparison,
        comparisons=board.comparisons,
        total=board.total,
        data=[LeaderboardEntry.model_validate(asdict(e)) for e in board.entries],
        next_offset=end if end < board.total else None,
        guidance=GuidancePublic.model_validate(asdict(board.guidance)),
    )


@router.get("/boards", response_model=BoardsPublic)
def list_boards(
    session: SessionDep, tenant: CurrentTenant, student: Annotated[str, Query(min_length=1, max_length=1024)]
) -> BoardsPublic:
    """Every leaderboard of ``student``: each prompt set and configuration your succeeded score
    jobs were scored under, with the latest job's settings, to pick one to open."""
    found = boards(session, tenant_id=tenant.id, student=student, kind=SCORE.name)
    return BoardsPublic(student=student, data=[BoardPublic.model_validate(asdict(b)) for b in found])
