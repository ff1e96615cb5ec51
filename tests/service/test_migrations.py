"""Alembic is the only way the schema changes: up and down on an empty database, and the ORM
matches the migrated schema exactly (autogenerate finds nothing to do)."""

from __future__ import annotations

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
