"""Hostile input on PostgreSQL: text it cannot store, numbers JSON does not have, templates that
would reach ``str.format``. Every case is a 422 problem naming the field, and nothing is stored."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from grace_engine.errors import InvalidInput, ModelNotAllowed, ModelNotFound, UnsupportedModel
from grace_infra.settings import Settings
from tests.service.conftest import Caller, assert_problem, job_body, run_job
from workers.runner import JobRunner


def _post_raw(client: TestClient, caller: Caller, path: str, raw: str) -> Any:
    """POST ``raw`` as the JSON text itself, so escapes like ``\\ud83d`` and ``NaN`` arrive as sent."""
    headers = {**caller.headers, "Content-Type": "application/json"}
    return client.post(path, content=raw.encode("utf-8"), headers=headers)


def _no_jobs(client: TestClient, caller: Caller) -> None:
    listed = client.get("/v1/jobs", headers=caller.headers)
    assert listed.status_code == 200, listed.text
    assert listed.json()["data"] == []


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/v1/rankings?student=%00", "student"),
        ("/v1/rankings?student=tiny%00student&limit=5", "student"),
        ("/v1/jobs?student=%00", "student"),
        ("/v1/jobs?status=queued%00", "status"),
        ("/v1/jobs?cursor=%00abc", "cursor"),
        ("/v1/jobs/%00", "job_id"),
        ("/v1/jobs/abc%00def/ranking", "job_id"),
        ("/v1/jobs/abc%00/validation", "job_id"),
        ("/v1/datasets/%00", "dataset_id"),
    ],
)
def test_nul_in_the_path_or_query_is_a_422_naming_the_parameter(
    client: TestClient, caller: Caller, url: str, field: str
) -> None:
    body = assert_problem(client.get(url, headers=caller.headers), 422, field)
    assert "NUL" in body["detail"]


# (JSON text of a job body with one bad value, the field the problem must name)
_SURROGATES = [
    ('"prompt": "\\ud83d"', "prompts[0].prompt"),
    ('"prompt": "fine \\udc00 then"', "prompts[0].prompt"),
    ('"id": "\\ud800\\ud800"', "prompts[0].id"),
    ('"answer": "\\udfff"', "prompts[0].answer"),
]


@pytest.mark.parametrize(("member", "field"), _SURROGATES)
def test_a_lone_surrogate_anywhere_in_a_body_is_a_422_naming_the_field(
    client: TestClient, caller: Caller, member: str, field: str
) -> None:
    key = member.split(":", 1)[0].strip('"')
    body = job_body()
    body["prompts"][0][key] = "PLACEHOLDER"
    raw = json.dumps(body).replace(f'"{key}": "PLACEHOLDER"', member, 1)
    problem = assert_problem(_post_raw(client, caller, "/v1/jobs", raw), 422, field)
    assert "surrogate" in problem["detail"]
    _no_jobs(client, caller)


def test_surrogates_in_names_keys_and_nested_lists_are_refused(client: TestClient, caller: Caller) -> None:
    body = job_body()
    body["candidates"][0]["name"] = "PLACEHOLDER"
    raw = json.dumps(body).replace('"PLACEHOLDER"', '"tutor\\ud83d"', 1)
    assert_problem(_post_raw(client, caller, "/v1/jobs", raw), 422, "candidates[0].name")
    supplied = job_body()
    supplied["candidates"][1] = {"name": "given", "responses": {"p0": ["ok", "PLACEHOLDER"]}}
    raw = json.dumps(supplied).replace('"PLACEHOLDER"', '"\\udc00"', 1)
    assert_problem(_post_raw(client, caller, "/v1/jobs", raw), 422, "candidates[1].responses.p0[1]")
    raw = json.dumps(supplied).replace('"p0"', '"p\\ud800"', 1)
    problem = assert_problem(_post_raw(client, caller, "/v1/jobs", raw), 422, "candidates[1].responses")
    assert "object key" in problem["detail"]
    # NUL in a body string is refused by the same rule
    raw = json.dumps(job_body()).replace('"student"', '"student\\u0000"', 1)
    assert_problem(_post_raw(client, caller, "/v1/jobs", raw), 422, "body")
    _no_jobs(client, caller)


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999", "-1e400"])
@pytest.mark.parametrize(
    ("path", "template", "field"),
    [
        ("/v1/jobs", '{{"student": "student", "candidates": [{{"name": "t", "model": "tutor", '
         '"temperature": {x}}}], "prompts": [{{"prompt": "a"}}, {{"prompt": "b"}}]}}',
         "candidates[0].temperature"),
        ("/v1/jobs", '{{"student": "student", "candidates": [{{"name": "t", "model": "tutor"}}], '
         '"prompts": [{{"prompt": "a", "answer": {x}}}, {{"prompt": "b"}}]}}', "prompts[0].answer"),
        ("/v1/scaling-law/predict", '{{"n_student": 1e8, "student_tokens": 1e9, "teacher_loss": 2.0, '
         '"coefficients": {{"beta": {x}}}}}', "coefficients.beta"),
        ("/v1/scaling-law/plan", '{{"n_student": {x}, "compute_flops": 1e21}}', "n_student"),
    ],
)  # fmt: skip
def test_non_finite_numbers_are_a_422_naming_the_field(
    client: TestClient, caller: Caller, number: str, path: str, template: str, field: str
) -> None:
    problem = assert_problem(_post_raw(client, caller, path, template.format(x=number)), 422, field)
    assert "finite" in problem["detail"]
    _no_jobs(client, caller)


def test_integers_too_long_to_mean_anything_are_refused(client: TestClient, caller: Caller) -> None:
    body = job_body()
    body["scoring"]["seed"] = 7
    raw = json.dumps(body).replace('"seed": 7', '"seed": ' + "9" * 5000, 1)
    problem = assert_problem(_post_raw(client, caller, "/v1/jobs", raw), 422, "scoring.seed")
    assert "5000 digits" in problem["detail"]
    _no_jobs(client, caller)


@pytest.mark.parametrize("template", ["{prompt!r}", "{prompt[0]}", "{prompt.__class__}", "{0}{prompt!s}"])
def test_a_template_without_the_literal_placeholder_is_refused(
    client: TestClient, caller: Caller, template: str
) -> None:
    body = job_body()
    body["scoring"]["student_template"] = template
    assert_problem(
        client.post("/v1/jobs", json=body, headers=caller.headers), 422, "scoring.student_template"
    )
    _no_jobs(client, caller)


def _cursor(value: object) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "!!!not-base64",
        _cursor(b"\xff\xfe not utf-8"),
        _cursor({"created": "2026-01-01T00:00:00+00:00", "id": "x"}),
        _cursor(["2026-01-01T00:00:00+00:00"]),
        _cursor([1, 2]),
        _cursor(["2026-01-01T00:00:00+00:00", 7]),
        _cursor(["yesterday", "x"]),
        _cursor(["2026-01-01T00:00:00", "x"]),  # naive
        _cursor(["9999-12-31T23:59:59-14:00", "x"]),  # past datetime.max once in UTC
        _cursor(["0001-01-01T00:00:00+00:00", "x"]),
        _cursor(["2026-01-01T00:00:00+00:00", "a\u0000b"]),
        _cursor(["2026-01-01T00:00:00+00:00", "\ud800"]),
        _cursor(["2026-01-01T00:00:00+00:00\u0000", "x"]),  # fromisoformat takes a trailing NUL
        _cursor(json.dumps(["2026-01-01T00:00:00+00:00", "x"]).encode("utf-16")),
        _cursor(json.dumps(["2026-01-01T00:00:00+00:00", "x"]).encode("utf-32-le")),
        _cursor(["2026-01-01T00:00:00+00:00", "x" * 300]),
    ],
)
def test_a_forged_cursor_is_a_422_naming_the_cursor(client: TestClient, caller: Caller, cursor: str) -> None:
    body = assert_problem(
        client.get("/v1/jobs", params={"cursor": cursor}, headers=caller.headers), 422, "cursor"
    )
    assert "malformed cursor" in body["detail"]


def test_long_text_in_every_field_is_accepted_or_refused_never_a_server_error(
    client: TestClient, caller: Caller
) -> None:
    """Names and ids longer than their columns: a 422 naming the field (or, within bounds, a 202)."""
    for n in (201, 300, 1025, 5000):
        long = "x" * n
        variants: list[tuple[dict[str, Any], str]] = []
        for key in ("student",):
            b = job_body()
            b[key] = long
            variants.append((b, key))
        b = job_body()
        b["candidates"][0]["name"] = long
        variants.append((b, "candidates[0].name"))
        b = job_body()
        b["candidates"][0]["model"] = long
        variants.append((b, "candidates[0].model"))
        b = job_body()
        b["prompts"][0]["id"] = long
        variants.append((b, "prompts[0].id"))
        for body, field in variants:
            r = client.post("/v1/jobs", json=body, headers={**caller.headers, "Idempotency-Key": long[:255]})
            assert r.status_code in (202, 422), (field, n, r.text)
            if r.status_code == 422:
                assert_problem(r, 422, field)
        dataset = {"name": long, "prompts": [{"id": long, "prompt": "a"}, {"prompt": "b"}]}
        r = client.post("/v1/datasets", json=dataset, headers=caller.headers)
        assert r.status_code in (201, 422), (n, r.text)
        for url in (f"/v1/jobs/{long}", f"/v1/rankings?student={long}", f"/v1/datasets/{long}"):
            r = client.get(url, headers=caller.headers)
            assert r.status_code in (200, 404, 422), (url[:40], r.text)


@pytest.mark.parametrize("n", [5, 5000, 200_000])
def test_an_oversized_scenario_list_is_refused(client: TestClient, caller: Caller, n: int) -> None:
    body = {"n_student": 1e8, "compute_flops": 1e21, "scenarios": ["best_case"] * n}
    problem = assert_problem(
        client.post("/v1/scaling-law/plan", json=body, headers=caller.headers), 422, "scenarios"
    )
    assert ("at most 4" if n <= 100_000 else "at most 100000") in problem["detail"]  # schema, then guard


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/scaling-law/predict", {"n_student": 1e8, "student_tokens": 1e9, "teacher_loss": 2.0,
                                     "coefficients": {"beta": 1e300}}),
        ("/v1/scaling-law/predict", {"n_student": 1e8, "student_tokens": 1e9, "teacher_params": 1e9,
                                     "teacher_tokens": 1e10, "coefficients": {"gamma": 1e300}}),
        ("/v1/scaling-law/plan", {"n_student": 1e9, "compute_flops": 1e21, "coefficients": {"beta": 1e300}}),
        ("/v1/scaling-law/plan", {"n_student": 1e9, "compute_flops": 1e21,
                                  "coefficients": {"rho": 1e300, "omega": 1e-300}}),
    ],
)  # fmt: skip
def test_an_overflowing_scaling_law_is_a_422(
    client: TestClient, caller: Caller, path: str, body: dict[str, Any]
) -> None:
    assert_problem(client.post(path, json=body, headers=caller.headers), 422, "coefficients")


def test_oversized_lists_and_strings_are_refused_before_validation(
    client: TestClient, caller: Caller
) -> None:
    """The guard's ceilings (grace_jobs.sanitize): reported at the list or string, naming it."""
    from grace_jobs.sanitize import MAX_ITEMS, MAX_TEXT

    body = job_body()
    body["prompts"] = [{"prompt": "a"}] * (MAX_ITEMS + 1)
    problem = assert_problem(client.post("/v1/jobs", json=body, headers=caller.headers), 422, "prompts")
    assert f"at most {MAX_ITEMS}" in problem["detail"]
    body = job_body()
    body["prompts"][1]["prompt"] = "x" * (MAX_TEXT + 1)
    assert_problem(client.post("/v1/jobs", json=body, headers=caller.headers), 422, "prompts[1].prompt")
    supplied = job_body()
    supplied["candidates"][1] = {"name": "given", "responses": {f"p{i}": ["r"] for i in range(MAX_ITEMS + 1)}}
    assert_problem(
        client.post("/v1/jobs", json=supplied, headers=caller.headers), 422, "candidates[1].responses"
    )
    _no_jobs(client, caller)


