"""Validation jobs: correlation against scipy, distillation, evaluation, and the job on the tiny models."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from scipy import stats

from grace_cli.main import main
from grace_cli.report import format_validation
from grace_engine.errors import InvalidInput
from grace_engine.memory import GB, PLANNED_SHARE, MemoryBudget, module_bytes, resident_bytes
from grace_engine.models.candidates import Candidate
from grace_engine.models.data import (
    ReferenceExample,
    StudentExample,
    StudentFormat,
    clean_solution,
    encode_for_student,
    read_prompts,
    read_references,
)
from grace_engine.models.loading import ModelCache, ModelPolicy, resolve_model
from grace_engine.models.tiny_models import TinyModels, gsm8k_records
from grace_engine.pipelines.config import ScoringConfig
from grace_engine.pipelines.context import EngineContext
from grace_engine.pipelines.distillation import (
    DistillConfig,
    _trainable_copy,
    distil,
    micro_batch,
    training_cost,
)
from grace_engine.pipelines.validation import (
    CandidateValidation,
    ValidationConfig,
    ValidationInputs,
    ValidationSpec,
    correlate,
    kendall_tau_b,
    run_validation,
    validate_candidate,
)
from grace_engine.progress import ProgressEvent
from grace_engine.science import caveats
from grace_engine.science.evaluation import evaluate
from grace_engine.stores.gradient_store import DirectoryGradientStore
from grace_engine.stores.response_store import DirectoryResponseStore


def _named(values: list[float]) -> dict[str, float]:
    return {f"c{i}": v for i, v in enumerate(values)}


@pytest.mark.parametrize("seed", range(5))
def test_spearman_and_kendall_match_scipy_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    score = np.round(rng.normal(size=9), 1)  # rounding makes ties
    outcome = np.round(score + rng.normal(scale=0.7, size=9), 1)
    got = correlate(
        "grace",
        _named(score.tolist()),
        _named(outcome.tolist()),
        lower_score_is_better=True,
        higher_outcome_is_better=False,
    )
    # Lower score predicts lower (better) eval NLL: the signs cancel, scipy sees the raw values.
    assert got.spearman == pytest.approx(stats.spearmanr(score, outcome).statistic, abs=1e-12)
    assert got.kendall == pytest.approx(stats.kendalltau(score, outcome).statistic, abs=1e-12)
    assert kendall_tau_b(score, outcome) == pytest.approx(stats.kendalltau(score, outcome).statistic)


def test_signs_make_plus_one_a_perfect_prediction() -> None:
    grace = {"a": 1.0, "b": 2.0, "c": 3.0}  # lower is better: a predicted best
    nll = {"a": 0.5, "b": 0.7, "c": 0.9}  # lower is better: a really best
    acc = {"a": 0.9, "b": 0.5, "c": 0.1}  # higher is better: a really best
    assert (
        correlate("g", grace, nll, lower_score_is_better=True, higher_outcome_is_better=False).spearman == 1
    )
    assert correlate("g", grace, acc, lower_score_is_better=True, higher_outcome_is_better=True).kendall == 1
    vendi = {"a": 3.0, "b": 2.0, "c": 1.0}  # higher is better
    assert (
        correlate("v", vendi, acc, lower_score_is_better=False, higher_outcome_is_better=True).spearman == 1
    )
    assert (
        correlate("v", vendi, nll, lower_score_is_better=True, higher_outcome_is_better=False).spearman == -1
    )


def test_regret_is_the_top_picks_shortfall() -> None:
    grace = {"strong": 2.0, "right": 3.0, "weak": 5.0}  # GRACE picks "strong"
    acc = {"strong": 0.40, "right": 0.50, "weak": 0.10}
    got = correlate("grace", grace, acc, lower_score_is_better=True, higher_outcome_is_better=True)
    assert (got.top_pick, got.best) == ("strong", "right")
    assert got.regret == pytest.approx(0.10)
    assert got.regret_rel == pytest.approx(0.10 / 0.50)
    nll = {"strong": 1.2, "right": 1.0, "weak": 2.0}
    got = correlate("grace", grace, nll, lower_score_is_better=True, higher_outcome_is_better=False)
    assert got.regret == pytest.approx(0.2)  # in nats/token, always >= 0
    perfect = correlate("g", grace, {"strong": 0.9, "right": 0.5, "weak": 0.1}, lower_score_is_better=True,
                        higher_outcome_is_better=True)  # fmt: skip
    assert perfect.regret == perfect.regret_rel == 0


def test_the_bootstrap_interval_is_seeded_and_brackets_a_clear_signal() -> None:
    rng = np.random.default_rng(1)
    score = rng.normal(size=12)
    outcome = score + rng.normal(scale=0.3, size=12)
    kw = {"lower_score_is_better": False, "higher_outcome_is_better": True}
    a = correlate("s", _named(score.tolist()), _named(outcome.tolist()), seed=3, **kw)
    b = correlate("s", _named(score.tolist()), _named(outcome.tolist()), seed=3, **kw)
    c = correlate("s", _named(score.tolist()), _named(outcome.tolist()), seed=4, **kw)
    assert a.ci95 == b.ci95
    assert a.ci95 != c.ci95
    assert a.ci95[0] <= a.spearman <= a.ci95[1]
    assert 0.0 < a.ci95[0] < a.ci95[1] <= 1.0  # rho = 0.84 on 12 candidates: clearly above 0
    assert a.p_value is not None
    assert a.p_value < 0.01
    assert a.distinguishable is True
    assert a.critical_rho == pytest.approx(0.503, abs=1e-3)


def test_a_correlation_below_the_critical_rho_is_not_distinguishable_from_chance() -> None:
    kw = {"lower_score_is_better": False, "higher_outcome_is_better": True}
    # rho = 0.679 on 7 candidates: sizeable, yet below the 5% critical 0.714
    c = correlate("s", _named([1, 2, 3, 4, 5, 6, 7]), _named([4, 1, 2, 3, 7, 5, 6]), **kw)
    assert c.spearman is not None
    assert c.spearman < 0.714
    assert c.critical_rho == pytest.approx(0.714, abs=1e-3)
    assert c.p_value is not None
    assert c.p_value > 0.05
    assert c.distinguishable is False


def test_bad_input_names_the_field() -> None:
    kw = {"lower_score_is_better": True, "higher_outcome_is_better": True}
    with pytest.raises(InvalidInput) as err:
        correlate("g", {"a": 1.0, "b": 2.0}, {"a": 1.0}, **kw)
    assert err.value.field == "outcomes"
    with pytest.raises(InvalidInput) as err:
        correlate("g", {"a": 1.0}, {"a": 1.0}, **kw)
    assert err.value.field == "candidates"
    with pytest.raises(InvalidInput):
        correlate("g", {"a": 1.0, "b": float("nan")}, {"a": 1.0, "b": 2.0}, **kw)


def test_a_constant_side_has_no_correlation_but_a_regret() -> None:
    kw = {"lower_score_is_better": True, "higher_outcome_is_better": True}
    flat = correlate("g", {"a": 1.0, "b": 2.0, "c": 3.0}, {"a": 0.0, "b": 0.0, "c": 0.0}, **kw)
    assert flat.spearman is flat.kendall is flat.ci95 is None
    assert flat.regret == 0
    assert flat.regret_rel == 0
    blind = correlate("g", {"a": 1.0, "b": 1.0, "c": 1.0}, {"a": 0.1, "b": 0.5, "c": 0.9}, **kw)
    assert blind.spearman is None
    assert blind.regret == pytest.approx(0.8)  # ties pick the first name, "a"


def _anova_p(groups: list[list[float]]) -> float:
    """One-way ANOVA by hand: between- over within-group mean squares, p from the F distribution."""
    k, n = len(groups), sum(len(g) for g in groups)
    grand = sum(sum(g) for g in groups) / n
    between = sum(len(g) * (sum(g) / len(g) - grand) ** 2 for g in groups) / (k - 1)
    within = sum(sum((x - sum(g) / len(g)) ** 2 for x in g) for g in groups) / (n - k)
    return float(stats.f.sf(between / within, k - 1, n - k))


def test_outcomes_within_the_seed_spread_are_warned_with_the_anova_p() -> None:
    rng = np.random.default_rng(3)
    noisy = {c: list(3.44 + 0.01 * rng.standard_normal(3)) for c in ("tutor", "parrot", "noise")}
    w = caveats.outcomes_not_separated("eval_nll", noisy, untrained=3.45)
    assert w is not None
    assert w.code == "outcomes_within_seed_spread"
    assert w.numbers["p_value"] == pytest.approx(_anova_p(list(noisy.values())), rel=1e-9)
    assert w.numbers["p_value"] > 0.05
    assert w.numbers["n_seeds"] == 3
    assert w.numbers["seed_sd"] == pytest.approx(
        math.sqrt(np.mean([np.var(v, ddof=1) for v in noisy.values()])), rel=1e-12
    )
    apart = {c: [v + 0.5 * i for v in vals] for i, (c, vals) in enumerate(noisy.items())}
    assert _anova_p(list(apart.values())) < 0.05
    assert caveats.outcomes_not_separated("eval_nll", apart, untrained=3.45) is None
    one = caveats.outcomes_not_separated("eval_nll", {"a": [3.0], "b": [5.0]}, untrained=4.0)
    assert one is not None
    assert one.code == "outcome_spread_unknown"
    assert "unknown" in one.message
    assert (one.numbers["lowest"], one.numbers["highest"], one.numbers["n_seeds"]) == (3.0, 5.0, 1)


def test_a_validation_in_which_every_student_got_worse_says_so() -> None:
    worse = {"tutor": 3.43, "noise": 3.44}
    w = caveats.no_student_improved("eval_nll", worse, 3.383, higher_is_better=False)
    assert w is not None
    assert w.code == "no_student_improved"
    assert (w.numbers["untrained"], w.numbers["best"]) == (3.383, 3.43)
    assert "ranks damage" in w.message
    assert (
        caveats.no_student_improved("eval_nll", {**worse, "gold": 3.2}, 3.383, higher_is_better=False) is None
    )
    # accuracy: higher is better, so a student below the untrained one's accuracy is worse
    assert (
        caveats.no_student_improved("accuracy", {"a": 0.1, "b": 0.2}, 0.3, higher_is_better=True) is not None
    )
    assert caveats.no_student_improved("accuracy", {"a": 0.1, "b": 0.4}, 0.3, higher_is_better=True) is None


# --- the validation job on the tiny models ----------------------------------------------------------


@pytest.fixture(scope="module")
def validated(tiny: TinyModels, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``grace validate`` on three tiny candidates, through the CLI, as its ``--out`` JSON: the
    distillation at its defaults (LoRA, three epochs, seeds 0, 1 and 2)."""
    out = tmp_path_factory.mktemp("validate") / "result.json"
    candidates = tmp_path_factory.mktemp("validate-in") / "candidates.json"
    keep = {"tutor-cold", "tutor-hot", "noise"}
    entries = json.loads(tiny.candidates_file.read_text())["candidates"]
    candidates.write_text(json.dumps([c for c in entries if c["name"] in keep]))
    status = main(
        [
            "validate",
            "--student", str(tiny.student),
            "--candidates", str(candidates),
            "--prompts", str(tiny.prompts_file),
            "--eval", str(tiny.eval_file),
            "--model-root", str(tiny.root),
            "-m", "2", "-d", "32",
            "--eval-max-tokens", "16",
            "--mixed",
            "--quiet",
            "--out", str(out),
        ]
    )  # fmt: skip
    assert status == 0
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def test_every_candidate_gets_an_outcome_and_the_report_shape(validated: dict[str, Any]) -> None:
    assert set(validated["candidates"]) == {"tutor-cold", "tutor-hot", "noise"}
    for c in validated["candidates"].values():
        o = c["outcome"]
        assert math.isfinite(o["eval_nll"])
        assert o["eval_nll"] > 0
        assert o["accuracy"] is not None
        assert 0 <= o["accuracy"] <= 1
        assert len(o["per_seed"]) == 3
        assert o["eval_nll"] == pytest.approx(np.mean([s["eval_nll"] for s in o["per_seed"]]))
        assert "score" in c["grace"]
        assert set(c["values"]) == {
            "grace",
            "g_norm",
            "g_vendi",
            "student_nll",
            "rsr",
            "length",
            "teacher_accuracy",
        }
    for score in ("grace", "g_norm", "g_vendi", "student_nll", "rsr", "length", "teacher_accuracy"):
        assert set(validated["correlations"][score]) >= {
            "spearman",
            "kendall",
            "ci95",
            "regret",
            "regret_rel",
        }
    protocol = validated["protocol"]
    assert protocol["train_seeds"] == [0, 1, 2]
    assert protocol["distillation"]["method"] == "lora"
    assert protocol["distillation"]["epochs"] == 3
    assert protocol["distillation"]["learning_rate"] == 1e-3
    assert protocol["scoring"]["proj_dim"] == 32
    assert protocol["versions"]["peft"] != "absent"


