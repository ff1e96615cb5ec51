"""The run-time histogram of succeeded jobs as stored aggregates
(:class:`~grace_infra.db.models.JobDurationBucket`): bumped in the transaction that marks a job
succeeded, read whole by ``/metrics``."""

from __future__ import annotations

from sqlalchemy import case, select, update
from sqlalchemy.orm import Session

from grace_infra.db.models import JobDurationBucket

# Upper bounds in seconds: a job takes from seconds (supplied responses) to a day (a validation).
DURATION_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)
INF = "+Inf"
LABELS = (*(str(b) for b in DURATION_BUCKETS), INF)


def record(session: Session, seconds: float) -> None:
    """Count one succeeded job that ran ``seconds`` (in the caller's transaction)."""
    within = [str(b) for b in DURATION_BUCKETS if seconds <= b]
    row = JobDurationBucket
    session.execute(
        update(row)
        .where(row.le.in_([*within, INF]))
        .values(count=row.count + 1, sum_seconds=row.sum_seconds + case((row.le == INF, seconds), else_=0.0))
    )


def histogram(session: Session) -> tuple[list[tuple[str, int]], float]:
    """``([(le, cumulative count)], sum of seconds)`` in bucket order, ``+Inf`` last."""
    rows = {r.le: r for r in session.scalars(select(JobDurationBucket))}
    buckets = [(le, rows[le].count if le in rows else 0) for le in LABELS]
    return buckets, rows[INF].sum_seconds if INF in rows else 0.0