def _odd_but_valid() -> list[tuple[str, dict[str, Any]]]:
    """Jobs the schema accepts although little about them is ordinary."""
    odd: list[tuple[str, dict[str, Any]]] = []
    body = job_body()
    body["scoring"]["student_template"] = "\\boxed{{}} {prompt!r} {0} {prompt}\n"
    odd.append(("braces beside the placeholder", body))  # text: only the literal {prompt} is substituted
    body = job_body()
    for i, text in enumerate(
        ["שלום 👋🏽 {} ", "\u200b\u200f\ufeff", " \t\n x \r", "}}{{", "é" * 60, "\\x00"]
    ):
        body["prompts"][i]["prompt"] = text
    odd.append(("unicode, invisible and brace-only prompts", body))
    body = job_body()
    ids = [p["id"] for p in body["prompts"]]
    texts = [["\u200b", "."], ["\n\n?", "<|im_end|><|endoftext|>"], ["same", "same"]]
    responses = {pid: texts[i % len(texts)] for i, pid in enumerate(ids)}
    body["candidates"][1] = {"name": "odd text", "responses": responses}
    odd.append(("invisible, special-token and duplicate responses", body))
    body = job_body()
    responses = {pid: ["z" * 20_000, "ok"] for pid in ids}
    body["candidates"][1] = {"name": "too long", "responses": responses}
    odd.append(("responses longer than the student's context", body))
    body = job_body()
    body["candidates"][0].update(temperature=0.0, max_tokens=1)
    body["prompts"] = body["prompts"][:2]
    odd.append(("greedy single-token teacher on two prompts", body))
    return odd


