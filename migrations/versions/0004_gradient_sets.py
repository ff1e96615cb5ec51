"""The gradient store: one candidate's projected gradients per row, content-addressed.

Revision ID: 0004_gradient_sets
Revises: 0003_optional_predictors
Create Date: 2026-12-01 22:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_gradient_sets"
down_revision: str | None = "0003_optional_predictors"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "gradient_sets",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("nbytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_gradient_sets_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_gradient_sets")),
    )
    with op.batch_alter_table("gradient_sets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_gradient_sets_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_gradient_sets_used_at"), ["used_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("gradient_sets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_gradient_sets_used_at"))
        batch_op.drop_index(batch_op.f("ix_gradient_sets_tenant_id"))
    op.drop_table("gradient_sets")
