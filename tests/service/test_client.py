"""grace_client against a real server (PostgreSQL through the API, and the embedded default end
to end): datasets listed, paged and deleted per tenant, problem+json as one exception type, and
wait() with progress."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.schemas import JobPublic
from grace_client import Client, GraceAPIError, GraceConnectionError, RetryPolicy, __version__, models
from grace_engine.models.tiny_models import TinyModels
from tests.service.conftest import Caller, assert_problem, embedded_server, supplied_job

PROMPTS = [{"id": f"p{i}", "prompt": f"What is {i} + {i}?"} for i in range(3)]


def test_datasets_list_page_and_delete_within_a_tenant(
    client: TestClient, caller: Caller, new_caller: Any
) -> None:
    made = [
        client.post(
            "/v1/datasets", json={"name": f"set {i}", "prompts": PROMPTS}, headers=caller.headers
        ).json()
        for i in range(3)
    ]
    first = client.get("/v1/datasets", params={"limit": 2}, headers=caller.headers).json()
    assert [d["id"] for d in first["data"]] == [made[2]["id"], made[1]["id"]]  # newest first
    rest = client.get(
        "/v1/datasets", params={"limit": 2, "cursor": first["next_cursor"]}, headers=caller.headers
    ).json()
    assert [d["id"] for d in rest["data"]] == [made[0]["id"]]
    assert rest["next_cursor"] is None
    assert "prompts" not in first["data"][0]
    stranger = new_caller()
    assert client.get("/v1/datasets", headers=stranger.headers).json()["data"] == []
    assert_problem(client.delete(f"/v1/datasets/{made[0]['id']}", headers=stranger.headers), 404)
    # A queued job still reads its dataset's prompts: no deleting it under the job.
    body = supplied_job({"a": ["x", "y"], "b": ["z", "w"]})
    body.pop("prompts")
    body["candidates"] = [
        {"name": c["name"], "responses": {p["id"]: ["x", "y"] for p in PROMPTS}} for c in body["candidates"]
    ]
    job = client.post("/v1/jobs", json={**body, "dataset_id": made[1]["id"]}, headers=caller.headers)
    assert job.status_code == 202, job.text
    conflict = assert_problem(client.delete(f"/v1/datasets/{made[1]['id']}", headers=caller.headers), 409)
    assert conflict["jobs"] == [job.json()["id"]]
    client.post(f"/v1/jobs/{job.json()['id']}/cancel", headers=caller.headers)
    assert client.delete(f"/v1/datasets/{made[1]['id']}", headers=caller.headers).status_code == 204
    assert_problem(client.get(f"/v1/datasets/{made[1]['id']}", headers=caller.headers), 404)
    assert_problem(
        client.get("/v1/datasets", params={"cursor": "nope"}, headers=caller.headers), 422, "cursor"
    )


def test_the_client_covers_the_service_end_to_end(tiny: TinyModels, tmp_path: Path) -> None:
    assert __version__[0].isdigit()
    with embedded_server(tmp_path, tiny.root) as base, Client(base) as grace:
        assert grace.healthz()["status"] == "ok"
        dataset = grace.create_dataset(PROMPTS, name="three")
        assert [d["id"] for d in grace.iter_datasets()] == [dataset["id"]]
        body = supplied_job({"good": ["2 + 2 = 4", "4"], "bad": ["no", "5"]})
        accepted = grace.create_job(body, idempotency_key="client-test")
        assert grace.create_job(body, idempotency_key="client-test")["id"] == accepted["id"]
        seen: list[str] = []
        done = grace.wait(
            accepted["id"], on_progress=lambda j: seen.append(j["status"]), poll=0.1, timeout=600
        )
        assert done["status"] == "succeeded", done
        assert seen[-1] == "succeeded"
        assert seen.count("succeeded") == 1  # called when the job changed, not per poll
        ranking = grace.get_ranking(accepted["id"])
        assert {r["name"] for r in ranking["ranking"]} == {"good", "bad"}
        assert len(grace.get_scores(accepted["id"])["candidates"]) == 2
        assert grace.get_mixed_dataset(accepted["id"]).count("\n") == len(body["prompts"])
        first = json.loads(grace.get_mixed_dataset(accepted["id"], form="prompt_completion").splitlines()[0])
        assert first["prompt"].startswith("### Problem:\n")  # the student's template: what was scored
        assert accepted["id"] in [j["id"] for j in grace.iter_jobs()]
        assert grace.get_deliveries(accepted["id"])["data"] == []  # it named no webhook
        # The typed models are the API's own: every answer above validates into its model.
        typed = models.JobPublic.model_validate(done)
        assert typed.status == "succeeded"
        assert typed.finished_at is not None
        assert models.JobAccepted.model_validate(accepted).links.self == f"/v1/jobs/{accepted['id']}"
        assert {r.name for r in models.RankingPublic.model_validate(ranking).ranking} == {"good", "bad"}
        assert models.ScoresPublic.model_validate(grace.get_scores(accepted["id"])).job_id == accepted["id"]
        assert models.JobsPublic.model_validate(grace.list_jobs()).data[0].id == accepted["id"]
        assert models.DatasetPublic.model_validate(dataset).n_prompts == len(PROMPTS)
        assert models.JobPublic is JobPublic  # shared, not copied
        with pytest.raises(GraceAPIError) as err:
            grace.create_job({**body, "candidates": []})
        assert (err.value.status, err.value.field) == (422, "candidates")
        with pytest.raises(GraceAPIError) as err:
            grace.cancel_job(accepted["id"])
        assert err.value.status == 409
        assert err.value.body["job_status"] == "succeeded"
        grace.delete_dataset(dataset["id"])
        assert grace.list_datasets()["data"] == []
        assert "grace_jobs" in grace.metrics()
    with pytest.raises(GraceConnectionError), Client(base, timeout=2, retry=RetryPolicy(attempts=2)) as gone:
        gone.healthz()
    assert issubclass(GraceConnectionError, GraceAPIError)