@pytest.mark.parametrize(("case", "body"), _odd_but_valid(), ids=[c for c, _ in _odd_but_valid()])
def test_an_accepted_odd_job_ends_cleanly(
    client: TestClient,
    caller: Caller,
    settings: Settings,
    session_factory: sessionmaker[Session],
    case: str,
    body: dict[str, Any],
) -> None:
    """Succeeded, or failed with one of the engine's stable codes and a message; never a lost
    worker or an internal error."""
    accepted = client.post("/v1/jobs", json=body, headers=caller.headers)
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["id"]
    outcome = run_job(JobRunner(settings, session_factory), job_id)
    job = client.get(f"/v1/jobs/{job_id}", headers=caller.headers).json()
    assert outcome == job["status"], (case, outcome, job["status"])
    if job["status"] == "failed":
        stable = {cls.code for cls in (InvalidInput, ModelNotAllowed, ModelNotFound, UnsupportedModel)}
        assert job["error"]["code"] in stable, (case, job["error"])
        assert job["error"]["message"], case
    else:
        assert job["status"] == "succeeded", (case, job)
        assert {row["name"] for row in job["ranking"]} == {c["name"] for c in body["candidates"]}


@pytest.mark.parametrize(
    ("path", "change", "field"),
    [
        ("/v1/jobs", {"scoring": {"responses_per_prompt": True}}, "scoring.responses_per_prompt"),
        ("/v1/jobs", {"scoring": {"proj_dim": False}}, "scoring.proj_dim"),
        ("/v1/jobs", {"scoring": {"proj_dim": "64"}}, "scoring.proj_dim"),
        (
            "/v1/jobs",
            {"candidates": [{"name": "t", "model": "tutor", "temperature": "0.6"}]},
            "candidates[0].temperature",
        ),
        (
            "/v1/jobs",
            {"candidates": [{"name": "t", "model": "tutor", "max_tokens": 32.5}]},
            "candidates[0].max_tokens",
        ),
        ("/v1/jobs", {"student": 7}, "student"),
        ("/v1/jobs", {"prompts": [{"prompt": True}, {"prompt": "b"}]}, "prompts[0].prompt"),
    ],
)
def test_values_of_another_json_type_are_refused(
    client: TestClient, caller: Caller, path: str, change: dict[str, Any], field: str
) -> None:
    """The schema is strict, as the OpenAPI document says: a boolean is not a number, a string not
    an integer, a number not a string."""
    body = job_body()
    for key, value in change.items():
        body[key] = {**body[key], **value} if isinstance(value, dict) else value
    assert_problem(client.post(path, json=body, headers=caller.headers), 422, field)
    _no_jobs(client, caller)


