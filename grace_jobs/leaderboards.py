"""Leaderboards: every candidate one tenant has scored for the same student, prompt set and
scoring configuration, ranked together across jobs.

Scores compare across jobs when everything they depend on besides the candidate is equal: the
student, the prompt texts, the projection (gradient space, d, seed, path, factor dim), the student
format and the GRACE settings (splits, test fraction, smoothing, length factor). A job records
the hash of its prompt texts (``prompt_set``) and of all of that (``comparison``) when submitted;
the leaderboard is the latest score of each candidate name among the succeeded score jobs that
share both, best GRACE first.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from grace_engine.models.data import Prompt
from grace_engine.pipelines.config import ScoringConfig
from grace_engine.science.guidance import Guidance, Teacher, guide
from grace_infra.db.models import Job, JobResult, JobStatus


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def prompt_set_hash(prompts: Sequence[Prompt]) -> str:
    """The prompt set's identity: its texts in order (ids and answers change no GRACE score)."""
    return _digest([p.prompt for p in prompts])


def comparison_config(cfg: ScoringConfig) -> dict[str, Any]:
    """What a GRACE score depends on besides the candidate, the student and the prompts (``cfg``
    resolved: ``proj_dim`` a number): what its gradients do, GRACE's settings and the length factor."""
    return {
        "gradients": cfg.gradient_settings(),
        "grace": asdict(cfg.grace_settings),
        "length_factor": cfg.length_factor,
    }


def comparison_key(student: str, prompt_set: str, cfg: ScoringConfig) -> str:
    return _digest({"student": student, "prompts": prompt_set, "config": comparison_config(cfg)})


@dataclass(frozen=True)
class Entry:
    """A candidate's latest score: every predictor its job computed (``values``), and GRACE's
    spread over its splits."""

    rank: int
    candidate: str
    values: dict[str, float | None]
    grace_std: float | None
    job_id: str
    scored_at: datetime
    teacher: Teacher | None  # the model behind a generated candidate (None: supplied responses)


@dataclass(frozen=True)
class Leaderboard:
    """``comparison``: the configuration ranked (None: nothing scored yet); ``comparisons``: every
    configuration this student and prompt set were scored under, newest first; ``entries`` best
    first; ``total`` entries before paging; ``guidance``: the three answers over every entry, not
    only this page's."""

    comparison: str | None
    comparisons: list[str]
    entries: list[Entry]
    total: int
    guidance: Guidance


def leaderboard(
    session: Session,
    *,
    tenant_id: str,
    student: str,
    prompt_set: str,
    kind: str,
    comparison: str | None = None,
    offset: int = 0,
    limit: int = 50,
    max_params: int | None = None,
) -> Leaderboard:
    """The tenant's leaderboard for ``student`` on ``prompt_set`` under ``comparison`` (default:
    that of the latest such job), among its succeeded jobs of ``kind`` (the kind whose
    :meth:`~grace_jobs.kinds.base.JobKind.keys` gives them a comparison); its guidance names the
    best under ``max_params`` when given."""
    scored = (
        Job.tenant_id == tenant_id,
        Job.student == student,
        Job.prompt_set == prompt_set,
        Job.status == JobStatus.SUCCEEDED,
        Job.kind == kind,
        Job.comparison.is_not(None),
    )
    comparisons: list[str] = []
    for key in session.scalars(select(Job.comparison).where(*scored).order_by(Job.finished_at.desc())):
        if key is not None and key not in comparisons:
            comparisons.append(key)
    chosen = comparison if comparison is not None else (comparisons[0] if comparisons else None)
    if chosen is None:
        return Leaderboard(None, comparisons, [], 0, guide([], {}, max_params=max_params))
    rows = session.execute(
        select(JobResult, Job.finished_at)
        .join(Job, Job.id == JobResult.job_id)
        .where(*scored, Job.comparison == chosen)
        .order_by(Job.finished_at.desc(), Job.id.desc())
    ).all()
    latest: dict[str, tuple[JobResult, datetime]] = {}
    for result, finished in rows:
        assert finished is not None  # a succeeded job has finished
        latest.setdefault(result.candidate, (result, finished))

    # Best (lowest) GRACE first; candidates without one (forward-only jobs) last, by name.
    def order(rf: tuple[JobResult, datetime]) -> tuple[bool, float, str]:
        grace = rf[0].predictor_values.get("grace")
        return grace is None, grace or 0.0, rf[0].candidate

    ordered = sorted(latest.values(), key=order)
    teachers = {r.candidate: _teacher(r.details) for r, _ in ordered}
    entries = [
        Entry(
            rank=offset + i + 1,
            candidate=r.candidate,
            values=dict(r.predictor_values),
            grace_std=(r.details.get("grace") or {}).get("split_std"),
            job_id=r.job_id,
            scored_at=finished,
            teacher=teachers[r.candidate],
        )
        for i, (r, finished) in enumerate(ordered[offset : offset + limit])
    ]
    guidance = guide([r.candidate for r, _ in ordered], teachers, max_params=max_params)
    return Leaderboard(chosen, comparisons, entries, len(latest), guidance)


def _teacher(details: dict[str, Any]) -> Teacher | None:
    """A stored candidate's teacher (None: supplied responses, or scored before teachers were kept)."""
    found = details.get("teacher")
    return None if found is None else Teacher(**found)


@dataclass(frozen=True)
class Board:
    """A leaderboard there is to open: a prompt set and a configuration (``comparison``) a student
    was scored under, with how many succeeded jobs fed it and the latest of them, whose scoring
    settings (as submitted, defaults filled) describe the configuration."""

    prompt_set: str
    comparison: str
    jobs: int
    latest_job_id: str
    latest_at: datetime
    scoring: dict[str, Any]


def boards(session: Session, *, tenant_id: str, student: str, kind: str) -> list[Board]:
    """Every leaderboard of ``student`` among the tenant's succeeded jobs of ``kind``, the most
    recently fed first."""
    rows = session.execute(
        select(Job.prompt_set, Job.comparison, Job.id, Job.finished_at)
        .where(
            Job.tenant_id == tenant_id,
            Job.student == student,
            Job.status == JobStatus.SUCCEEDED,
            Job.kind == kind,
            Job.comparison.is_not(None),
            Job.prompt_set.is_not(None),
        )
        .order_by(Job.finished_at.desc(), Job.id.desc())
    ).all()
    counts: dict[tuple[str, str], int] = {}
    latest: dict[tuple[str, str], tuple[str, datetime]] = {}
    for prompt_set, comparison, job_id, finished in rows:
        assert prompt_set is not None
        assert comparison is not None
        assert finished is not None
        counts[(prompt_set, comparison)] = counts.get((prompt_set, comparison), 0) + 1
        latest.setdefault((prompt_set, comparison), (job_id, finished))
    # Only the latest job's submission is read, for its settings: a request holds every prompt.
    ids = [job_id for job_id, _ in latest.values()]
    requests: dict[str, dict[str, Any]] = dict(
        session.execute(select(Job.id, Job.request).where(Job.id.in_(ids))).tuples().all()
    )
    return [
        Board(
            prompt_set,
            comparison,
            counts[(prompt_set, comparison)],
            job_id,
            finished,
            requests[job_id]["scoring"],
        )
        for (prompt_set, comparison), (job_id, finished) in latest.items()
    ]
