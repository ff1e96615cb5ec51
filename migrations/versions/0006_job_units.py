"""Units of work: a job's claims, attempts, heartbeats and progress move to job_units.

Every existing job becomes one whole-job unit (position 0) holding its lease and progress, so a job
queued or running across the upgrade goes on as before; ``jobs.worker_id`` now names the worker
that wrote the results.

Revision ID: 0006_job_units
Revises: 0005_leaderboards
Create Date: 2026-12-01 23:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006_job_units"
down_revision: str | None = "0005_leaderboards"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "job_units",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("candidate", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("stage", sa.String(length=32), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("worker_id", sa.String(length=100), nullable=True),
        sa.Column("progress", JSON, nullable=False),
        sa.Column("result", JSON, nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_units_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_units")),
        sa.UniqueConstraint("job_id", "position", name=op.f("uq_job_units_job_id_position")),
    )
    with op.batch_alter_table("job_units", schema=None) as batch_op:
        batch_op.create_index("ix_job_units_status_heartbeat", ["status", "heartbeat_at"], unique=False)
    # A cancelling job's unit is still running: the job, not the unit, is being cancelled.
    op.execute(
        """
        INSERT INTO job_units (job_id, position, candidate, status, stage, attempts, worker_id,
                               progress, error_code, error_message, enqueued_at, started_at,
                               heartbeat_at, finished_at, updated_at)
        SELECT id, 0, NULL, CASE WHEN status = 'cancelling' THEN 'running' ELSE status END, stage,
               attempts, worker_id, progress, error_code, error_message, enqueued_at, started_at,
               heartbeat_at, finished_at, updated_at
        FROM jobs
        """
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("heartbeat_at")
        batch_op.drop_column("progress")


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("progress", JSON, nullable=True))
        batch_op.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
    # Back to one lease per job: the first unit's (a fanned-out job's other units are dropped).
    op.execute(
        """
        UPDATE jobs SET
            progress = (SELECT progress FROM job_units u WHERE u.job_id = jobs.id AND u.position = 0),
            heartbeat_at = (SELECT heartbeat_at FROM job_units u WHERE u.job_id = jobs.id AND u.position = 0),
            worker_id = COALESCE(worker_id,
                (SELECT worker_id FROM job_units u WHERE u.job_id = jobs.id AND u.position = 0))
        """
    )
    op.execute("UPDATE jobs SET progress = '{}' WHERE progress IS NULL")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.alter_column("progress", existing_type=JSON, nullable=False)
    with op.batch_alter_table("job_units", schema=None) as batch_op:
        batch_op.drop_index("ix_job_units_status_heartbeat")
    op.drop_table("job_units")