@pytest.mark.parametrize(
    "body",
    [
        {"n_student": False, "student_tokens": 1e9, "teacher_loss": 2.0},
        {"n_student": 1e8, "student_tokens": True, "teacher_loss": 2.0},
        {"n_student": 1e8, "student_tokens": 1e9, "teacher_loss": "2.0"},
    ],
)
def test_scaling_law_inputs_of_another_json_type_are_refused(
    client: TestClient, caller: Caller, body: dict[str, Any]
) -> None:
    field = next(k for k, v in body.items() if isinstance(v, bool | str))
    assert_problem(client.post("/v1/scaling-law/predict", json=body, headers=caller.headers), 422, field)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/v1/jobs", {"GET", "POST"}),
        ("PUT", "/v1/jobs/some-id", {"GET"}),
        ("GET", "/v1/jobs/some-id/cancel", {"POST"}),
        ("POST", "/v1/rankings", {"GET"}),
        ("PATCH", "/v1/datasets", {"GET", "POST"}),
    ],
)
def test_a_405_lists_the_methods_the_path_has(
    client: TestClient, caller: Caller, method: str, path: str, allowed: set[str]
) -> None:
    response = client.request(method, path, headers=caller.headers)
    assert_problem(response, 405)
    assert set(response.headers["Allow"].replace(" ", "").split(",")) == allowed