def test_the_mixed_teacher_set_is_one_more_distilled_candidate(validated: dict[str, Any]) -> None:
    mixed = validated["mixed_candidate"]
    assert mixed is not None
    assert len(mixed["per_seed"]) == 3
    assert math.isfinite(mixed["outcome"]["eval_nll"])
    assert sum(mixed["teachers"].values()) == len(validated["mixed"])
    assert set(mixed["teachers"]) <= set(validated["candidates"])
    best = min(validated["candidates"], key=lambda n: validated["candidates"][n]["outcome"]["eval_nll"])
    assert mixed["best_single"] == best
    gain = validated["candidates"][best]["outcome"]["eval_nll"] - mixed["outcome"]["eval_nll"]
    assert mixed["gain_over_best_single"] == pytest.approx(gain)
    assert mixed["beats_best_single"] == (gain > 0)
    assert "mixed, GRACE-routed" in format_validation(validated)


def test_the_default_training_separates_the_tutor_from_random_tokens(validated: dict[str, Any]) -> None:
    """At the defaults, every seed of the student distilled on noise ends worse than every seed of
    either tutor's, and the validation does not call its outcomes seed noise."""
    c = validated["candidates"]
    noise = [s["eval_nll"] for s in c["noise"]["outcome"]["per_seed"]]
    for tutor in ("tutor-cold", "tutor-hot"):
        assert min(noise) > max(s["eval_nll"] for s in c[tutor]["outcome"]["per_seed"]), tutor
    codes = {w["code"] for w in validated["warnings"]}
    assert "outcomes_within_seed_spread" not in codes
    assert "outcome_spread_unknown" not in codes


