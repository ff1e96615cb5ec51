"""The work a job was estimated at on submission (``jobs.cost_seconds``, CPU-seconds): a tenant's
compute quota sums it over the tenant's queued and running jobs. Jobs from before it count as 0.

Revision ID: 0011_job_cost
Revises: 0010_observability
Create Date: 2026-12-07 21:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_job_cost"
down_revision: str | None = "0010_observability"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("cost_seconds", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("cost_seconds")
