"""Distillation influence: the three methods agree, and the sign predicts a real SGD step."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch

from grace_engine.errors import InvalidInput
from grace_engine.models.batches import collate
from grace_engine.models.data import (
    Prompt,
    ReferenceExample,
    StudentExample,
    StudentFormat,
    clean_solution,
    encode_for_student,
    read_prompts,
)
from grace_engine.models.generation import GenerationSettings, TransformersBackend
from grace_engine.models.loading import ModelPolicy, load_causal_lm, load_tokenizer, resolve_model
from grace_engine.models.tiny_models import TinyModels, gsm8k_records
from grace_engine.progress import ProgressEvent
from grace_engine.science.gradient_space import GradientSpace
from grace_engine.science.gradients import describe_space, exact_flat_gradients
from grace_engine.science.influence import InfluenceResult, influence
from grace_engine.science.ranking import spearman


@pytest.fixture(scope="module")
def fixture(tiny: TinyModels) -> dict[str, Any]:
    """The tiny student in float64, 6 prompts x 2 responses from four sources, 8 validation solutions."""
    policy = ModelPolicy.from_paths([tiny.root])
    student_src = resolve_model(str(tiny.student), policy, field="student")
    model = load_causal_lm(student_src, policy).double()
    tok = load_tokenizer(student_src, policy)
    prompts = read_prompts(tiny.prompts_file)[:6]
    settings = GenerationSettings(m=2, temperature=0.8, top_p=1.0, max_tokens=64, seed=0)
    responses = {}
    for name in ("tutor", "parrot", "noise"):
        src = resolve_model(str(tiny.teachers[name]), policy, field=name)
        responses[name] = (
            TransformersBackend()
            .generate(load_causal_lm(src, policy), load_tokenizer(src, policy), prompts, settings)
            .texts
        )
    by_id = {f"gsm8k-{r['idx']}": r for r in gsm8k_records()}
    responses["gold"] = [[clean_solution(by_id[p.id]["answer"])] * 2 for p in prompts]
    validation = [
        ReferenceExample(r["question"], clean_solution(r["answer"])) for r in gsm8k_records()[30:38]
    ]
    events: dict[str, list[ProgressEvent]] = {}
    results = {
        m: influence(
            model, tok, prompts, responses, validation, method=m, progress=events.setdefault(m, []).append
        )
        for m in ("exact", "finite_difference", "projected")
    }
    return {
        "events": events,
        "model": model,
        "tok": tok,
        "prompts": prompts,
        "responses": responses,
        "validation": validation,
        "results": results,
    }


def _values(result: InfluenceResult) -> np.ndarray:
    return np.array([r.influence for r in result.responses])


def test_finite_difference_matches_exact_in_float64(fixture: dict[str, Any]) -> None:
    exact, fd = _values(fixture["results"]["exact"]), _values(fixture["results"]["finite_difference"])
    rel = np.linalg.norm(fd - exact) / np.linalg.norm(exact)
    print(f"finite difference vs exact: relative error {rel:.2e}")
    assert rel <= 1e-3
    assert np.all(np.sign(fd) == np.sign(exact)) or rel < 1e-4


def test_projected_ranks_like_exact(fixture: dict[str, Any]) -> None:
    exact, proj = _values(fixture["results"]["exact"]), _values(fixture["results"]["projected"])
    rho = spearman(proj, exact)
    print(f"projected (d=2048) vs exact: Spearman {rho:.3f}")
    assert rho >= 0.9
    # Same units as exact (the D/d rescaling): magnitudes agree within JL error.
    assert np.linalg.norm(proj) == pytest.approx(np.linalg.norm(exact), rel=0.2)


def _validation_loss(model: torch.nn.Module, val: list[StudentExample]) -> float:
    """Mean of the examples' losses, as transformers computes each alone with labels."""
    with torch.no_grad():
        return float(
            np.mean(
                [
                    model(input_ids=torch.tensor([e.input_ids]), labels=torch.tensor([e.labels])).loss.item()
                    for e in val
                ]
            )
        )


