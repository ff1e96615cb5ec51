"""API keys and tenant isolation."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from grace_cli.main import main
from grace_infra.db.models import ApiKey
from grace_infra.settings import Settings
from tests.service.conftest import Caller, assert_problem, job_body, run_job
from workers.runner import JobRunner


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer gk_not-a-real-key"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
    ],
)
def test_missing_or_invalid_key_is_401(client: TestClient, headers: dict[str, str]) -> None:
    r = client.get("/v1/jobs", headers=headers)
    assert_problem(r, 401)
    assert r.headers["www-authenticate"] == "Bearer"
    assert_problem(client.post("/v1/jobs", json=job_body(), headers=headers), 401)


def test_tenants_see_only_their_own_jobs(
    client: TestClient,
    new_caller: Callable[[], Caller],
    settings: Settings,
    session_factory: sessionmaker[Session],
) -> None:
    alice, bob = new_caller(), new_caller()
    job_id = client.post("/v1/jobs", json=job_body(), headers=alice.headers).json()["id"]
    assert run_job(JobRunner(settings, session_factory), job_id) == "succeeded"
    for path in (f"/v1/jobs/{job_id}", f"/v1/jobs/{job_id}/ranking", f"/v1/jobs/{job_id}/scores"):
        assert client.get(path, headers=alice.headers).status_code == 200
        assert_problem(client.get(path, headers=bob.headers), 404)
    assert_problem(client.post(f"/v1/jobs/{job_id}/cancel", headers=bob.headers), 404)
    assert client.get("/v1/jobs", headers=bob.headers).json()["data"] == []
    assert client.get("/v1/rankings", params={"student": "student"}, headers=bob.headers).json()["data"] == []
    # Bob's idempotency keys are his own: the same key makes a new job for him.
    a = client.post("/v1/jobs", json=job_body(), headers={**alice.headers, "Idempotency-Key": "k"}).json()[
        "id"
    ]
    b = client.post("/v1/jobs", json=job_body(), headers={**bob.headers, "Idempotency-Key": "k"}).json()["id"]
    assert a != b


def test_keys_cli_prints_a_working_key_once_and_stores_only_its_hash(
    client: TestClient,
    database_url: str,
    session_factory: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("GRACE_DATABASE_URL", database_url)
    assert main(["keys", "create", "--tenant", "cli-tenant"]) == 0
    key = capsys.readouterr().out.strip()
    assert key.startswith("gk_")
    assert len(key) > 40
    assert client.get("/v1/jobs", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    with session_factory() as session:
        stored = session.scalars(select(ApiKey.key_hash)).all()
    assert key not in stored
    assert all(len(h) == 64 for h in stored)