def test_reported_correlations_recompute_from_reported_values(validated: dict[str, Any]) -> None:
    """Spearman, Kendall and regret, recomputed independently (scipy, plain arithmetic) from the
    per-candidate values the result reports."""
    names = sorted(validated["candidates"])
    cands = validated["candidates"]
    nll = np.array([cands[n]["outcome"]["eval_nll"] for n in names])
    values = {
        "grace": ([cands[n]["grace"]["score"] for n in names], True),
        "g_norm": ([cands[n]["values"]["g_norm"] for n in names], True),
        "g_vendi": ([cands[n]["values"]["g_vendi"] for n in names], False),
        "student_nll": ([cands[n]["values"]["student_nll"] for n in names], True),
        "rsr": ([cands[n]["values"]["rsr"] for n in names], True),
        "length": ([cands[n]["mean_response_tokens"] for n in names], False),
    }
    for score, (raw, lower_is_better) in values.items():
        goodness = -np.array(raw) if lower_is_better else np.array(raw)
        reported = validated["correlations"][score]
        # Quality is -eval_nll: Spearman(goodness, -nll).
        assert reported["spearman"] == pytest.approx(stats.spearmanr(goodness, -nll).statistic, abs=1e-12)
        assert reported["kendall"] == pytest.approx(stats.kendalltau(goodness, -nll).statistic, abs=1e-12)
        pick = names[int(np.argmax(goodness))]
        assert reported["top_pick"] == pick
        assert reported["regret"] == pytest.approx(cands[pick]["outcome"]["eval_nll"] - nll.min(), abs=1e-12)
        assert reported["regret_rel"] == pytest.approx(reported["regret"] / nll.min(), abs=1e-12)


