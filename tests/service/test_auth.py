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


def test_every_route_of_another_tenants_resource_is_a_404_like_a_missing_one(
    client: TestClient,
    new_caller: Callable[[], Caller],
    settings: Settings,
    session_factory: sessionmaker[Session],
) -> None:
    """Every operation the OpenAPI document lists with a job or dataset id, called with Bob's key
    on Alice's id, answers exactly as for an id that does not exist; every listing and search
    (jobs, datasets, rankings, leaderboards and their boards, a cursor of Alice's) shows Bob
    nothing of hers; her dataset id is unknown to his submissions. A route added later is covered
    by the enumeration, or the test names it."""
    alice, bob = new_caller(), new_caller()
    prompts = job_body()["prompts"]
    dataset_id = client.post("/v1/datasets", json={"prompts": prompts}, headers=alice.headers).json()["id"]
    job = client.post(
        "/v1/jobs", json={**job_body(), "prompts": None, "dataset_id": dataset_id}, headers=alice.headers
    )
    assert job.status_code == 202, job.text
    job_id = job.json()["id"]
    assert run_job(JobRunner(settings, session_factory), job_id) == "succeeded"
    for _ in range(2):  # a second page exists, so Alice has a cursor
        client.post("/v1/jobs", json=job_body(), headers=alice.headers)
    ids = {"job_id": job_id, "dataset_id": dataset_id}
    missing = {"job_id": "0" * 32, "dataset_id": "0" * 32}
    covered = []
    for path, operations in client.get("/openapi.json").json()["paths"].items():
        names = [n for n in ids if "{" + n + "}" in path]
        if not names:
            continue
        for method in operations:
            hers = path.format(**{n: ids[n] for n in names})
            nobodys = path.format(**{n: missing[n] for n in names})
            theirs = client.request(method.upper(), hers, headers=bob.headers)
            absent = client.request(method.upper(), nobodys, headers=bob.headers)
            assert_problem(theirs, 404)
            assert theirs.json()["detail"] == absent.json()["detail"].replace(
                missing[names[-1]], ids[names[-1]]
            )
            if method == "get":  # Alice reaches it: Bob's 404 is isolation, not a wrong path
                assert client.get(hers, headers=alice.headers).status_code != 404, hers
            covered.append(f"{method.upper()} {path}")
    assert {
        "GET /v1/jobs/{job_id}/dataset",
        "GET /v1/jobs/{job_id}/deliveries",
        "GET /v1/jobs/{job_id}/request",
        "POST /v1/jobs/{job_id}/cancel",
        "GET /v1/datasets/{dataset_id}",
        "DELETE /v1/datasets/{dataset_id}",
    } <= set(covered), covered
    prompt_set = client.get(f"/v1/jobs/{job_id}", headers=alice.headers).json()["prompt_set"]
    first = client.get("/v1/jobs", params={"limit": 1}, headers=alice.headers).json()
    listings = {
        "/v1/jobs": {},
        "/v1/jobs?q=": {"q": job_id[:8]},
        "/v1/jobs?cursor=": {"cursor": first["next_cursor"]},
        "/v1/datasets": {},
        "/v1/rankings": {"student": "student"},
        "/v1/leaderboards": {"student": "student", "dataset": prompt_set},
        "/v1/leaderboards/boards": {"student": "student"},
    }
    for name, params in listings.items():
        path = name.split("?")[0]
        answer = client.get(path, params=params, headers=bob.headers)
        assert answer.status_code == 200, (name, answer.text)
        assert answer.json()["data"] == [], name
    # Her dataset id in his submission, and in his leaderboard query, is unknown to him.
    submitted = client.post(
        "/v1/jobs", json={**job_body(), "prompts": None, "dataset_id": dataset_id}, headers=bob.headers
    )
    assert submitted.status_code in (404, 422), submitted.text
    assert "dataset_id" in submitted.text
    board = client.get(
        "/v1/leaderboards", params={"student": "student", "dataset": dataset_id}, headers=bob.headers
    )
    assert_problem(board, 422, "dataset")
