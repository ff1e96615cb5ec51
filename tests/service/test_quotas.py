"""Per-tenant quotas (429 with Retry-After and problem+json) and the per-job work bound (422 naming
what drives the estimate), on real PostgreSQL: one tenant cannot fill the queue for the others."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.main import create_app
from grace_engine.models.tiny_models import TinyModels
from grace_infra.db.models import Job, Tenant
from tests.service.conftest import Caller, assert_problem, job_body, service_settings, supplied_job


@pytest.fixture
def quota_client(database_url: str, redis_url: str, tiny: TinyModels) -> Iterator[Callable[..., TestClient]]:
    """A client of a service with the given settings (no worker reads its queue)."""
    opened: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        client = TestClient(create_app(service_settings(database_url, redis_url, tiny.root, **overrides)))
        opened.append(client.__enter__())
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)


def _light() -> dict[str, Any]:
    return supplied_job({"a": ["1", "2"], "b": ["3", "4"]})


def _stored(session_factory: sessionmaker[Session], tenant: str) -> list[Job]:
    with session_factory() as session:
        return list(
            session.scalars(select(Job).join(Tenant, Tenant.id == Job.tenant_id).where(Tenant.name == tenant))
        )


def assert_quota(response: Any, quota: str) -> dict[str, Any]:
    doc = assert_problem(response, 429)
    assert doc["quota"] == quota, doc
    assert int(response.headers["Retry-After"]) >= 1
    return doc


def test_jobs_in_flight_over_the_quota_are_a_429_until_one_ends(
    quota_client: Callable[..., TestClient], new_caller: Callable[[], Caller]
) -> None:
    client = quota_client(tenant_max_active_jobs=2)
    caller, other = new_caller(), new_caller()
    first = client.post("/v1/jobs", json=_light(), headers=caller.headers)
    assert first.status_code == 202
    assert client.post("/v1/jobs", json=_light(), headers=caller.headers).status_code == 202
    doc = assert_quota(client.post("/v1/jobs", json=_light(), headers=caller.headers), "max_active_jobs")
    assert (doc["limit"], doc["current"]) == (2, 2)
    assert "GRACE_TENANT_MAX_ACTIVE_JOBS" in doc["detail"]
    # another tenant is not held back by this one
    assert client.post("/v1/jobs", json=_light(), headers=other.headers).status_code == 202
    # a job that ends gives its place back (a queued job cancels at once)
    cancelled = client.post(f"/v1/jobs/{first.json()['id']}/cancel", headers=caller.headers)
    assert cancelled.json()["status"] == "cancelled"
    assert client.post("/v1/jobs", json=_light(), headers=caller.headers).status_code == 202


def test_submissions_per_minute_over_the_quota_are_a_429_with_the_wait(
    quota_client: Callable[..., TestClient], caller: Caller
) -> None:
    client = quota_client(tenant_submissions_per_minute=3)
    accepted = [
        client.post("/v1/jobs", json=_light(), headers={**caller.headers, "Idempotency-Key": f"k{i}"})
        for i in range(3)
    ]
    assert [r.status_code for r in accepted] == [202] * 3
    refused = client.post("/v1/jobs", json=_light(), headers=caller.headers)
    doc = assert_quota(refused, "submissions_per_minute")
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert (doc["limit"], doc["current"]) == (3, 3)
    # a retried submission (same Idempotency-Key) is the stored job, not a new one: never refused
    again = client.post("/v1/jobs", json=_light(), headers={**caller.headers, "Idempotency-Key": "k0"})
    assert again.status_code == 202
    assert again.json()["id"] == accepted[0].json()["id"]


def test_compute_in_flight_over_the_quota_is_a_429(
    quota_client: Callable[..., TestClient], caller: Caller, session_factory: sessionmaker[Session]
) -> None:
    probe = quota_client()
    assert probe.post("/v1/jobs", json=job_body(), headers=caller.headers).status_code == 202
    (job,) = _stored(session_factory, caller.tenant)
    cost = job.cost_seconds
    assert cost is not None  # the estimate is stored with the job
    assert cost > 0
    client = quota_client(tenant_max_compute_seconds=2.5 * cost)
    assert client.post("/v1/jobs", json=job_body(), headers=caller.headers).status_code == 202
    doc = assert_quota(
        client.post("/v1/jobs", json=job_body(), headers=caller.headers), "max_compute_seconds"
    )
    assert doc["current"] == pytest.approx(2 * cost)
    assert len(_stored(session_factory, caller.tenant)) == 2  # nothing stored for the refused one


def test_a_job_the_compute_quota_could_never_hold_is_a_422_not_a_429(
    quota_client: Callable[..., TestClient], caller: Caller
) -> None:
    client = quota_client(tenant_max_compute_seconds=1e-6)
    doc = assert_problem(client.post("/v1/jobs", json=job_body(), headers=caller.headers), 422)
    assert "GRACE_TENANT_MAX_COMPUTE_SECONDS" in doc["detail"]


def test_concurrent_submissions_of_one_tenant_cannot_all_pass_one_count(
    quota_client: Callable[..., TestClient], caller: Caller, session_factory: sessionmaker[Session]
) -> None:
    """The tenant's row is locked from the count to the insert: 8 submissions at once against a
    quota of 3 store exactly 3 jobs."""
    client = quota_client(tenant_max_active_jobs=3)
    with ThreadPoolExecutor(8) as pool:
        codes = sorted(
            pool.map(
                lambda _: client.post("/v1/jobs", json=_light(), headers=caller.headers).status_code, range(8)
            )
        )
    assert codes == [202] * 3 + [429] * 5
    assert len(_stored(session_factory, caller.tenant)) == 3


def test_a_job_over_the_work_bound_is_refused_naming_what_drives_it(
    quota_client: Callable[..., TestClient], caller: Caller, session_factory: sessionmaker[Session]
) -> None:
    client = quota_client(max_job_seconds=1e-6)
    body = job_body()
    refused = client.post("/v1/jobs", json=body, headers=caller.headers)
    doc = assert_problem(refused, 422)
    stages = doc["stages"]
    assert set(stages) == {"generation", "gradients", "scoring"}  # two generated candidates
    assert doc["estimate_seconds"] == pytest.approx(sum(stages.values()), rel=1e-3)
    largest = max(stages, key=stages.get)
    drivers = {"generation": "candidates", "gradients": "prompts", "scoring": "scoring.n_splits"}
    assert doc["errors"][0]["field"] == drivers[largest]
    assert "GRACE_MAX_JOB_SECONDS" in doc["detail"]
    assert _stored(session_factory, caller.tenant) == []
    # twice the tokens to generate, twice the generation; more splits, more scoring
    longer = job_body(candidates=[{**c, "max_tokens": 64} for c in body["candidates"]])
    more = client.post("/v1/jobs", json=longer, headers=caller.headers).json()["stages"]
    assert more["generation"] == pytest.approx(2 * stages["generation"], rel=0.05)
    splits = job_body(scoring={**body["scoring"], "n_splits": 40})
    assert client.post("/v1/jobs", json=splits, headers=caller.headers).json()["stages"]["scoring"] > (
        3 * stages["scoring"]
    )


def test_the_contract_lists_429_on_submissions_only(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path, method in (("/v1/jobs", "post"), ("/v1/validations", "post"), ("/v1/influence", "post")):
        response = paths[path][method]["responses"]["429"]
        assert "Retry-After" in response["headers"]
    assert "429" not in paths["/v1/jobs/{job_id}/cancel"]["post"]["responses"]
    assert "429" not in paths["/v1/jobs/{job_id}"]["get"]["responses"]