@pytest.fixture(scope="module")
def tutor_set(tiny: TinyModels) -> tuple[Any, list[StudentExample], list[ReferenceExample]]:
    policy = ModelPolicy.from_paths([tiny.root])
    student = ModelCache(policy).get(resolve_model(str(tiny.student), policy, field="student"))
    by_id = {f"gsm8k-{r['idx']}": r for r in gsm8k_records()}
    prompts = read_prompts(tiny.prompts_file)[:12]
    own = [ReferenceExample(p.prompt, clean_solution(by_id[p.id]["answer"])) for p in prompts]
    examples = [encode_for_student(student.tokenizer, v.prompt, v.solution, StudentFormat()) for v in own]
    return student, examples, own


def test_distilling_lowers_the_nll_of_the_training_responses(tutor_set: Any) -> None:
    student, examples, own = tutor_set
    before = evaluate(student.model, student.tokenizer, own, StudentFormat(), accuracy=False)
    for method, lr in (("full", 1e-3), ("lora", 1e-2)):
        trained, stats_ = distil(
            student.model,
            student.tokenizer,
            examples,
            DistillConfig(method=method, epochs=4, batch_size=4, learning_rate=lr),  # type: ignore[arg-type]
        )
        after = evaluate(trained, student.tokenizer, own, StudentFormat(), accuracy=False)
        assert after.eval_nll < before.eval_nll - 0.05, (method, before, after)
        assert stats_.steps == 12
    # The student the job started from is untouched.
    again = evaluate(student.model, student.tokenizer, own, StudentFormat(), accuracy=False)
    assert again.eval_nll == before.eval_nll


