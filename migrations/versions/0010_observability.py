"""Observability: the run-time histogram of succeeded jobs as stored aggregates
(``job_duration_buckets``), so ``/metrics`` reads a dozen rows instead of every job at each scrape,
filled from the jobs that already succeeded; and ``jobs.trace_context``, the traceparent a job's
units continue.

Revision ID: 0010_observability
Revises: 0009_predictor_values
Create Date: 2026-12-07 15:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_observability"
down_revision: str | None = "0009_predictor_values"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As grace_jobs.durations had them at this revision (a migration is a snapshot, not an import).
BOUNDS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("trace_context", sa.String(128), nullable=True))
    buckets = op.create_table(
        "job_duration_buckets",
        sa.Column("le", sa.String(16), primary_key=True),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.Column("sum_seconds", sa.Float, nullable=False),
    )
    jobs = sa.table(
        "jobs",
        sa.column("status", sa.String),
        sa.column("started_at", sa.DateTime),
        sa.column("finished_at", sa.DateTime),
    )
    query = sa.select(jobs.c.started_at, jobs.c.finished_at).where(
        jobs.c.status == "succeeded", jobs.c.started_at.is_not(None), jobs.c.finished_at.is_not(None)
    )
    seconds = [(end - start).total_seconds() for start, end in op.get_bind().execute(query)]
    rows = [{"le": str(b), "count": sum(s <= b for s in seconds), "sum_seconds": 0.0} for b in BOUNDS]
    rows.append({"le": "+Inf", "count": len(seconds), "sum_seconds": float(sum(seconds))})
    op.bulk_insert(buckets, rows)


def downgrade() -> None:
    op.drop_table("job_duration_buckets")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("trace_context")
