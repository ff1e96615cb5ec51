"""The HTTP contract on real PostgreSQL + Redis (no worker runs here, so jobs stay queued unless a
test runs one with the real JobRunner)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker

from app.main import create_app
from app.services.jobs import request_hash
from grace_infra.db.models import Job, JobResult, JobStatus, Tenant
from grace_infra.settings import Settings
from grace_jobs.kinds.score import KIND as SCORE
from grace_jobs.requests import JobCreate
from tests.service.conftest import METRICS_KEY, Caller, assert_problem, job_body, run_job, service_settings
from workers.runner import JobRunner

OPERATOR = {"Authorization": f"Bearer {METRICS_KEY}"}


def _submit(client: TestClient, caller: Caller, body: dict[str, Any] | None = None, **headers: str) -> Any:
    return client.post("/v1/jobs", json=body or job_body(), headers={**caller.headers, **headers})


def test_create_get_list_cancel(client: TestClient, caller: Caller) -> None:
    r = _submit(client, caller)
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    assert r.headers["location"] == f"/v1/jobs/{job_id}" == r.json()["links"]["self"]
    got = client.get(f"/v1/jobs/{job_id}", headers=caller.headers).json()
    assert got["status"] == "queued"
    assert got["attempts"] == 0
    assert got["ranking"] is None
    assert got["created_at"].endswith("Z") or "+00:00" in got["created_at"]
    listed = client.get("/v1/jobs", headers=caller.headers).json()
    assert [j["id"] for j in listed["data"]] == [job_id]
    cancelled = client.post(f"/v1/jobs/{job_id}/cancel", headers=caller.headers)
    assert cancelled.status_code == 202
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["finished_at"] is not None
    again = assert_problem(client.post(f"/v1/jobs/{job_id}/cancel", headers=caller.headers), 409)
    assert again["job_status"] == "cancelled"
    assert_problem(client.get(f"/v1/jobs/{job_id}/ranking", headers=caller.headers), 409)
    filtered = client.get("/v1/jobs", params={"status": "queued"}, headers=caller.headers).json()
    assert filtered["data"] == []


def test_idempotency_key(client: TestClient, caller: Caller, session_factory: sessionmaker[Session]) -> None:
    first = _submit(client, caller, **{"Idempotency-Key": "abc-1"})
    replay = _submit(client, caller, **{"Idempotency-Key": "abc-1"})
    assert first.status_code == replay.status_code == 202
    assert first.json()["id"] == replay.json()["id"]
    other = _submit(
        client, caller, job_body(scoring={"responses_per_prompt": 3}), **{"Idempotency-Key": "abc-1"}
    )
    doc = assert_problem(other, 422, "Idempotency-Key")
    assert doc["job_id"] == first.json()["id"]
    # A request with this key that is still in flight (stored, not yet enqueued): 409.
    with session_factory() as session:
        tenant = session.scalars(select(Tenant).where(Tenant.name == caller.tenant)).one()
        session.add(
            Job(
                tenant_id=tenant.id,
                kind=SCORE.name,
                student="student",
                request=job_body(),
                request_hash=request_hash(JobCreate.model_validate(job_body())),
                idempotency_key="in-flight",
                status=JobStatus.QUEUED,
            )
        )
        session.commit()
    conflict = assert_problem(_submit(client, caller, **{"Idempotency-Key": "in-flight"}), 409)
    assert conflict["title"] == "Request In Progress"
    jobs = client.get("/v1/jobs", params={"limit": 100}, headers=caller.headers).json()["data"]
    assert len(jobs) == 2  # abc-1 once, plus the in-flight row


def test_pagination_is_newest_first_and_stable_while_jobs_arrive(client: TestClient, caller: Caller) -> None:
    original = [_submit(client, caller).json()["id"] for _ in range(7)]
    seen: list[str] = []
    page = client.get("/v1/jobs", params={"limit": 3}, headers=caller.headers).json()
    seen += [j["id"] for j in page["data"]]
    newer = [_submit(client, caller).json()["id"] for _ in range(2)]  # arrive between pages
    while page["next_cursor"]:
        page = client.get(
            "/v1/jobs", params={"limit": 3, "cursor": page["next_cursor"]}, headers=caller.headers
        ).json()
        seen += [j["id"] for j in page["data"]]
    assert seen == list(reversed(original))
    first = client.get("/v1/jobs", params={"limit": 2}, headers=caller.headers).json()
    assert [j["id"] for j in first["data"]] == list(reversed(newer))
    assert_problem(
        client.get("/v1/jobs", params={"cursor": "not-a-cursor"}, headers=caller.headers), 422, "cursor"
    )
    # A page larger than the server's maximum is clamped to it (the schema cannot state an operator setting).
    clamped = client.get("/v1/jobs", params={"limit": 1000}, headers=caller.headers)
    assert clamped.status_code == 200
    assert len(clamped.json()["data"]) <= 100
    assert_problem(client.get("/v1/jobs", params={"limit": 0}, headers=caller.headers), 422, "limit")


def test_jobs_filter_by_kind_and_search_by_id_or_student(client: TestClient, caller: Caller) -> None:
    """The dashboard's filter and search: ``kind``, and ``q`` matching an id's beginning or any part
    of the student's name in any case, with LIKE's wildcards taken literally."""
    mine = _submit(client, caller).json()["id"]
    other = client.post("/v1/jobs", json=job_body(student="tutor"), headers=caller.headers).json()["id"]

    def ids(**params: str) -> list[str]:
        got = client.get("/v1/jobs", params={"limit": 100, **params}, headers=caller.headers)
        assert got.status_code == 200, got.text
        return [j["id"] for j in got.json()["data"]]

    assert set(ids(kind="score")) == {mine, other}
    assert ids(kind="validation") == []
    assert ids(q=mine[:6]) == [mine]
    assert ids(q="TUT") == [other]
    assert ids(q="%") == []  # a wildcard is a character here, and no student has one
    assert set(ids(q="t")) >= {mine, other}
    request = client.get(f"/v1/jobs/{mine}/request", headers=caller.headers)
    assert request.status_code == 200
    body = request.json()
    assert body["student"] == "student"
    assert body["scoring"]["proj_dim"] == 64  # as submitted, with every default filled in
    assert body["scoring"]["seed"] == 0
    assert client.post("/v1/jobs", json=body, headers=caller.headers).status_code == 202  # a re-run


@pytest.mark.parametrize("listing", [False, True], ids=["job", "listing"])
def test_etag_gives_304_until_the_job_changes(client: TestClient, caller: Caller, listing: bool) -> None:
    job_id = _submit(client, caller).json()["id"]
    url = "/v1/jobs?limit=5" if listing else f"/v1/jobs/{job_id}"
    first = client.get(url, headers=caller.headers)
    etag = first.headers["etag"]
    same = client.get(url, headers={**caller.headers, "If-None-Match": etag})
    assert same.status_code == 304
    assert same.content == b""
    assert same.headers["etag"] == etag
    client.post(f"/v1/jobs/{job_id}/cancel", headers=caller.headers)
    changed = client.get(url, headers={**caller.headers, "If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag


def test_results_ranking_scores_and_history(
    client: TestClient, caller: Caller, settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    job_id = _submit(client, caller).json()["id"]
    assert_problem(client.get(f"/v1/jobs/{job_id}/scores", headers=caller.headers), 409)
    runner = JobRunner(settings, session_factory)
    assert run_job(runner, job_id) == "succeeded"
    assert runner.run(job_id) == "skipped"  # a duplicate delivery of a finished job does nothing
    job = client.get(f"/v1/jobs/{job_id}", headers=caller.headers).json()
    assert job["status"] == "succeeded"
    assert job["examples_scored"] == 24
    assert job["progress"]["candidates"]["tutor"]["gradients"] == {"done": 12, "total": 12}
    ranking = client.get(f"/v1/jobs/{job_id}/ranking", headers=caller.headers).json()
    assert [r["name"] for r in ranking["ranking"]] == [r["name"] for r in job["ranking"]]
    assert ranking["ranking"][-1]["name"] == "noise"
    scores = client.get(f"/v1/jobs/{job_id}/scores", headers=caller.headers).json()["candidates"]
    assert {c["name"] for c in scores} == {"tutor", "noise"}
    for c in scores:
        grace = c["details"]["grace"]
        assert len(grace["split_scores"]) == 10
        assert grace["variance"] + grace["bias"] == pytest.approx(grace["score"], rel=1e-9)
    history = client.get("/v1/rankings", params={"student": "student"}, headers=caller.headers).json()
    assert [h["job_id"] for h in history["data"]] == [job_id]
    with session_factory() as session:
        rows = session.scalars(select(JobResult).where(JobResult.job_id == job_id)).all()
        assert len(rows) == 2
    # The same teachers, settings and prompts again: responses come from the store, not generated.
    again = _submit(client, caller).json()["id"]
    assert run_job(runner, again) == "succeeded"
    reused = client.get(f"/v1/jobs/{again}/scores", headers=caller.headers).json()["candidates"]
    assert {c["details"]["response_source"] for c in reused} == {"stored"}
    first = {c["name"]: c["details"]["grace"]["score"] for c in scores}
    assert {c["name"]: c["details"]["grace"]["score"] for c in reused} == pytest.approx(first, rel=1e-9)


def test_datasets_are_uploaded_once_and_referenced(
    client: TestClient, caller: Caller, new_caller: Callable[[], Caller]
) -> None:
    prompts = job_body()["prompts"]
    created = client.post(
        "/v1/datasets", json={"name": "gsm8k-6", "prompts": prompts}, headers=caller.headers
    )
    assert created.status_code == 201
    ds = created.json()
    assert ds["n_prompts"] == 6
    assert created.headers["location"] == f"/v1/datasets/{ds['id']}"
    body = job_body()
    del body["prompts"]
    assert _submit(client, caller, {**body, "dataset_id": ds["id"]}).status_code == 202
    stranger = new_caller()
    assert_problem(client.get(f"/v1/datasets/{ds['id']}", headers=stranger.headers), 404)
    assert_problem(_submit(client, stranger, {**body, "dataset_id": ds["id"]}), 422, "dataset_id")
    assert_problem(_submit(client, caller, {**body, "dataset_id": ds["id"], "prompts": prompts}), 422, "body")
    dup = [{"id": "a", "prompt": "x"}, {"id": "a", "prompt": "y"}]
    assert_problem(
        client.post("/v1/datasets", json={"prompts": dup}, headers=caller.headers), 422, "prompts[1].id"
    )


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b["candidates"][0].update(temperature=-1), "candidates[0].temperature"),
        (lambda b: b["candidates"][1].update(tempreature=1), "candidates[1].tempreature"),
        (lambda b: b.update(extra_field=1), "extra_field"),
        (lambda b: b["candidates"][0].update(model="/etc"), "candidates[0].model"),
        (lambda b: b["candidates"][0].update(model="nope"), "candidates[0].model"),
        (lambda b: b.update(student="org/private-model"), "student"),
        (lambda b: b.update(prompts=b["prompts"][:1]), "prompts"),
        (lambda b: b.update(candidates=[]), "candidates"),
        (lambda b: b["candidates"].append(dict(b["candidates"][0])), "candidates[2].name"),
        (lambda b: b["candidates"][0].update(responses={"p0": ["x"]}), "candidates[0]"),
        (lambda b: b["scoring"].update(student_template="no placeholder"), "scoring.student_template"),
        (lambda b: b["scoring"].update(gradient_space="everything"), "scoring.gradient_space"),
        (lambda b: b["prompts"][2].update(prompt="nul\x00byte"), "prompts[2].prompt"),
        (lambda b: b["scoring"].update(predictors=["grace", "bogus"]), "scoring.predictors[1]"),
        (lambda b: b["scoring"].update(predictors=["rsr", "rsr"]), "scoring.predictors"),
        (lambda b: b["scoring"].update(predictors=["rsr"], rank_by="grace"), "scoring.rank_by"),
        (lambda b: b["scoring"].update(proj_dim="big"), "scoring.proj_dim"),
        (lambda b: b["scoring"].update(bootstrap=-1), "scoring.bootstrap"),
        (lambda b: b["scoring"].update(budget={"initial_prompts": 2}), "scoring.budget.initial_prompts"),
        (lambda b: b["scoring"].update(budget={"examples": 10}, bootstrap=0), "scoring.bootstrap"),
        (
            lambda b: (b["scoring"].update(rank_by="teacher_accuracy"), b["prompts"][0].pop("answer")),
            "scoring.rank_by",
        ),
    ],
)
def test_validation_errors_name_the_field(
    client: TestClient, caller: Caller, mutate: Any, field: str
) -> None:
    body = job_body()
    mutate(body)
    assert_problem(_submit(client, caller, body), 422, field)


def test_limits_are_413_or_422_never_500(
    database_url: str, redis_url: str, tiny: Any, caller: Caller
) -> None:
    settings = service_settings(
        database_url,
        redis_url,
        tiny.root,
        max_body_bytes=20_000,
        max_candidates_per_job=2,
        max_prompts_per_job=5,
        max_responses_per_prompt=3,
        max_response_chars=100,
        max_new_tokens=64,
    )
    with TestClient(create_app(settings)) as client:
        big = job_body(prompts=[{"prompt": "x" * 30_000}, {"prompt": "y"}])
        assert_problem(_submit(client, caller, big), 413)
        three = job_body()
        three["candidates"].append({"name": "parrot", "model": "parrot"})
        assert_problem(_submit(client, caller, three), 422, "candidates")
        assert_problem(_submit(client, caller, job_body()), 422, "prompts")  # 6 > 5
        small = job_body(prompts=job_body()["prompts"][:4])
        assert_problem(
            _submit(client, caller, {**small, "scoring": {"responses_per_prompt": 4}}),
            422,
            "scoring.responses_per_prompt",
        )
        long_reply = {p["id"]: ["z" * 101, "ok"] for p in small["prompts"]}
        supplied = {**small, "candidates": [{"name": "mine", "responses": long_reply}]}
        assert_problem(_submit(client, caller, supplied), 422, "candidates[0].responses[p0][0]")
        greedy = {**small, "candidates": [{"name": "t", "model": "tutor", "max_tokens": 65}]}
        assert_problem(_submit(client, caller, greedy), 422, "candidates[0].max_tokens")
        assert _submit(client, caller, small).status_code == 202


def test_other_error_paths_are_problems(client: TestClient, caller: Caller) -> None:
    assert_problem(client.get("/v1/jobs/00000000-0000-0000-0000-000000000000", headers=caller.headers), 404)
    assert_problem(client.get("/v1/nothing-here", headers=caller.headers), 404)
    assert_problem(client.delete("/v1/jobs", headers=caller.headers), 405)
    bad_json = client.post(
        "/v1/jobs", content=b"{not json", headers={**caller.headers, "Content-Type": "application/json"}
    )
    assert_problem(bad_json, 422)


def test_health_ready_metrics(client: TestClient, caller: Caller, caplog: pytest.LogCaptureFixture) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    with caplog.at_level(logging.DEBUG):
        ready = client.get("/readyz")
    # A probe that succeeds logs nothing of its own (it runs every few seconds).
    assert [r for r in caplog.records if r.name.startswith(("alembic", "grace"))] == []
    assert ready.status_code == 200
    assert ready.json()["checks"] == {
        "database": "ok",
        "migrations": "ok",
        "queue": "ok",
    }
    _submit(client, caller)
    # The figures span every tenant: a tenant's key is refused, the operator's metrics key is not.
    assert_problem(client.get("/metrics", headers=caller.headers), 401)
    assert_problem(client.get("/metrics"), 401)
    text = client.get("/metrics", headers=OPERATOR).text
    for name in (
        'grace_jobs{state="queued"}',
        "grace_queue_depth",
        "grace_job_duration_seconds_bucket",
        "grace_examples_scored",
        # HTTP requests by route template (not by raw path), the process's own metrics
        'http_requests_total{handler="/v1/jobs",method="POST",status="2xx"}',
        'http_request_duration_seconds_bucket{handler="/v1/jobs"',
        "process_resident_memory_bytes",
        "python_gc_collections_total",
    ):
        assert name in text, name
    assert 'handler="/readyz"' not in text  # probes are not traffic


def test_the_job_duration_histogram_is_kept_as_jobs_succeed(
    client: TestClient, caller: Caller, settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    def histogram() -> dict[str, float]:
        lines = re.findall(
            r'^grace_job_duration_seconds_(bucket\{le="[^"]+"\}|count|sum) (\S+)$',
            client.get("/metrics", headers=OPERATOR).text,
            flags=re.M,
        )
        return {name: float(value) for name, value in lines}

    before = histogram()
    job_id = _submit(client, caller).json()["id"]
    assert run_job(JobRunner(settings, session_factory), job_id) == "succeeded"
    after = histogram()
    with session_factory() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert job.started_at is not None
        assert job.finished_at is not None
        seconds = (job.finished_at - job.started_at).total_seconds()
    assert after["count"] == before["count"] + 1
    assert after["sum"] == pytest.approx(before["sum"] + seconds)
    for label in before:
        if label.startswith("bucket"):
            bound = float(label.split('"')[1])  # +Inf parses as infinity
            assert after[label] == before[label] + (seconds <= bound), label


def test_the_openapi_document_declares_bearer_auth_and_problem_errors(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["bearer"]["description"],
    }
    operations = [(path, op) for path, ops in doc["paths"].items() for op in ops.values()]
    ids = [op["operationId"] for _, op in operations]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    for path, op in operations:
        if path.startswith("/v1/"):
            assert op["security"] == [{"bearer": []}], path
            assert {"401", "503"} <= set(op["responses"]), path
        for status, response in op["responses"].items():
            if int(status) >= 400:
                assert list(response["content"]) == ["application/problem+json"], (path, status)
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    # What generated clients need from the headers: where to poll an accepted job, when to retry.
    accepted = doc["paths"]["/v1/jobs"]["post"]["responses"]["202"]
    assert "Location" in accepted["headers"]
    for path, op in operations:
        if "503" in op["responses"]:
            assert "Retry-After" in op["responses"]["503"]["headers"], path


def test_the_openapi_document_is_the_same_whatever_the_auth_setting(
    client: TestClient, database_url: str, redis_url: str, tiny: Any
) -> None:
    """A client generated against a server with auth off can send keys to one with auth on: the
    only difference is that a key is optional (an empty security alternative)."""
    secured = client.get("/openapi.json").json()
    with TestClient(
        create_app(service_settings(database_url, redis_url, tiny.root, auth="off"))
    ) as open_client:
        relaxed = open_client.get("/openapi.json").json()
    for path, ops in relaxed["paths"].items():
        for method, op in ops.items():
            if "security" in op:
                assert op.pop("security") == [{"bearer": []}, {}], path
                assert secured["paths"][path][method].pop("security") == [{"bearer": []}], path
    assert relaxed == secured


def test_readyz_reports_unmigrated_database(redis_url: str, tiny: Any) -> None:
    from tests.service.conftest import fresh_database

    with TestClient(create_app(service_settings(fresh_database(), redis_url, tiny.root))) as client:
        doc = assert_problem(client.get("/readyz"), 503)
        assert doc["checks"]["migrations"].startswith("behind")


def test_a_job_asking_for_vllm_on_a_cpu_worker_fails_clearly(
    client: TestClient, caller: Caller, settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    body = job_body()
    body["scoring"]["generation_backend"] = "vllm"
    job_id = _submit(client, caller, body).json()["id"]
    assert run_job(JobRunner(settings, session_factory), job_id) == "failed"
    job = client.get(f"/v1/jobs/{job_id}", headers=caller.headers).json()
    assert job["error"]["code"] == "invalid_input"
    assert "generation_backend" in job["error"]["message"]
    # One unit per candidate: the first failed, which failed the job, and the other never ran.
    assert [u["status"] for u in job["units"]] == ["failed", "cancelled"]
    assert job["units"][0]["error"] == job["error"]
    assert job["units"][1]["attempts"] == 0


def test_a_fanned_out_candidates_error_names_its_place_in_the_job(
    client: TestClient, caller: Caller, settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    """Each unit works on its candidate alone, yet its error must name the field the caller sent."""
    body = job_body()
    body["candidates"][1]["max_tokens"] = 500  # with a prompt, past the tiny teachers' 512 tokens
    job_id = _submit(client, caller, body).json()["id"]
    assert run_job(JobRunner(settings, session_factory), job_id) == "failed"
    job = client.get(f"/v1/jobs/{job_id}", headers=caller.headers).json()
    assert [u["status"] for u in job["units"]] == ["succeeded", "failed"]
    assert job["error"]["code"] == "invalid_input"
    assert job["error"]["message"].startswith("candidates[1].max_tokens: "), job["error"]


def test_max_tokens_that_fill_the_teachers_context_are_refused_at_submission(
    client: TestClient, caller: Caller
) -> None:
    body = job_body()
    body["candidates"][1]["max_tokens"] = 512  # the tiny teachers' whole context
    refused = client.post("/v1/jobs", json=body, headers=caller.headers)
    doc = assert_problem(refused, 422, "candidates[1].max_tokens")
    assert "context of 512 tokens" in doc["detail"]
    body["candidates"][1]["max_tokens"] = 511  # room for a prompt of one token: the worker judges
    assert client.post("/v1/jobs", json=body, headers=caller.headers).status_code == 202


def test_listings_and_polls_never_load_request_bodies(client: TestClient, caller: Caller) -> None:
    """GET /v1/jobs, /v1/rankings and a job's poll select what they show, not the (possibly huge)
    request."""
    accepted = client.post("/v1/jobs", json=job_body(), headers=caller.headers)
    assert accepted.status_code == 202
    engine = client.app.state.engine  # type: ignore[attr-defined]
    seen: list[str] = []

    def capture(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", capture)
    try:
        assert client.get("/v1/jobs", headers=caller.headers).status_code == 200
        assert (
            client.get("/v1/rankings", params={"student": "student"}, headers=caller.headers).status_code
            == 200
        )
        assert client.get(f"/v1/jobs/{accepted.json()['id']}", headers=caller.headers).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    jobs = [s for s in seen if "FROM jobs" in s]
    assert len([s for s in jobs if "LIMIT" in s.upper()]) == 2
    assert len(jobs) >= 3  # the two listings and the poll
    assert not any(re.search(r"jobs\.request\b(?!_)", s) for s in jobs), jobs


def test_one_version_everywhere(client: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    from grace_cli.main import main

    installed = version("grace-service")
    assert client.get("/openapi.json").json()["info"]["version"] == installed
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"grace {installed}"


@pytest.mark.parametrize(
    "path", ["/dashboard", "/dashboard/static/index.html", "/dashboard/static/dashboard.js"]
)
def test_every_dashboard_response_forbids_framing_and_foreign_scripts(client: TestClient, path: str) -> None:
    """The static copy of the page worked, unprotected, inside another origin's frame."""
    response = client.get(path)
    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy
    assert "script-src 'self'" in policy
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"


def test_metrics_are_refused_where_keys_are_required_and_no_metrics_key_is_set(settings: Settings) -> None:
    with TestClient(create_app(settings.model_copy(update={"metrics_key": None}))) as client:
        doc = assert_problem(client.get("/metrics", headers=OPERATOR), 403)
        assert "GRACE_METRICS_KEY" in doc["detail"]
