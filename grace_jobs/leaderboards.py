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

from grace_engine.config import ScoringConfig
from grace_engine.data import Prompt
from grace_infra.db.models import Job, JobResult, JobStatus


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def prompt_set_hash(prompts: Sequence[Prompt]) -> str:
    """The prompt set's identity: its texts in order (ids and answers change no GRACE score)."""
    return _digest([p.prompt for p in prompts])


def comparison_config(cfg: ScoringConfig) -> dict[str, Any]:
    """What a GRACE score depends on besides the candidate, the student and the prompts (``cfg``
    resolved: ``proj_dim`` a number)."""
    return {
        "gradient_space": asdict(cfg.gradient_space),
        "proj_dim": cfg.dim,
        "seed": cfg.seed,
        "path": cfg.path,
        "factor_dim": cfg.factor_dim,
        "student_format": asdict(cfg.student_format),
        "n_splits": cfg.n_splits,
        "test_fraction": cfg.test_fraction,
        "smoothing": cfg.smoothing,
        "length_factor": cfg.length_factor,
    }


def comparison_key(student: str, prompt_set: str, cfg: ScoringConfig) -> str:
    return _digest({"student": student, "prompts": prompt_set, "config": comparison_config(cfg)})


@dataclass(frozen=True)
class Entry:
    rank: int
    candidate: str
    grace: float | None
    grace_std: float | None
    g_norm: float | None
    g_vendi: float | None
    student_nll: float | None
    accuracy: float | None
    job_id: str
    scored_at: datetime


@dataclass(frozen=True)
class Leaderboard:
    """``comparison``: the configuration ranked (None: nothing scored yet); ``comparisons``: every
    configuration this student and prompt set were scored under, newest first; ``entries`` best
    first; ``total`` entries before paging."""

    comparison: str | None
    comparisons: list[str]
    entries: list[Entry]
    total: int


def leaderboard(
    session: Session,
    *,
    tenant_id: str,
    student: str,
    prompt_set: str,
    comparison: str | None = None,
    offset: int = 0,
    limit: int = 50,
) -> Leaderboard:
    """The tenant's leaderboard for ``student`` on ``prompt_set`` under ``comparison`` (default:
    that of the latest such job)."""
    scored = (
        Job.tenant_id == tenant_id,
        Job.student == student,
        Job.prompt_set == prompt_set,
        Job.status == JobStatus.SUCCEEDED,
        Job.kind == "score",
        Job.comparison.is_not(None),
    )
    comparisons: list[str] = []
    for key in session.scalars(select(Job.comparison).where(*scored).order_by(Job.finished_at.desc())):
        if key is not None and key not in comparisons:
            comparisons.append(key)
    chosen = comparison if comparison is not None else (comparisons[0] if comparisons else None)
    if chosen is None:
        return Leaderboard(None, comparisons, [], 0)
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
    ordered = sorted(
        latest.values(), key=lambda rf: (rf[0].grace is None, rf[0].grace or 0.0, rf[0].candidate)
    )
    entries = [
        Entry(
            rank=offset + i + 1,
            candidate=r.candidate,
            grace=r.grace,
            grace_std=r.grace_std,
            g_norm=r.g_norm,
            g_vendi=r.g_vendi,
            student_nll=r.student_nll,
            accuracy=r.accuracy,
            job_id=r.job_id,
            scored_at=finished,
        )
        for i, (r, finished) in enumerate(ordered[offset : offset + limit])
    ]
    return Leaderboard(chosen, comparisons, entries, len(ordered))
