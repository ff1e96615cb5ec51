"""/v1/scaling-law (synchronous) and influence jobs through a real worker process."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from grace_engine.models.candidates import Candidate
from grace_engine.models.data import Prompt, ReferenceExample, clean_solution
from grace_engine.models.tiny_models import TinyModels, gsm8k_records
from grace_engine.pipelines.config import ScoringConfig
from grace_engine.pipelines.context import EngineContext
from grace_engine.pipelines.influence import InfluenceInputs, InfluenceSpec, run_influence
from grace_engine.science import scaling
from grace_infra.settings import Settings
from grace_jobs.policy import policy_from
from tests.service.conftest import Caller, assert_problem, job_body
from tests.service.helpers import assert_fanned_out, succeeded_through_worker


def test_predict_round_trip(client: TestClient, caller: Caller) -> None:
    r = client.post(
        "/v1/scaling-law/predict",
        json={"n_student": 1e9, "student_tokens": 2e10, "teacher_loss": 2.0},
        headers=caller.headers,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["student_loss"] == pytest.approx(2.276811, abs=1e-6)
    assert body["supervised_loss"] == pytest.approx(2.374692, abs=1e-6)
    assert body["distillation_helps"] is True
    assert body["coefficients"]["c1"] == 522.6
    assert "one pretraining setup" in body["coefficients_source"]
    by_size = client.post(
        "/v1/scaling-law/predict",
        json={
            "n_student": 1e9,
            "student_tokens": 2e10,
            "teacher_params": 7e9,
            "teacher_tokens": 2e12,
            "coefficients": {"E": 1.3},
        },
        headers=caller.headers,
    ).json()
    assert by_size["teacher_loss"] == pytest.approx(scaling.supervised_loss(7e9, 2e12, {"E": 1.3}))
    assert by_size["coefficients"]["E"] == 1.3


def test_plan_round_trip(client: TestClient, caller: Caller) -> None:
    r = client.post(
        "/v1/scaling-law/plan", json={"n_student": 1e9, "compute_flops": 1e21}, headers=caller.headers
    )
    assert r.status_code == 200, r.text
    plans = {p["scenario"]: p for p in r.json()["plans"]}
    assert set(plans) == set(scaling.SCENARIOS)
    for name, p in plans.items():
        engine = scaling.plan(1e9, 1e21, name)  # type: ignore[arg-type]
        assert p["student_loss"] == pytest.approx(engine.student_loss, rel=1e-12)
        assert p["flops_used"] == pytest.approx(1e21, rel=1e-6)
    assert plans["best_case"]["teacher_params"] is None
    one = client.post(
        "/v1/scaling-law/plan",
        json={
            "n_student": 1e9,
            "compute_flops": 1e21,
            "scenarios": ["teacher_inference"],
            "coefficients": {"c0": 3.0},
        },
        headers=caller.headers,
    ).json()["plans"]
    assert len(one) == 1
    assert one[0]["student_loss"] != pytest.approx(plans["teacher_inference"]["student_loss"], rel=1e-4)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("predict", {"n_student": 0, "student_tokens": 1e9, "teacher_loss": 2.0}, "n_student"),
        ("predict", {"n_student": 1e9, "student_tokens": 1e9, "teacher_loss": 1.0}, "teacher_loss"),
        ("predict", {"n_student": 1e9, "student_tokens": 1e9}, "body"),
        (
            "predict",
            {"n_student": 1e9, "student_tokens": 1e9, "teacher_loss": 2, "coefficients": {"alpha": -1}},
            "coefficients.alpha",
        ),
        ("plan", {"n_student": 1e9, "compute_flops": 1e21, "scenarios": ["cheap"]}, "scenarios[0]"),
        ("plan", {"n_student": 1e9, "compute_flops": 1e10}, "compute_flops"),
        ("plan", {"n_student": 1e9, "compute_flops": 1e21, "coefficients": {"zeta": 1}}, "coefficients"),
    ],
)
def test_bad_scaling_input_is_422_with_the_field(
    client: TestClient, caller: Caller, path: str, body: dict[str, Any], field: str
) -> None:
    assert_problem(client.post(f"/v1/scaling-law/{path}", json=body, headers=caller.headers), 422, field)


def test_scaling_needs_a_key(client: TestClient) -> None:
    assert_problem(client.post("/v1/scaling-law/plan", json={"n_student": 1e9, "compute_flops": 1e21}), 401)


def _validation() -> list[dict[str, str]]:
    return [
        {"prompt": r["question"], "solution": clean_solution(r["answer"])} for r in gsm8k_records()[30:36]
    ]


def test_influence_job_through_a_worker(
    client: TestClient,
    caller: Caller,
    new_caller: Callable[[], Caller],
    settings: Settings,
    tiny: TinyModels,
    tmp_path: Path,
) -> None:
    body = {**job_body(), "validation": _validation(), "method": "projected", "keep_fraction": 0.5}
    body["scoring"] = {"responses_per_prompt": 2, "proj_dim": 1024}
    job = succeeded_through_worker(client, caller, settings, tmp_path / "worker.log", "/v1/influence", body)
    job_id = job["id"]
    assert job["kind"] == "influence"
    assert_fanned_out(job, [c["name"] for c in body["candidates"]], {"generate"})
    result = client.get(f"/v1/jobs/{job_id}/influence", headers=caller.headers).json()
    assert result["method"] == "projected"
    assert len(result["responses"]) == 24
    assert {c["candidate"] for c in result["per_candidate"]} == {"tutor", "noise"}
    assert all(r["influence"] > 0 for r in result["selected"])
    assert len(result["selected"]) <= 12
    # The same computation in-process gives the same numbers.
    engine = run_influence(
        InfluenceInputs(
            [Prompt(p["id"], p["prompt"], p["answer"]) for p in body["prompts"]],
            [Candidate(**c) for c in body["candidates"]],
            "student",
            reference=[ReferenceExample(v["prompt"], v["solution"]) for v in body["validation"]],
        ),
        InfluenceSpec(scoring=ScoringConfig(responses_per_prompt=2, proj_dim=1024)),
        EngineContext(policy=policy_from(settings)),
    )
    got = {(r["candidate"], r["prompt_id"], r["index"]): r["influence"] for r in result["responses"]}
    for r in engine.responses:
        assert got[(r.candidate, r.prompt_id, r.index)] == pytest.approx(r.influence, rel=1e-6, abs=1e-9)
    # Tenant isolation and the right results endpoint for each kind.
    stranger = new_caller()
    assert_problem(client.get(f"/v1/jobs/{job_id}/influence", headers=stranger.headers), 404)
    assert_problem(client.get(f"/v1/jobs/{job_id}", headers=stranger.headers), 404)
    assert_problem(client.get(f"/v1/jobs/{job_id}/ranking", headers=caller.headers), 409)
    score_job = client.post("/v1/jobs", json=job_body(), headers=caller.headers).json()["id"]
    assert_problem(client.get(f"/v1/jobs/{score_job}/influence", headers=caller.headers), 409)


def test_influence_job_validation(client: TestClient, caller: Caller) -> None:
    body = {**job_body(), "validation": [], "method": "projected"}
    assert_problem(client.post("/v1/influence", json=body, headers=caller.headers), 422, "validation")
    body = {**job_body(), "validation": _validation(), "method": "guess"}
    assert_problem(client.post("/v1/influence", json=body, headers=caller.headers), 422, "method")
