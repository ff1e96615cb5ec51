"""The service's gradient store on PostgreSQL: a re-score with other splits loads no model and
computes no gradient,
another tenant's identical job does not see the first tenant's gradients, and the store stays
within its bound."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import numpy as np
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from grace_engine.stores.gradient_store import StoredGradients
from grace_infra.db.migrate import upgrade
from grace_infra.db.models import GradientSet, Tenant
from grace_infra.settings import Settings
from grace_jobs.tenants import create_key
from tests.service.conftest import Caller, fresh_database, run_to_success, supplied_job
from workers.runner import DbGradientStore, JobRunner

RESPONSES = {"short": ["4", "5"], "long": ["Two and two make 4.", "It is 4, I think."]}


def test_a_re_score_reuses_stored_gradients_within_the_tenant(
    client: TestClient,
    new_caller: Callable[[], Caller],
    settings: Settings,
    session_factory: sessionmaker[Session],
    gradient_calls: list[int],
    no_model_loads: Callable[[], AbstractContextManager[None]],
) -> None:
    runner = JobRunner(settings, session_factory)
    first, other = new_caller(), new_caller()
    run_to_success(client, first, runner, supplied_job(RESPONSES))
    assert gradient_calls == [12, 12]
    with session_factory() as session:
        tenant_id = session.scalar(select(Tenant.id).where(Tenant.name == first.tenant))
        stored = session.scalar(
            select(func.count()).select_from(GradientSet).where(GradientSet.tenant_id == tenant_id)
        )
    assert stored == 2
    gradient_calls.clear()
    with no_model_loads():  # a fresh worker, and any model load fails the job
        body = supplied_job(RESPONSES, n_splits=4, test_fraction=0.3, length_factor=True)
        rescored = run_to_success(client, first, JobRunner(settings, session_factory), body)
    assert gradient_calls == []
    assert {row["name"] for row in rescored["ranking"]} == {"short", "long"}
    gradient_calls.clear()
    # the same content from another tenant: it computes its own
    run_to_success(client, other, runner, supplied_job(RESPONSES))
    assert gradient_calls == [12, 12]


def test_the_database_store_keeps_within_its_bound_least_recently_used_out() -> None:
    url = fresh_database("grace_gradients")  # its own: the bound counts every tenant's rows
    upgrade(url)
    engine = sa.create_engine(url)
    factory = sessionmaker(engine)
    with factory() as session:
        create_key(session=session, tenant_name="bounded")
        tenant_id = session.scalar(select(Tenant.id).where(Tenant.name == "bounded"))
    assert tenant_id is not None

    def rows(seed: int) -> StoredGradients:
        g = np.random.default_rng(seed)
        return StoredGradients(
            g.standard_normal((16, 64)).astype(np.float32), g.random(16), g.integers(1, 9, 16), g.random(16)
        )

    size = len(rows(0).to_bytes())
    store = DbGradientStore(factory, tenant_id, int(2.5 * size), lambda step, _what: step())
    try:
        store.put("a", rows(1))
        store.put("b", rows(2))
        assert store.get("a") is not None  # a is now more recent than b
        store.put("c", rows(3))
        assert store.get("b") is None
        found = store.get("c")
        assert found is not None
        np.testing.assert_array_equal(found.gradients, rows(3).gradients)
        assert store.get("a") is not None
        with factory() as session:
            assert (session.scalar(select(func.sum(GradientSet.nbytes))) or 0) <= 2.5 * size
    finally:
        engine.dispose()


def test_a_tenant_evicts_only_its_own_gradients() -> None:
    """One tenant filling the store (past its share and past the whole) never evicts another's:
    its own oldest go."""
    url = fresh_database("grace_gradients")
    upgrade(url)
    engine = sa.create_engine(url)
    factory = sessionmaker(engine)
    with factory() as session:
        for name in ("quiet", "busy"):
            create_key(session=session, tenant_name=name)
        ids = dict(session.execute(select(Tenant.name, Tenant.id)).tuples().all())

    def rows(seed: int) -> StoredGradients:
        g = np.random.default_rng(seed)
        return StoredGradients(
            g.standard_normal((16, 64)).astype(np.float32), g.random(16), g.integers(1, 9, 16), g.random(16)
        )

    size = len(rows(0).to_bytes())
    retry = lambda step, _what: step()  # noqa: E731
    quiet = DbGradientStore(factory, ids["quiet"], int(3.5 * size), retry, tenant_bytes=int(2.5 * size))
    busy = DbGradientStore(factory, ids["busy"], int(3.5 * size), retry, tenant_bytes=int(2.5 * size))
    try:
        quiet.put("q1", rows(1))
        quiet.put("q2", rows(2))
        for i in range(6):  # far past its share and past what the store holds
            busy.put(f"b{i}", rows(10 + i))
        assert quiet.get("q1") is not None
        assert quiet.get("q2") is not None
        # Its share holds two, the store one more than quiet's two: it keeps its newest alone.
        assert busy.get("b5") is not None
        assert [busy.get(f"b{i}") for i in range(5)] == [None] * 5
        with factory() as session:
            by_tenant = dict(
                session.execute(
                    select(GradientSet.tenant_id, func.sum(GradientSet.nbytes)).group_by(
                        GradientSet.tenant_id
                    )
                )
                .tuples()
                .all()
            )
        assert by_tenant[ids["quiet"]] == 2 * size
        assert sum(by_tenant.values()) <= 3.5 * size
        assert by_tenant[ids["busy"]] == size
    finally:
        engine.dispose()