def test_a_run_is_reproducible_from_its_seed(tutor_set: Any) -> None:
    student, examples, _ = tutor_set

    def weights(seed: int, method: str) -> torch.Tensor:
        cfg = DistillConfig(method=method, max_steps=3, batch_size=4, seed=seed)  # type: ignore[arg-type]
        trained, _ = distil(student.model, student.tokenizer, examples, cfg)
        return torch.cat([p.detach().flatten() for p in trained.parameters()])

    for method in ("full", "lora"):
        a, b, c = weights(0, method), weights(0, method), weights(1, method)
        assert torch.equal(a, b), method
        assert not torch.equal(a, c), method


def test_micro_batches_divide_the_effective_batch() -> None:
    assert micro_batch(8, lambda size, width: True, 100) == 8
    assert micro_batch(8, lambda size, width: size * width <= 500, 100) == 4
    assert micro_batch(12, lambda size, width: size <= 5, 10) == 4
    assert micro_batch(7, lambda size, width: size <= 5, 10) == 1


def test_the_budget_changes_micro_batches_not_what_is_learnt(tutor_set: Any) -> None:
    student, examples, own = tutor_set
    cfg = DistillConfig(method="full", max_steps=3, batch_size=4, learning_rate=1e-3)
    roomy, big = distil(student.model, student.tokenizer, examples, cfg)
    trainable = _trainable_copy(student.model, cfg)
    cost = training_cost(trainable)
    # A budget that holds one row of the longest example but not two.
    width = max(len(e.input_ids) for e in examples)
    taken = resident_bytes([student.model]) + module_bytes(trainable)
    tight_gb = (taken + (cost.bytes(1, width) + cost.bytes(2, width)) / 2) / PLANNED_SHARE / GB
    tight, small = distil(
        student.model, student.tokenizer, examples, cfg, budget=MemoryBudget.from_gb(tight_gb),
        resident=resident_bytes([student.model]),
    )  # fmt: skip
    assert (big.micro_batch, small.micro_batch) == (4, 1)
    a = evaluate(roomy, student.tokenizer, own, StudentFormat(), accuracy=False).eval_nll
    b = evaluate(tight, student.tokenizer, own, StudentFormat(), accuracy=False).eval_nll
    assert a == pytest.approx(b, rel=1e-5)


def test_validation_settings_are_checked_before_any_work(tiny: TinyModels) -> None:
    policy = ModelPolicy.from_paths([tiny.root])
    prompts = read_prompts(tiny.prompts_file)
    no_answers = [ReferenceExample("What is 2 + 2?", "4")]
    with pytest.raises(InvalidInput) as err:
        run_validation(
            ValidationInputs(prompts, [], str(tiny.student), eval_set=no_answers),
            ValidationSpec(validation=ValidationConfig(outcome="accuracy")),
            EngineContext(policy=policy),
        )
    assert err.value.field == "eval[0].answer"
    with pytest.raises(InvalidInput) as err:
        DistillConfig(method="adapter").check()  # type: ignore[arg-type]
    assert err.value.field == "method"
    too_long = [ReferenceExample("q " * 2000, "s")]
    with pytest.raises(InvalidInput) as err:
        run_validation(
            ValidationInputs(prompts, [], str(tiny.student), eval_set=too_long),
            ValidationSpec(),
            EngineContext(policy=policy),
        )
    assert err.value.field == "eval[0].solution"


