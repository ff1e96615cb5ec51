"""/v1/leaderboards on PostgreSQL: candidates scored in different jobs ranked together under one
configuration, each with its latest score and source job; configurations kept apart; pages;
tenants isolated."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from grace_engine.models.facts import model_facts
from grace_engine.models.loading import ModelPolicy, resolve_model
from grace_engine.models.tiny_models import TinyModels
from grace_infra.settings import Settings
from tests.service.conftest import Caller, assert_problem, job_body, run_to_success, supplied_job
from workers.runner import JobRunner

STYLES = {
    "short": ["4", "5"],
    "long": ["Two and two make 4.", "It is 4, I think."],
    "longer": ["Let us see: two and two make four, so 4.", "Counting up from two, I get 4."],
    "terse": ["four", "4!"],
}


def _job(names: tuple[str, ...], *, rename: dict[str, str] | None = None, **scoring: Any) -> dict[str, Any]:
    return supplied_job({(rename or {}).get(n, n): STYLES[n] for n in names}, **scoring)


def _board(client: TestClient, caller: Caller, **params: Any) -> dict[str, Any]:
    response = client.get("/v1/leaderboards", params={"student": "student", **params}, headers=caller.headers)
    assert response.status_code == 200, response.text
    board: dict[str, Any] = response.json()
    return board


def test_candidates_from_several_jobs_rank_together(
    client: TestClient,
    new_caller: Callable[[], Caller],
    settings: Settings,
    session_factory: sessionmaker[Session],
) -> None:
    runner = JobRunner(settings, session_factory)
    owner, stranger = new_caller(), new_caller()
    first = run_to_success(client, owner, runner, _job(("short", "long")))
    # "long" again, now with other responses: its newer score replaces the older one
    second = run_to_success(client, owner, runner, _job(("longer", "terse"), rename={"longer": "long"}))
    assert first["prompt_set"] == second["prompt_set"]
    board = _board(client, owner, dataset=first["prompt_set"])
    assert board["total"] == 3
    assert [e["rank"] for e in board["data"]] == [1, 2, 3]
    graces = [e["grace"] for e in board["data"]]
    assert graces == sorted(graces)
    source = {e["candidate"]: e["job_id"] for e in board["data"]}
    assert source == {"short": first["id"], "long": second["id"], "terse": second["id"]}
    by_job = {r["name"]: r for r in second["ranking"]}
    long = next(e for e in board["data"] if e["candidate"] == "long")
    assert long["grace"] == by_job["long"]["grace"]
    # Every predictor the job computed is on the board, RSR among them, as the job reported it.
    assert long["values"] == by_job["long"]["values"]
    assert set(long["values"]) >= {"grace", "g_norm", "g_vendi", "student_nll", "rsr", "length"}
    assert all(e["values"]["rsr"] > 0 for e in board["data"])

    # the same prompts uploaded as a dataset name the same prompt set
    uploaded = client.post("/v1/datasets", json={"prompts": job_body()["prompts"]}, headers=owner.headers)
    assert uploaded.status_code == 201, uploaded.text
    assert _board(client, owner, dataset=uploaded.json()["id"])["total"] == 3

    # another configuration is another board; the default is the latest job's
    run_to_success(client, owner, runner, _job(("short",), seed=1))
    newest = _board(client, owner, dataset=first["prompt_set"])
    assert newest["total"] == 1
    assert len(newest["comparisons"]) == 2
    older = _board(client, owner, dataset=first["prompt_set"], comparison=newest["comparisons"][1])
    assert older["total"] == 3

    # pages
    page = _board(client, owner, dataset=first["prompt_set"], comparison=older["comparison"], limit=2)
    assert [e["rank"] for e in page["data"]] == [1, 2]
    assert page["next_offset"] == 2
    rest = _board(client, owner, dataset=first["prompt_set"], comparison=older["comparison"], offset=2)
    assert [e["rank"] for e in rest["data"]] == [3]
    assert rest["next_offset"] is None

    # tenants: nothing of the owner's is visible, not even through the owner's dataset id
    empty = _board(client, stranger, dataset=first["prompt_set"])
    assert (empty["total"], empty["comparison"], empty["data"]) == (0, None, [])
    foreign = client.get(
        "/v1/leaderboards",
        params={"student": "student", "dataset": uploaded.json()["id"]},
        headers=stranger.headers,
    )
    assert_problem(foreign, 422, "dataset")


def test_the_leaderboard_is_in_the_openapi_document(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    op = doc["paths"]["/v1/leaderboards"]["get"]
    assert {p["name"] for p in op["parameters"]} >= {"student", "dataset", "comparison", "limit", "offset"}
    assert op["security"] == [{"bearer": []}]


def test_guidance_names_the_best_temperature_family_and_size_on_the_job_and_the_board(
    client: TestClient,
    caller: Caller,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tiny: TinyModels,
) -> None:
    policy = ModelPolicy.from_paths([tiny.root])
    size = {n: model_facts(resolve_model(n, policy, field="m")).params for n in ("parrot", "noise", "tutor")}
    assert size["noise"] < size["parrot"] < size["tutor"]  # type: ignore[operator]
    body = job_body(
        candidates=[
            {"name": "tutor", "model": "tutor", "temperatures": [0.3, 1.0], "max_tokens": 32},
            {"name": "parrot", "model": "parrot", "max_tokens": 32},
            {"name": "noise", "model": "noise", "temperature": 1.0, "max_tokens": 32},
        ],
        scoring={"responses_per_prompt": 2, "proj_dim": 64, "max_params": size["parrot"]},
    )
    job = run_to_success(client, caller, JobRunner(settings, session_factory), body)
    order = [r["name"] for r in job["ranking"]]
    assert sorted(order) == ["noise", "parrot", "tutor@0.3", "tutor@1"]

    def first(*names: str) -> str:
        return min(names, key=order.index)

    guidance = job["guidance"]
    temps = {c["model"]: c for c in guidance["best_temperature"]}
    assert temps["tutor"]["candidate"] == first("tutor@0.3", "tutor@1")
    assert temps["tutor"]["temperatures"] == [0.3, 1.0]
    assert temps["tutor"]["temperature"] == {"tutor@0.3": 0.3, "tutor@1": 1.0}[temps["tutor"]["candidate"]]
    families = {c["family"]: (c["candidate"], c["n_candidates"]) for c in guidance["best_per_family"]}
    assert families == {"gpt2": (first("tutor@0.3", "tutor@1", "noise"), 3), "llama": ("parrot", 1)}
    small = guidance["under_max_params"]
    assert (small["candidate"], small["n_within"]) == (first("parrot", "noise"), 2)
    assert small["params"] == size[small["candidate"]]

    # The board answers the same over its own order, under the size limit its caller asks for.
    board = _board(client, caller, dataset=job["prompt_set"], max_params=size["noise"])
    assert {e["candidate"]: e["teacher"]["params"] for e in board["data"]} == {
        "tutor@0.3": size["tutor"],
        "tutor@1": size["tutor"],
        "parrot": size["parrot"],
        "noise": size["noise"],
    }
    assert board["guidance"]["under_max_params"]["candidate"] == "noise"
    assert board["guidance"]["best_temperature"] == guidance["best_temperature"]
    assert _board(client, caller, dataset=job["prompt_set"])["guidance"]["under_max_params"] is None


def test_a_muddled_temperature_list_is_a_422_naming_the_candidate(client: TestClient, caller: Caller) -> None:
    for candidate in (
        {"name": "t", "model": "tutor", "temperature": 0.3, "temperatures": [0.3, 1.0]},
        {"name": "t", "model": "tutor", "temperatures": [0.3, 0.3]},
        {"name": "t", "responses": {"p0": ["4"]}, "temperatures": [0.3]},
    ):
        response = client.post("/v1/jobs", json=job_body(candidates=[candidate]), headers=caller.headers)
        assert_problem(response, 422, "candidates[0]")
    empty = [{"name": "t", "model": "tutor", "temperatures": []}]
    response = client.post("/v1/jobs", json=job_body(candidates=empty), headers=caller.headers)
    assert_problem(response, 422, "candidates[0].temperatures")
    # Expanded names meet the others': a clash names the candidate that repeats it.
    clash = [{"name": "t", "model": "tutor", "temperatures": [0.3]}, {"name": "t@0.3", "model": "noise"}]
    assert_problem(client.post("/v1/jobs", json=job_body(candidates=clash), headers=caller.headers), 422)


def test_boards_list_each_prompt_set_and_configuration_with_its_latest_job(
    client: TestClient,
    new_caller: Callable[[], Caller],
    settings: Settings,
    session_factory: sessionmaker[Session],
) -> None:
    """The dashboard's picker: one board per (prompt set, configuration), the most recently fed
    first, counting its jobs and showing the latest one's settings; another tenant sees none."""
    runner = JobRunner(settings, session_factory)
    owner, stranger = new_caller(), new_caller()
    a1 = run_to_success(client, owner, runner, _job(("short", "long")))
    a2 = run_to_success(client, owner, runner, _job(("terse", "long")))
    b = run_to_success(client, owner, runner, _job(("short", "long"), proj_dim=16))
    listed = client.get("/v1/leaderboards/boards", params={"student": "student"}, headers=owner.headers)
    assert listed.status_code == 200, listed.text
    data = listed.json()["data"]
    assert [(d["latest_job_id"], d["jobs"]) for d in data] == [(b["id"], 1), (a2["id"], 2)]
    assert {d["prompt_set"] for d in data} == {a1["prompt_set"]}
    assert [d["scoring"]["proj_dim"] for d in data] == [16, 32]
    board = _board(client, owner, dataset=data[1]["prompt_set"], comparison=data[1]["comparison"])
    assert {e["candidate"] for e in board["data"]} == {"short", "long", "terse"}
    theirs = client.get("/v1/leaderboards/boards", params={"student": "student"}, headers=stranger.headers)
    assert theirs.json()["data"] == []
