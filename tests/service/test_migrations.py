"""Alembic is the only way the schema changes: up and down on an empty database, and the ORM
matches the migrated schema exactly (autogenerate finds nothing to do)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from grace_infra.db import models  # noqa: F401  (tables on the metadata)
from grace_infra.db.base import Base
from grace_infra.db.migrate import current_revision, downgrade, head_revision, upgrade
from tests.service.conftest import fresh_database

TABLES = {"tenants", "api_keys", "datasets", "jobs", "job_results", "response_sets"}


def _diff(url: str) -> list[object]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    engine.dispose()
    return list(diff)


def test_upgrade_downgrade_and_no_drift_on_postgres() -> None:
    url = fresh_database("migrate")
    engine = sa.create_engine(url)
    assert set(sa.inspect(engine).get_table_names()) == set()
    upgrade(url)
    assert set(sa.inspect(engine).get_table_names()) >= TABLES
    assert current_revision(engine) == head_revision(url)
    assert _diff(url) == []
    uniques = {u["name"] for u in sa.inspect(engine).get_unique_constraints("jobs")}
    assert "uq_jobs_tenant_id_idempotency_key" in uniques  # the naming convention is applied
    downgrade(url, "base")
    assert set(sa.inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade(url)  # and up again from base
    assert set(sa.inspect(engine).get_table_names()) >= TABLES
    engine.dispose()


def test_embedded_sqlite_migrates_to_the_same_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'grace.db'}"
    upgrade(url)
    assert _diff(url) == []
    downgrade(url, "base")
    engine = sa.create_engine(url)
    assert set(sa.inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()


def _filled(table: sa.Table, **given: object) -> dict[str, object]:
    """A row for ``table`` with ``given`` and a plain value in every other required column."""
    now = datetime.now(UTC)
    plain = {sa.String: "x", sa.Text: "x", sa.Integer: 0, sa.Float: 0.0, sa.Boolean: False, sa.JSON: {}}
    row = dict(given)
    for column in table.columns:
        if (
            column.name in row
            or column.nullable
            or column.server_default is not None
            or column.autoincrement is True
        ):
            continue
        if isinstance(column.type, sa.DateTime):
            row[column.name] = now
        else:
            row[column.name] = next(v for t, v in plain.items() if isinstance(column.type, t))
    return row


def test_stored_results_keep_their_predictor_values_across_0009() -> None:
    """Rows written with one column per predictor read back as ``predictor_values`` (RSR and length
    from their details), and go back to the columns on a downgrade."""
    url = fresh_database("values")
    upgrade(url, "0008_webhook_rotation")
    engine = sa.create_engine(url)
    meta = sa.MetaData()
    meta.reflect(engine)
    tenants, jobs, results = meta.tables["tenants"], meta.tables["jobs"], meta.tables["job_results"]
    details = {"rsr": 2.5, "mean_response_tokens": 41.0, "grace": {"score": 0.7, "split_std": 0.05}}
    old = {
        "grace": 0.7,
        "grace_std": 0.05,
        "g_norm": 3.0,
        "g_vendi": None,
        "student_nll": 1.2,
        "accuracy": 0.5,
    }
    with engine.begin() as conn:
        conn.execute(sa.insert(tenants).values(_filled(tenants, id="t1", name="t1")))
        conn.execute(sa.insert(jobs).values(_filled(jobs, id="j1", tenant_id="t1", kind="score")))
        conn.execute(
            sa.insert(results).values(
                _filled(results, job_id="j1", candidate="c", rank=1, details=details, **old)
            )
        )
    upgrade(url)
    with engine.connect() as conn:
        (values,) = conn.execute(sa.text("SELECT predictor_values FROM job_results")).one()
    assert values == {
        "grace": 0.7,
        "g_norm": 3.0,
        "student_nll": 1.2,
        "teacher_accuracy": 0.5,
        "rsr": 2.5,
        "length": 41.0,
    }
    downgrade(url, "0008_webhook_rotation")
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT * FROM job_results")).mappings().one()
    assert {k: row[k] for k in old} == old
    engine.dispose()


def test_the_duration_histogram_starts_from_the_jobs_that_already_succeeded() -> None:
    """0010 fills the stored histogram from succeeded jobs' run times (others not counted)."""
    url = fresh_database("durations")
    upgrade(url, "0009_predictor_values")
    engine = sa.create_engine(url)
    meta = sa.MetaData()
    meta.reflect(engine)
    tenants, jobs = meta.tables["tenants"], meta.tables["jobs"]
    start = datetime(2026, 12, 1, tzinfo=UTC)
    runs = {"a": ("succeeded", 3.0), "b": ("succeeded", 400.0), "c": ("failed", 2.0)}
    with engine.begin() as conn:
        conn.execute(sa.insert(tenants).values(_filled(tenants, id="t1", name="t1")))
        for job_id, (status, seconds) in runs.items():
            ended = start + timedelta(seconds=seconds)
            row = _filled(jobs, id=job_id, tenant_id="t1", kind="score", status=status)
            conn.execute(sa.insert(jobs).values({**row, "started_at": start, "finished_at": ended}))
    upgrade(url)
    with engine.connect() as conn:
        rows = dict(conn.execute(sa.text("SELECT le, count FROM job_duration_buckets")).all())
        (total,) = conn.execute(
            sa.text("SELECT sum_seconds FROM job_duration_buckets WHERE le = '+Inf'")
        ).one()
    assert rows == {
        "1": 0,
        "5": 1,
        "15": 1,
        "60": 1,
        "300": 1,
        "900": 2,
        "3600": 2,
        "14400": 2,
        "86400": 2,
        "+Inf": 2,
    }
    assert total == 403.0
    engine.dispose()
