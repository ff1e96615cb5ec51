"""The cost model (grace_engine.science.cost) as a job's request reads it: which stages a job has,
how each scales with the settings that drive it, and models whose size is unknown."""

from __future__ import annotations

from typing import Any

import pytest

from grace_engine.models.data import Prompt
from grace_engine.science import cost
from grace_jobs.kinds.score import Score
from grace_jobs.kinds.validation import Validation, ValidationCreate
from grace_jobs.requests import JobCreate

PROMPTS = [Prompt(f"p{i}", "x" * 400) for i in range(8)]  # 100 tokens each
SIZES = {"student": 1_000_000, "teacher": 10_000_000}


def _body(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "student": "student",
        "prompts": [{"id": p.id, "prompt": p.prompt} for p in PROMPTS],
        "candidates": [
            {"name": "gen", "model": "teacher", "max_tokens": 50},
            {"name": "given", "responses": {p.id: ["y" * 200, "y" * 200] for p in PROMPTS}},
        ],
        "scoring": {"responses_per_prompt": 2, "proj_dim": 16, "n_splits": 5, "bootstrap": 0},
    }
    body.update(over)
    return body


def test_a_scoring_job_costs_its_generation_gradients_and_splits() -> None:
    job = JobCreate.model_validate(_body())
    work = Score().work(job, PROMPTS, SIZES.get)
    # 8 prompts x 2 responses x 50 new tokens by a 10M teacher, plus its passes over the prompts
    generation = cost.decode_seconds(10e6, 800) + cost.pass_seconds(10e6, 2 * 800, backward=False)
    assert work.seconds["generation"] == pytest.approx(generation)
    # the student reads each response after its prompt: per candidate 2 x 800 prompt tokens, and
    # 800 new (8 x 2 x 50, at most) or 800 given (16 x 200 characters)
    assert work.seconds["gradients"] == pytest.approx(cost.pass_seconds(1e6, 2 * (1600 + 800), backward=True))
    one = cost.candidate_scoring_seconds(prompts=8, m=2, d=16, n_splits=5, bootstrap=0)
    assert work.seconds["scoring"] == pytest.approx(2 * one)
    assert work.total == pytest.approx(sum(work.seconds.values()))
    assert work.unknown == ()


def test_a_model_of_unknown_size_leaves_its_stage_out_and_says_so() -> None:
    job = JobCreate.model_validate(_body())
    work = Score().work(job, PROMPTS, {"student": 1_000_000}.get)
    assert "generation" not in work.seconds
    assert work.unknown == ("candidates[0].model",)
    assert Score().work(job, PROMPTS, lambda _: None).unknown == ("candidates[0].model", "student")


def test_predictors_without_grace_cost_no_splits() -> None:
    job = JobCreate.model_validate(_body(scoring={"responses_per_prompt": 2, "predictors": ["student_nll"]}))
    assert "scoring" not in Score().work(job, PROMPTS, SIZES.get).seconds


def test_validation_adds_a_distillation_per_candidate_and_seed_and_their_evaluations() -> None:
    eval_set = [{"prompt": "q" * 40, "solution": "s" * 40, "answer": 1}] * 4

    def work(problems: list[dict[str, Any]] = eval_set, **over: Any) -> cost.WorkEstimate:
        job = ValidationCreate.model_validate(_body(eval=problems, **over))
        return Validation().work(job, PROMPTS, SIZES.get)

    one_seed, three_seeds = work(train_seeds=[0]), work(train_seeds=[0, 1, 2])
    assert three_seeds.seconds["distillation"] == pytest.approx(3 * one_seed.seconds["distillation"])
    # each distilled student is evaluated, and the untrained one once: 2 + 1 against 6 + 1
    assert three_seeds.seconds["evaluation"] == pytest.approx(7 / 3 * one_seed.seconds["evaluation"])
    assert three_seeds.seconds["scoring"] == one_seed.seconds["scoring"]
    longer = work(train_seeds=[0], distill={"max_steps": 100})
    assert longer.seconds["distillation"] > one_seed.seconds["distillation"]
    assert work(train_seeds=[0], mixed=True).seconds["distillation"] == pytest.approx(
        1.5 * one_seed.seconds["distillation"]
    )
    likelihoods_only = work(train_seeds=[0], accuracy=False).seconds["evaluation"]
    assert likelihoods_only < one_seed.seconds["evaluation"]
    # greedy decoding runs only when every eval problem has an answer
    partly = [*eval_set[:3], {"prompt": "q" * 40, "solution": "s" * 40}]
    assert work(partly, train_seeds=[0]).seconds["evaluation"] == pytest.approx(likelihoods_only)


@pytest.mark.parametrize(
    ("examples", "batch", "epochs", "max_steps", "steps"),
    [(100, 8, 3.0, None, 39), (100, 8, 0.5, None, 7), (3, 8, 0.1, None, 1), (100, 8, 3.0, 5, 5)],
)
def test_training_steps_count_whole_batches_per_epoch(
    examples: int, batch: int, epochs: float, max_steps: int | None, steps: int
) -> None:
    assert cost.training_steps(examples, batch_size=batch, epochs=epochs, max_steps=max_steps) == steps


def test_the_estimate_describes_its_largest_stage_first() -> None:
    work = cost.WorkEstimate({"gradients": 10.0, "scoring": 1234.0}, {})
    assert work.largest == "scoring"
    assert work.describe() == "about 1,244 CPU-seconds (scoring 1,234, gradients 10)"