def test_sign_predicts_one_sgd_step_on_the_response(fixture: dict[str, Any]) -> None:
    """eta = 1e-3: the validation loss after a step on response i moves by about -eta * influence_i."""
    model, tok = fixture["model"], fixture["tok"]
    fmt = StudentFormat()
    layout = describe_space(model, GradientSpace())
    val = [encode_for_student(tok, v.prompt, v.solution, fmt) for v in fixture["validation"]]
    before = _validation_loss(model, val)
    prompts: list[Prompt] = fixture["prompts"]
    index = {p.id: i for i, p in enumerate(prompts)}
    agree = measurable = 0
    for r in fixture["results"]["exact"].responses:
        p = prompts[index[r.prompt_id]]
        example = encode_for_student(
            tok, p.prompt, fixture["responses"][r.candidate][index[r.prompt_id]][r.index], fmt
        )
        grad = exact_flat_gradients(model, layout, collate([example], tok.pad_token_id))[0][0]
        saved = [q.detach().clone() for q in layout.parameters]
        with torch.no_grad():
            for q, g in zip(
                layout.parameters, torch.split(grad, [q.numel() for q in layout.parameters]), strict=True
            ):
                q.sub_(1e-3 * g.view_as(q))
        after = _validation_loss(model, val)
        with torch.no_grad():
            for q, s in zip(layout.parameters, saved, strict=True):
                q.copy_(s)
        if abs(after - before) > 1e-12:
            measurable += 1
            agree += np.sign(before - after) == np.sign(r.influence)
    print(f"sign agreement {agree}/{measurable}")
    assert measurable >= 40
    assert agree / measurable >= 0.9


def test_views_of_the_result(fixture: dict[str, Any]) -> None:
    result: InfluenceResult = fixture["results"]["exact"]
    per = result.per_candidate()
    assert [c.mean for c in per] == sorted((c.mean for c in per), reverse=True)
    assert {c.candidate for c in per} == {"tutor", "parrot", "noise", "gold"}
    for c in per:
        own = [r.influence for r in result.responses if r.candidate == c.candidate]
        assert c.mean == pytest.approx(np.mean(own))
        assert c.share_positive == pytest.approx(np.mean(np.asarray(own) > 0))
    best = result.best_per_prompt()
    for r in result.responses:
        top = max(
            (x for x in result.responses if x.candidate == r.candidate and x.prompt_id == r.prompt_id),
            key=lambda x: x.influence,
        )
        assert best[r.candidate][r.prompt_id] == top.index
    kept = result.select(drop_negative=True)
    assert all(r.influence > 0 for r in kept)
    assert len(kept) == sum(r.influence > 0 for r in result.responses)
    half = result.select(keep_fraction=0.5, drop_negative=False)
    assert len(half) == len(result.responses) // 2
    assert min(r.influence for r in half) >= max(r.influence for r in result.responses if r not in half)
    assert json.loads(json.dumps(result.to_dict()))["method"] == "exact"


def test_every_method_reports_its_validation_and_response_stages(fixture: dict[str, Any]) -> None:
    """No long stage is silent: the validation gradient, then the responses' (for finite
    differences, the rows of its three forward passes), each climbing to its total."""
    n_val, n_resp = (
        len(fixture["validation"]),
        sum(len(g) for groups in fixture["responses"].values() for g in groups),
    )
    rows = {"exact": n_resp, "projected": n_resp, "finite_difference": 3 * n_resp}
    for method, events in fixture["events"].items():
        stages = [e.stage for e in events]
        assert stages == sorted(stages, key=["validation", "gradients"].index), method
        for stage, total in (("validation", n_val), ("gradients", rows[method])):
            seen = [e for e in events if e.stage == stage]
            assert {e.total for e in seen} == {total}, (method, stage)
            done = [e.done for e in seen]
            assert done == sorted(done), (method, stage, done)
            assert done[-1] == total, (method, stage, done)
            if method == "exact":  # row by row
                assert done == list(range(1, total + 1)), (stage, done)
            if method == "finite_difference" and stage == "gradients":  # after each of its passes
                assert {n_resp, 2 * n_resp} <= set(done), done
            assert all(e.candidate is None for e in seen)


def test_bad_input(fixture: dict[str, Any]) -> None:
    args = (fixture["model"], fixture["tok"], fixture["prompts"], fixture["responses"])
    with pytest.raises(InvalidInput) as err:
        influence(*args, [], method="exact")
    assert err.value.field == "validation"
    with pytest.raises(InvalidInput) as err:
        influence(*args, fixture["validation"], method="guess")  # type: ignore[arg-type]
    assert err.value.field == "method"
    with pytest.raises(InvalidInput) as err:
        influence(*args, fixture["validation"], method="finite_difference", space=GradientSpace("lora"))
    assert err.value.field == "method"
    with pytest.raises(InvalidInput) as err:
        fixture["results"]["exact"].select(keep_fraction=1.5)
    assert err.value.field == "keep_fraction"
