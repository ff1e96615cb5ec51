"""Per-candidate predictor columns become nullable: a forward-only job computes no gradient scores.

Revision ID: 0003_optional_predictors
Revises: 0002_job_result
Create Date: 2026-12-01 15:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_optional_predictors"
down_revision: str | None = "0002_job_result"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("grace", "grace_std", "g_norm", "g_vendi", "student_nll")


def upgrade() -> None:
    with op.batch_alter_table("job_results", schema=None) as batch_op:
        for name in COLUMNS:
            batch_op.alter_column(name, existing_type=sa.Float(), nullable=True)


def downgrade() -> None:
    # Rows of forward-only jobs cannot satisfy NOT NULL again; they go with the downgrade.
    op.execute("DELETE FROM job_results WHERE " + " OR ".join(f"{name} IS NULL" for name in COLUMNS))
    with op.batch_alter_table("job_results", schema=None) as batch_op:
        for name in COLUMNS:
            batch_op.alter_column(name, existing_type=sa.Float(), nullable=False)