@pytest.mark.parametrize("depth", [40, 990, 5_000, 200_000])
@pytest.mark.parametrize("path", ["/v1/scaling-law/plan", "/v1/jobs", "/v1/datasets"])
def test_deeply_nested_json_is_a_422(client: TestClient, caller: Caller, path: str, depth: int) -> None:
    """Past the guard's depth (grace_jobs.sanitize.MAX_DEPTH), and past where Python's parser recurses out."""
    raw = '{"n_student": 1e8, "compute_flops": 1e21, "prompts": ' + "[" * depth + "]" * depth + "}"
    problem = assert_problem(_post_raw(client, caller, path, raw), 422)
    assert "levels deep" in problem["detail"], problem
    assert problem["errors"][0]["field"].startswith("prompts" if depth < 900 else "body")
    _no_jobs(client, caller)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-8-sig"])
@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/datasets", "/v1/scaling-law/predict"])
def test_a_body_in_another_encoding_than_utf8_is_a_422(
    client: TestClient, caller: Caller, path: str, encoding: str
) -> None:
    """RFC 8259: JSON exchanged between systems is UTF-8 (and carries no byte order mark). Python's
    json.loads on bytes would quietly take the others."""
    body = {"/v1/datasets": {"prompts": [{"prompt": "a"}, {"prompt": "b"}]}, "/v1/jobs": job_body()}.get(
        path, {"n_student": 1e8, "student_tokens": 1e9, "teacher_loss": 2.0}
    )
    headers = {**caller.headers, "Content-Type": "application/json"}
    response = client.post(path, content=json.dumps(body).encode(encoding), headers=headers)
    assert_problem(response, 422, "body")
    _no_jobs(client, caller)


@pytest.mark.parametrize(
    ("scoring", "field"),
    [({"seed": -1}, "scoring.seed"), ({"seed": -(10**20)}, "scoring.seed")],
)
def test_a_negative_seed_is_refused_at_submission(
    client: TestClient, caller: Caller, scoring: dict[str, Any], field: str
) -> None:
    body = job_body()
    body["scoring"].update(scoring)
    assert_problem(client.post("/v1/jobs", json=body, headers=caller.headers), 422, field)
    _no_jobs(client, caller)


def test_supplied_responses_that_do_not_fit_the_prompts_are_refused_at_submission(
    client: TestClient, caller: Caller
) -> None:
    """Unknown prompt ids, a missing prompt, a wrong count: a 422 naming the candidate, inline or
    against a stored dataset, instead of a job that fails in the worker."""
    ids = [p["id"] for p in job_body()["prompts"]]
    full = {pid: ["a", "b"] for pid in ids}
    cases = [
        ({**full, **{f"q{i}": ["a", "b"] for i in range(5000)}}, "candidates[1].responses"),
        ({pid: texts for pid, texts in full.items() if pid != ids[0]}, "candidates[1].responses"),
        ({**full, ids[2]: ["a"]}, f"candidates[1].responses[{ids[2]}]"),
    ]
    dataset = client.post("/v1/datasets", json={"prompts": job_body()["prompts"]}, headers=caller.headers)
    assert dataset.status_code == 201, dataset.text
    for responses, field in cases:
        inline = job_body()
        inline["candidates"][1] = {"name": "given", "responses": responses}
        assert_problem(client.post("/v1/jobs", json=inline, headers=caller.headers), 422, field)
        stored = {**inline, "dataset_id": dataset.json()["id"]}
        del stored["prompts"]
        assert_problem(client.post("/v1/jobs", json=stored, headers=caller.headers), 422, field)
    _no_jobs(client, caller)


