"""Leaderboards: a score job records its prompt set and its comparison key.

Revision ID: 0005_leaderboards
Revises: 0004_gradient_sets
Create Date: 2026-12-01 22:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_leaderboards"
down_revision: str | None = "0004_gradient_sets"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Jobs from before have neither: they stay off leaderboards (nothing to compare them by).
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("prompt_set", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("comparison", sa.String(length=64), nullable=True))
        batch_op.create_index(
            "ix_jobs_tenant_leaderboard", ["tenant_id", "student", "prompt_set"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_tenant_leaderboard")
        batch_op.drop_column("comparison")
        batch_op.drop_column("prompt_set")
