"""A candidate's predictor values in one JSON column (name -> value) instead of a column per
predictor, so a new predictor needs no migration. Existing rows keep their values: the columns'
and, for RSR and length (never columns), their details'.

Revision ID: 0009_predictor_values
Revises: 0008_webhook_rotation
Create Date: 2026-12-07 08:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0009_predictor_values"
down_revision: str | None = "0008_webhook_rotation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
COLUMNS = {"grace": "grace", "g_norm": "g_norm", "g_vendi": "g_vendi", "student_nll": "student_nll"}
ACCURACY = ("teacher_accuracy", "accuracy")  # (predictor, column)
FROM_DETAILS = {"rsr": "rsr", "length": "mean_response_tokens"}  # predictor -> details key
OLD = ("grace", "grace_std", "g_norm", "g_vendi", "student_nll", "accuracy")


def _table() -> sa.TableClause:
    """``job_results`` with both the old columns and the new one, as the copy between them sees it."""
    return sa.table(
        "job_results",
        sa.column("id", sa.Integer),
        *(sa.column(name, sa.Float) for name in OLD),
        sa.column("details", JSON),
        sa.column("predictor_values", JSON),
    )


def upgrade() -> None:
    with op.batch_alter_table("job_results") as batch:
        batch.add_column(sa.Column("predictor_values", JSON, nullable=True))
    old = _table()
    conn = op.get_bind()
    for row in conn.execute(sa.select(old)).mappings().all():
        details = row["details"] or {}
        values = {name: row[column] for name, column in COLUMNS.items() if row[column] is not None}
        if row[ACCURACY[1]] is not None:
            values[ACCURACY[0]] = row[ACCURACY[1]]
        values |= {name: details[key] for name, key in FROM_DETAILS.items() if details.get(key) is not None}
        conn.execute(sa.update(old).where(old.c.id == row["id"]).values(predictor_values=values))
    with op.batch_alter_table("job_results") as batch:
        batch.alter_column("predictor_values", existing_type=JSON, nullable=False)
        for name in OLD:
            batch.drop_column(name)


def downgrade() -> None:
    with op.batch_alter_table("job_results") as batch:
        for name in OLD:
            batch.add_column(sa.Column(name, sa.Float(), nullable=True))
    new = _table()
    conn = op.get_bind()
    for row in conn.execute(sa.select(new)).mappings().all():
        values = row["predictor_values"] or {}
        grace = (row["details"] or {}).get("grace") or {}
        columns = {column: values.get(name) for name, column in COLUMNS.items()}
        columns[ACCURACY[1]] = values.get(ACCURACY[0])
        columns["grace_std"] = grace.get("split_std")
        conn.execute(sa.update(new).where(new.c.id == row["id"]).values(**columns))
    with op.batch_alter_table("job_results") as batch:
        batch.drop_column("predictor_values")