@pytest.mark.parametrize(("member", "field"), [("student", "student"), ("model", "candidates[0].model")])
def test_a_home_directory_reference_is_a_422_without_server_paths(
    client: TestClient, caller: Caller, settings: Settings, member: str, field: str
) -> None:
    """``~nosuchuser`` made pathlib raise RuntimeError, which was a 500."""
    body = job_body()
    if member == "student":
        body["student"] = "~nosuchuser"
    else:
        body["candidates"][0]["model"] = "~nosuchuser/tutor"
    doc = assert_problem(client.post("/v1/jobs", json=body, headers=caller.headers), 422, field)
    assert all(str(root) not in json.dumps(doc) for root in settings.model_roots)


@pytest.mark.parametrize("blank", ["", "   ", "\n\t"])
def test_a_blank_supplied_response_is_refused_naming_it(
    client: TestClient, caller: Caller, blank: str
) -> None:
    """A blank response ranked first and was exported as an empty assistant turn."""
    body = job_body()
    ids = [p["id"] for p in body["prompts"]]
    responses = {pid: ["four", "4"] for pid in ids}
    responses[ids[2]] = ["four", blank]
    body["candidates"][1] = {"name": "blank", "responses": responses}
    doc = assert_problem(client.post("/v1/jobs", json=body, headers=caller.headers), 422)
    assert doc["errors"][0]["field"] == f"candidates[1].responses[{ids[2]}][1]"


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("tut\u043er", "mixes scripts"),  # Cyrillic o
        ("tu\u200btor", "invisible"),  # zero-width space
        ("\u202etutor", "invisible"),  # right-to-left override
        ("tutor ", "whitespace"),
        ("tu\ttor", "invisible"),
    ],
)
def test_look_alike_candidate_names_are_refused(
    client: TestClient, caller: Caller, name: str, why: str
) -> None:
    body = job_body()
    body["candidates"][1]["name"] = name
    doc = assert_problem(
        client.post("/v1/jobs", json=body, headers=caller.headers), 422, "candidates[1].name"
    )
    assert why in doc["errors"][0]["message"]


def test_names_compare_in_nfc(client: TestClient, caller: Caller) -> None:
    """ "café" composed and decomposed are one name: two candidates so named are duplicates."""
    body = job_body()
    body["candidates"][0]["name"] = "caf\u00e9"
    body["candidates"][1]["name"] = "cafe\u0301"
    doc = assert_problem(client.post("/v1/jobs", json=body, headers=caller.headers), 422)
    assert "duplicate" in json.dumps(doc)


def test_the_amplification_request_is_refused_at_submission_naming_its_cost(
    client: TestClient, caller: Caller
) -> None:
    """3.8 KB that held a worker for 10 minutes: 16 prompts x 2 supplied candidates x 4 responses,
    1,000 splits and 2,000 subsamples. Refused before anything is stored, in well under a second
    of the API's time; the same job at the defaults is accepted."""
    prompts = [{"id": f"p{i}", "prompt": f"What is {i} + {i}?"} for i in range(16)]
    texts = ["four", "4", "It is 4.", "2 + 2 = 4"]
    candidates = [{"name": n, "responses": {p["id"]: texts for p in prompts}} for n in ("a", "b")]
    body = {"student": "student", "candidates": candidates, "prompts": prompts}
    heavy = {
        **body,
        "scoring": {"responses_per_prompt": 4, "proj_dim": 64, "n_splits": 1000, "bootstrap": 2000},
    }
    started = time.perf_counter()
    refused = client.post("/v1/jobs", json=heavy, headers=caller.headers)
    took = time.perf_counter() - started
    doc = assert_problem(refused, 422, "scoring")
    message = doc["errors"][0]["message"]
    assert "CPU-seconds" in message
    assert "n_splits 1000" in message
    assert "bootstrap 2000" in message
    assert took < 5.0  # generous on a loaded machine; nothing is computed
    assert client.get("/v1/jobs", params={"limit": 100}, headers=caller.headers).json()["data"] == []
    light = {**body, "scoring": {"responses_per_prompt": 4, "proj_dim": 64}}
    assert client.post("/v1/jobs", json=light, headers=caller.headers).status_code == 202