def test_candidates_validated_alone_finish_into_the_whole_jobs_result(
    tiny: TinyModels, tmp_path: Path
) -> None:
    """A fanned-out validation job: each candidate distilled by its own validate_candidate call
    (gradients stored), then run_validation with what they left, is the one-call job exactly, and
    its last call distils no candidate and computes no gradient."""
    policy = ModelPolicy.from_paths([tiny.root])
    prompts = read_prompts(tiny.prompts_file)[:8]
    keep = {"tutor-cold", "noise", "tutor-hot"}
    candidates = [
        Candidate(**{k: v for k, v in c.items() if k != "description"})
        for c in json.loads(tiny.candidates_file.read_text())["candidates"]
        if c["name"] in keep
    ]
    eval_set = read_references(tiny.eval_file)[:4]
    inputs = ValidationInputs(prompts, candidates, str(tiny.student), eval_set=eval_set)
    spec = ValidationSpec(
        scoring=ScoringConfig(responses_per_prompt=2),  # d "auto": resolved for all candidates
        validation=ValidationConfig(
            distill=DistillConfig(method="full", max_steps=2, batch_size=4, learning_rate=1e-3),
            train_seeds=(0, 1),
            eval_max_tokens=4,
        ),
    )
    responses = DirectoryResponseStore(tmp_path / "responses")
    whole = run_validation(inputs, spec, EngineContext(policy=policy, responses=responses))
    store = DirectoryGradientStore(tmp_path / "gradients", max_bytes=10**9)
    units = EngineContext(policy=policy, responses=responses, gradients=store)
    parts = {c.name: validate_candidate(inputs, spec, units, c.name) for c in candidates}
    stored = sorted(p.name for p in store.root.rglob("*"))
    assert len(stored) >= len(candidates)
    events: list[ProgressEvent] = []
    # What a unit hands to the job's last one goes through JSON.
    distilled = {
        n: CandidateValidation.from_dict(json.loads(json.dumps(r.validation.to_dict())))
        for n, r in parts.items()
    }
    assert distilled == {n: r.validation for n, r in parts.items()}
    draws = {}
    for n, r in parts.items():
        assert r.ranking is not None
        assert r.ranking.uncertainty is not None
        draws[n] = r.ranking.uncertainty.draws[n]
    last = EngineContext(policy=policy, responses=responses, gradients=store, progress=events.append)
    finished = run_validation(inputs, spec, last, distilled=distilled, known=draws)
    assert not [e for e in events if e.stage == "distil"]
    gradients = [e for e in events if e.stage == "gradients"]  # found in the store: at once, done
    assert sorted(e.candidate or "" for e in gradients) == sorted(keep)
    assert all(e.done == e.total for e in gradients)
    assert [e.done for e in events if e.stage == "evaluate"][-1] == 1  # the untrained student only
    assert sorted(p.name for p in store.root.rglob("*")) == stored

    def learnt(v: CandidateValidation) -> tuple[Any, ...]:  # all but the wall times
        return v.outcome, v.per_seed, [(t.steps, t.examples, t.micro_batch, t.train_loss) for t in v.training]

    assert {n: learnt(v) for n, v in finished.candidates.items()} == {
        n: learnt(v) for n, v in whole.candidates.items()
    }
    assert finished.untrained == whole.untrained
    assert finished.to_dict()["correlations"] == whole.to_dict()["correlations"]
    assert [r.name for r in finished.ranking.ranking] == [r.name for r in whole.ranking.ranking]
    for n in keep:
        assert finished.ranking.candidates[n].score("grace") == pytest.approx(
            whole.ranking.candidates[n].score("grace"), rel=1e-9
        )
    assert finished.ranking.uncertainty == whole.ranking.uncertainty
    with pytest.raises(InvalidInput) as err:
        validate_candidate(inputs, spec, EngineContext(policy=policy), "nobody")
    assert err.value.field == "candidates"
