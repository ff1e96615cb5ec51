"""/v1/validations: a validation job through a real worker, its result, and its input checks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from grace_engine.models.candidates import Candidate
from grace_engine.models.data import Prompt, ReferenceExample, clean_solution, reference_answer
from grace_engine.models.tiny_models import TinyModels, gsm8k_records
from grace_engine.pipelines.config import ScoringConfig
from grace_engine.pipelines.context import EngineContext
from grace_engine.pipelines.distillation import DistillConfig
from grace_engine.pipelines.validation import (
    ValidationConfig,
    ValidationInputs,
    ValidationSpec,
    run_validation,
)
from grace_infra.settings import Settings
from grace_jobs.kinds.validation import ValidationCreate
from grace_jobs.policy import policy_from
from tests.service.conftest import Caller, assert_problem, job_body
from tests.service.helpers import assert_fanned_out, succeeded_through_worker


def _eval() -> list[dict[str, str]]:
    return [
        {
            "prompt": r["question"],
            "solution": clean_solution(r["answer"]),
            "answer": reference_answer(r["answer"]),
        }
        for r in gsm8k_records("gsm8k_eval.jsonl")[:6]
    ]


def _body(**overrides: Any) -> dict[str, Any]:
    body = {
        **job_body(),
        "eval": _eval(),
        "distill": {"method": "full", "max_steps": 3, "batch_size": 4, "learning_rate": 1e-3},
        "train_seeds": [0, 1],  # several, as by default (the last test: the defaults are the engine's)
        "eval_max_tokens": 8,
    }
    body.update(overrides)
    return body


def test_validation_job_through_a_worker(
    client: TestClient,
    caller: Caller,
    new_caller: Callable[[], Caller],
    settings: Settings,
    tiny: TinyModels,
    tmp_path: Path,
) -> None:
    body = _body()
    log = tmp_path / "worker.log"
    job = succeeded_through_worker(client, caller, settings, log, "/v1/validations", body, timeout=600)
    job_id = job["id"]
    assert job["kind"] == "validation"
    # Each candidate's unit generated, stored its gradients and distilled the student.
    # A candidate's unit scores it too (its GRACE and its uncertainty draws), each its own stage.
    assert_fanned_out(
        job,
        [c["name"] for c in body["candidates"]],
        {"generate", "gradients", "score", "uncertainty", "distil"},
    )
    steps = 3 * 2  # max_steps per seed, both seeds
    assert job["progress"]["candidates"]["tutor"]["distil"] == {"done": steps, "total": steps}
    last = job["units"][-1]["progress"]  # it distilled no candidate again
    assert not [name for name, stages in last.items() if stages.get("distil")], last
    assert [r["name"] for r in job["ranking"]] == ["tutor", "noise"]
    result = client.get(f"/v1/jobs/{job_id}/validation", headers=caller.headers).json()
    assert set(result["candidates"]) == {"tutor", "noise"}
    for c in result["candidates"].values():
        assert c["outcome"]["eval_nll"] > 0
        assert 0 <= c["outcome"]["accuracy"] <= 1
        assert c["training"][0]["steps"] == 3
    assert set(result["correlations"]) >= {"grace", "g_norm", "g_vendi", "student_nll", "teacher_accuracy"}
    assert result["protocol"]["distillation"]["max_steps"] == 3
    assert "few_candidates" in {w["code"] for w in result["warnings"]}
    # The same computation in-process gives the same outcomes (threads may differ: float rounding).
    engine = run_validation(
        ValidationInputs(
            [Prompt(p["id"], p["prompt"], p["answer"]) for p in body["prompts"]],
            [Candidate(**c) for c in body["candidates"]],
            "student",
            eval_set=[ReferenceExample(**e) for e in body["eval"]],
        ),
        ValidationSpec(
            scoring=ScoringConfig(responses_per_prompt=2, proj_dim=64),
            validation=ValidationConfig(
                distill=DistillConfig(method="full", max_steps=3, batch_size=4, learning_rate=1e-3),
                train_seeds=(0, 1),
                eval_max_tokens=8,
            ),
        ),
        EngineContext(policy=policy_from(settings)),
    )
    for name, v in engine.candidates.items():
        assert result["candidates"][name]["outcome"]["eval_nll"] == pytest.approx(
            v.outcome.eval_nll, rel=1e-4
        )
    assert result["untrained"]["eval_nll"] == pytest.approx(engine.untrained.eval_nll, rel=1e-6)
    # Tenant isolation and the right results endpoint for each kind.
    stranger = new_caller()
    assert_problem(client.get(f"/v1/jobs/{job_id}/validation", headers=stranger.headers), 404)
    assert_problem(client.get(f"/v1/jobs/{job_id}/ranking", headers=caller.headers), 409)
    score_job = client.post("/v1/jobs", json=job_body(), headers=caller.headers).json()["id"]
    assert_problem(client.get(f"/v1/jobs/{score_job}/validation", headers=caller.headers), 409)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"eval": []}, "eval"),
        ({"eval": [{"prompt": "q", "solution": ""}]}, "eval[0].solution"),
        ({"distill": {"method": "adapter"}}, "distill.method"),
        ({"distill": {"epochs": 0}}, "distill.epochs"),
        ({"distill": {"batch_size": 10_000}}, "distill.batch_size"),
        ({"distill": {"max_steps": 10**9}}, "distill.max_steps"),
        ({"train_seeds": [1, 1]}, "train_seeds"),
        ({"train_seeds": []}, "train_seeds"),
        ({"train_seeds": [0, -3]}, "train_seeds[1]"),
        ({"outcome": "accuracy", "eval": [{"prompt": "q", "solution": "s"}]}, "eval[0].answer"),
        ({"eval_max_tokens": 0}, "eval_max_tokens"),
    ],
)
def test_bad_validation_requests_name_the_field(
    client: TestClient, caller: Caller, overrides: dict[str, Any], field: str
) -> None:
    assert_problem(
        client.post("/v1/validations", json=_body(**overrides), headers=caller.headers), 422, field
    )


def test_a_request_that_omits_the_training_settings_gets_the_engines_defaults() -> None:
    """What a client leaves out is what `grace validate` and the engine use (seeds, epochs, LoRA)."""
    body = _body()
    for omitted in ("distill", "train_seeds"):
        body.pop(omitted)
    got = ValidationCreate.model_validate(body).to_validation()
    assert got.train_seeds == ValidationConfig().train_seeds == (0, 1, 2)
    assert got.distill == DistillConfig()
