"""rank_teachers end to end on the offline tiny models."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from grace_engine.errors import Cancelled, GraceError, InvalidInput, ModelNotAllowed, ModelNotFound
from grace_engine.models.candidates import Candidate, read_candidates
from grace_engine.models.data import Prompt, StudentFormat, read_prompts
from grace_engine.models.generation import Generated
from grace_engine.models.loading import ModelCache, ModelPolicy
from grace_engine.models.tiny_models import TinyModels
from grace_engine.pipelines.config import ScoringConfig
from grace_engine.pipelines.context import EngineContext, JobInputs
from grace_engine.pipelines.results import RankingResult
from grace_engine.pipelines.scoring import rank_teachers
from grace_engine.progress import ProgressEvent
from grace_engine.science.ranking import spearman
from grace_engine.stores.response_store import DirectoryResponseStore


@pytest.fixture(scope="module")
def policy(tiny: TinyModels) -> ModelPolicy:
    return ModelPolicy.from_paths([tiny.root])


@pytest.fixture(scope="module")
def cache(policy: ModelPolicy) -> ModelCache:
    return ModelCache(policy, capacity=4)


@pytest.fixture(scope="module")
def store(shared_tmp: Path) -> DirectoryResponseStore:
    return DirectoryResponseStore(shared_tmp / "responses")


def _rank_demo(
    tiny: TinyModels,
    policy: ModelPolicy,
    cache: ModelCache,
    config: ScoringConfig | None = None,
    **context: Any,
) -> RankingResult:
    """rank_teachers on the tiny models' own prompt and candidate files (``context``: the
    EngineContext's other fields)."""
    inputs = JobInputs(
        read_prompts(tiny.prompts_file), read_candidates(tiny.candidates_file), str(tiny.student)
    )
    return rank_teachers(
        inputs, config or ScoringConfig(), EngineContext(policy=policy, models=cache, **context)
    )


@pytest.fixture(scope="module")
def demo(
    tiny: TinyModels, policy: ModelPolicy, cache: ModelCache, store: DirectoryResponseStore
) -> tuple[RankingResult, list[ProgressEvent]]:
    events: list[ProgressEvent] = []
    result = _rank_demo(tiny, policy, cache, responses=store, progress=events.append)
    return result, events


def test_ranking_is_sorted_complete_and_sane(
    demo: tuple[RankingResult, list[ProgressEvent]], tiny: TinyModels
) -> None:
    result, _ = demo
    names = [c["name"] for c in json.loads(tiny.candidates_file.read_text())["candidates"]]
    assert sorted(r.name for r in result.ranking) == sorted(names)
    scores = [r.grace for r in result.ranking]
    assert scores == sorted(scores)
    assert [r.rank for r in result.ranking] == list(range(1, len(names) + 1))
    for r in result.ranking[:-1]:
        assert r.agreement_with_next is not None
        assert 0.0 <= r.agreement_with_next <= 1.0
    for c in result.candidates.values():
        assert c.n_responses == result.n_prompts * 4 == len(c.responses) * len(c.responses[0])
        assert c.score("teacher_accuracy") is not None  # the GSM8K prompts carry answers
        assert c.grace.variance + c.grace.bias == pytest.approx(c.grace.score, rel=1e-9)
        assert c.score("g_norm") > 0
        assert c.score("g_vendi") >= 1
        assert c.score("student_nll") > 0
    # Random-token responses are the worst thing to distil from: last by GRACE, highest student NLL.
    assert result.ranking[-1].name == "noise"
    assert max(result.candidates.values(), key=lambda c: c.score("student_nll")).name == "noise"
    # The other predictors' say against the ranking travels as warnings.
    codes = [w.code for w in result.warnings]
    accuracy = {n: c.score("teacher_accuracy") for n, c in result.candidates.items()}
    disagree = accuracy[result.ranking[0].name] < max(a for a in accuracy.values() if a is not None)
    assert codes.count("accuracy_disagrees") == int(disagree)
    lengths = [result.candidates[r.name].mean_response_tokens for r in result.ranking]
    rho = spearman([r.grace for r in result.ranking], lengths)
    assert ("ranking_tracks_length" in codes) == (abs(rho) >= 0.9)


def test_progress_reports_every_stage_in_order(demo: tuple[RankingResult, list[ProgressEvent]]) -> None:
    result, events = demo
    stages = [e.stage for e in events]
    assert stages.index("gradients") > max(i for i, s in enumerate(stages) if s == "generate")
    assert stages[-1] == "score"
    assert events[-1].done == events[-1].total == len(result.candidates)
    for name in result.candidates:
        # GRACE's splits and then its uncertainty's each report their own done of total.
        for stage in ("generate", "gradients", "score", "uncertainty"):
            mine = [e for e in events if e.stage == stage and e.candidate == name]
            assert mine, (stage, name)
            assert [e.done for e in mine] == sorted(e.done for e in mine)
            assert mine[-1].done == mine[-1].total
        score = [i for i, e in enumerate(events) if e.stage == "score" and e.candidate == name]
        assert events[score[-1]].total == result.config.n_splits
    last_split = max(i for i, e in enumerate(events) if e.stage == "score" and e.candidate is not None)
    assert last_split < min(i for i, e in enumerate(events) if e.stage == "uncertainty")


def test_fast_and_exact_paths_rank_alike(
    demo: tuple[RankingResult, list[ProgressEvent]],
    tiny: TinyModels,
    policy: ModelPolicy,
    cache: ModelCache,
    store: DirectoryResponseStore,
) -> None:
    fast, _ = demo
    exact = _rank_demo(tiny, policy, cache, responses=store, config=ScoringConfig(path="exact"))
    assert all(c.response_source == "stored" for c in exact.candidates.values())
    names = list(fast.candidates)
    a = [fast.candidates[n].grace.score for n in names]
    b = [exact.candidates[n].grace.score for n in names]
    rho = spearman(a, b)
    rel = {n: abs(x - y) / y for n, x, y in zip(names, a, b, strict=True)}
    top = f"{fast.ranking[0].name}/{exact.ranking[0].name}"
    print(f"fast vs exact: spearman {rho:.3f}, top-1 {top}, relative GRACE difference {rel}")
    assert fast.ranking[0].name == exact.ranking[0].name
    assert rho >= 0.9


def test_supplied_responses_score_like_generated_ones_under_one_projection(
    demo: tuple[RankingResult, list[ProgressEvent]], tiny: TinyModels, policy: ModelPolicy, cache: ModelCache
) -> None:
    result, _ = demo
    prompts = read_prompts(tiny.prompts_file)
    tutor = result.candidates["tutor"].responses
    supplied = {p.id: group for p, group in zip(prompts, tutor, strict=True)}
    again = rank_teachers(
        JobInputs(
            prompts,
            [Candidate("copy-a", responses=supplied), Candidate("copy-b", responses=supplied)],
            str(tiny.student),
        ),
        ScoringConfig(),
        EngineContext(policy=policy, models=cache),
    )
    a, b = again.candidates["copy-a"], again.candidates["copy-b"]
    assert a.response_source == "provided"
    assert a.grace.split_scores == b.grace.split_scores  # one projection for every candidate
    assert a.grace.score == pytest.approx(result.candidates["tutor"].grace.score, rel=1e-6)


def test_length_factor_changes_scores(
    tiny: TinyModels, policy: ModelPolicy, cache: ModelCache, demo: tuple[RankingResult, list[ProgressEvent]]
) -> None:
    result, _ = demo
    prompts = read_prompts(tiny.prompts_file)
    supplied = {p.id: g for p, g in zip(prompts, result.candidates["parrot"].responses, strict=True)}
    scaled = rank_teachers(
        JobInputs(prompts, [Candidate("p", responses=supplied)], str(tiny.student)),
        ScoringConfig(length_factor=True),
        EngineContext(policy=policy, models=cache),
    )
    assert scaled.candidates["p"].grace.score != pytest.approx(
        result.candidates["parrot"].grace.score, rel=1e-3
    )


def test_cancellation_stops_at_the_first_check_that_says_so(
    tiny: TinyModels, policy: ModelPolicy, cache: ModelCache
) -> None:
    """Checks come between batches and, in generation, after every token: the job stops at the
    first one that says cancel, and asks no more."""
    polls = 0

    def should_cancel() -> bool:
        nonlocal polls
        polls += 1
        return polls > 3

    with pytest.raises(Cancelled):
        _rank_demo(tiny, policy, cache, should_cancel=should_cancel, generation_batch=4)
    assert polls == 4


def _two_prompts() -> list[Prompt]:
    return [Prompt("a", "What is 1 + 1?", "2"), Prompt("b", "What is 2 + 2?", "4")]


@pytest.mark.parametrize(
    ("kwargs", "error", "field"),
    [
        ({"prompts": []}, InvalidInput, "prompts"),
        ({"prompts": [Prompt("a", "only one")]}, InvalidInput, "prompts"),
        ({"candidates": []}, InvalidInput, "candidates"),
        ({"candidates": [Candidate("x", model="does-not-exist")]}, ModelNotFound, "candidates[0].model"),
        ({"candidates": [Candidate("x", model="/etc")]}, ModelNotAllowed, "candidates[0].model"),
        ({"student": "/usr/lib"}, ModelNotAllowed, "student"),
        ({"student": "org/some-hub-model"}, ModelNotAllowed, "student"),
        (
            {"candidates": [Candidate("x", model="tutor"), Candidate("x", model="tutor")]},
            InvalidInput,
            "candidates[1].name",
        ),
        (
            {"candidates": [Candidate("x", model="tutor", responses={"a": ["r"]})]},
            InvalidInput,
            "candidates[0]",
        ),
        (
            {"candidates": [Candidate("x", responses={"a": ["r"] * 4})]},
            InvalidInput,
            "candidates[0].responses",
        ),
        (
            {"candidates": [Candidate("x", responses={"a": ["r"] * 4, "b": ["r"] * 3})]},
            InvalidInput,
            "candidates[0].responses[b]",
        ),
        (
            {"candidates": [Candidate("x", model="tutor", temperature=-1)]},
            InvalidInput,
            "candidates[0].temperature",
        ),
        ({"config": ScoringConfig(proj_dim=0)}, InvalidInput, "proj_dim"),
        (
            {"candidates": [Candidate("x", model="tutor", max_tokens=1000)]},
            InvalidInput,
            "candidates[0].max_tokens",
        ),
    ],
)
def test_bad_input_is_a_clear_error_naming_the_field(
    tiny: TinyModels, policy: ModelPolicy, kwargs: dict[str, object], error: type[GraceError], field: str
) -> None:
    args: dict[str, object] = {
        "prompts": _two_prompts(),
        "candidates": [Candidate("t", model="tutor")],
        "student": "student",
        "config": ScoringConfig(),
    }
    args.update(kwargs)
    with pytest.raises(error) as err:
        rank_teachers(
            JobInputs(args["prompts"], args["candidates"], args["student"]),
            args["config"],
            EngineContext(policy=policy, base_dir=tiny.root),
        )
    assert err.value.field == field
    assert err.value.message


@pytest.mark.parametrize(
    ("long_reply", "fmt", "message"),
    [
        ("word " * 300, StudentFormat(max_length=128), "exceed the limit of 128"),
        ("word " * 700, StudentFormat(), "student's context"),  # > 512 positions of the tiny student
    ],
)
def test_overlong_responses_are_refused_naming_the_response_or_truncated(
    tiny: TinyModels,
    policy: ModelPolicy,
    cache: ModelCache,
    long_reply: str,
    fmt: StudentFormat,
    message: str,
) -> None:
    supplied = {"a": ["short", "ok"], "b": ["fine", long_reply]}

    def run(student_format: StudentFormat) -> RankingResult:
        return rank_teachers(
            JobInputs(_two_prompts(), [Candidate("long", responses=supplied)], str(tiny.student)),
            ScoringConfig(responses_per_prompt=2, student_format=student_format),
            EngineContext(policy=policy, models=cache),
        )

    with pytest.raises(InvalidInput, match=message) as err:
        run(fmt)
    assert err.value.field == "candidates[0].responses[b][1]"
    assert run(replace(fmt, truncate=True)).candidates["long"].n_truncated == 1


def test_response_store_round_trips_and_ignores_unreadable_entries(tmp_path: Path) -> None:
    store = DirectoryResponseStore(tmp_path / "store")
    assert store.get("k") is None
    generated = Generated([["a", "b"], ["c", "d"]], [[False, True], [False, False]])
    store.put("k", generated)
    assert store.get("k") == generated
    (tmp_path / "store" / "bad.json").write_text('[["half written"')
    (tmp_path / "store" / "odd.json").write_text('{"not": "a list"}')
    # Written before responses at max_tokens were counted: generated again, not reported as 0.
    (tmp_path / "store" / "legacy.json").write_text('[["a", "b"], ["c", "d"]]')
    (tmp_path / "store" / "ragged.json").write_text('{"texts": [["a", "b"]], "at_cap": [[false]]}')
    for key in ("bad", "odd", "legacy", "ragged"):
        assert store.get(key) is None, key


def test_proj_dim_auto_follows_the_training_rows(demo: tuple[RankingResult, list[ProgressEvent]]) -> None:
    """24 prompts x 4 responses, 2 held out per split: 88 training rows; auto keeps the paper's 3.6
    rows per dimension (1,844 at d = 512), so 16, and says that this is below the paper's d."""
    result, _ = demo
    assert result.auto_proj_dim
    assert result.config.proj_dim == 16
    assert result.projection is not None
    assert result.projection.d == 16
    assert result.to_dict()["proj_dim"] == 16
    (small,) = [w for w in result.warnings if w.code == "small_sample"]
    assert small.numbers == {
        "train_rows": 88,
        "proj_dim": 16,
        "n_prompts": 24,
        "prompts_needed": 512,  # 461 training prompts x 4 = 1,844 rows
        "paper_proj_dim": 512,
    }
    assert "instead of the paper's 512" in small.message
    assert "not tuned on any study's outcomes" in small.message


def test_warnings_travel_with_the_result(
    tiny: TinyModels, policy: ModelPolicy, cache: ModelCache, store: DirectoryResponseStore
) -> None:
    """An explicit d = 512 against 88 training rows is warned about."""
    result = _rank_demo(tiny, policy, cache, responses=store, config=ScoringConfig(proj_dim=512, bootstrap=0))
    assert not result.auto_proj_dim
    codes = [w.code for w in result.warnings]
    assert "few_prompts" not in codes
    small = next(w for w in result.warnings if w.code == "small_sample")
    assert small.numbers == {"train_rows": 88, "proj_dim": 512, "n_prompts": 24, "prompts_needed": 142}
    assert "G-Norm" in small.message
    assert "lower proj_dim to 88" in small.message
    as_json = json.loads(json.dumps(result.to_dict()))["warnings"]
    assert {"code": "small_sample", "train_rows": 88}.items() <= as_json[codes.index("small_sample")].items()
    for c in result.candidates.values():
        assert c.n_at_max_tokens is not None
        assert 0 <= c.n_at_max_tokens <= c.n_responses
        capped = [
            w
            for w in result.warnings
            if w.code == "responses_at_max_tokens" and w.numbers["candidate"] == c.name
        ]
        assert len(capped) == (1 if c.n_at_max_tokens else 0)


def test_responses_cut_at_max_tokens_and_examples_cut_at_max_length_are_reported(
    tiny: TinyModels, policy: ModelPolicy, cache: ModelCache
) -> None:
    prompts = _two_prompts()
    result = rank_teachers(
        JobInputs(
            prompts,
            [
                Candidate("clipped", model=str(tiny.teachers["tutor"]), max_tokens=3),
                Candidate("long", responses={"a": ["short", "ok"], "b": ["fine", "word " * 100]}),
            ],
            str(tiny.student),
        ),
        ScoringConfig(responses_per_prompt=2, student_format=StudentFormat(max_length=128, truncate=True)),
        EngineContext(policy=policy, models=cache),
    )
    by_code = {(w.code, w.numbers.get("candidate")): w for w in result.warnings}
    assert ("few_prompts", None) in by_code
    clipped = by_code["responses_at_max_tokens", "clipped"]
    assert clipped.numbers == {"candidate": "clipped", "n_responses": 4, "total": 4, "max_tokens": 3}
    assert result.candidates["clipped"].n_at_max_tokens == 4
    assert result.candidates["long"].n_at_max_tokens is None  # unknown for supplied responses
    cut = by_code["examples_truncated", "long"]
    assert cut.numbers == {"candidate": "long", "n_examples": 1, "total": 4, "max_length": 128}
    assert ("examples_truncated", "clipped") not in by_code


def test_result_carries_every_predictor_its_uncertainty_and_the_projection(
    demo: tuple[RankingResult, list[ProgressEvent]],
) -> None:
    result, _ = demo
    rows = result.ranking_rows()
    assert sum(r["p_top1"] for r in rows) == pytest.approx(1.0, abs=1e-9)
    for r in rows:
        assert r["score"] == "grace"
        assert r["value"] == r["grace"]
        assert r["values"]["rsr"] > 0
        assert r["mean_response_tokens"] > 0
    # Every interval the result reports holds the number printed beside it. (Issue 25: on this very
    # job the old bootstrap's per-candidate "interval" sat above its own GRACE value.)
    checked = 0
    for r in rows:
        for interval, point in (("interval", "value"), ("gap_interval", "gap")):
            if r.get(interval) is not None:
                lo, hi = r[interval]
                assert lo <= r[point] <= hi, (r["name"], interval, r[point], (lo, hi))
                checked += 1
    assert checked == len(rows) - 1  # every candidate but the leader has its gap's interval
    u = result.uncertainty
    assert u is not None
    assert (u.score, u.method, u.folds, u.repeats) == ("grace", "paired_cv", 10, 10)
    assert u.leader == rows[0]["name"]
    assert u.runner_up == rows[1]["name"]
    assert result.settled is u.settled
    versus = u.candidates[rows[1]["name"]].vs_leader
    assert versus is not None
    assert u.settled is versus.leader_wins(u.confidence)
    for r in rows:
        curve = u.candidates[r["name"]].curve
        assert curve.sizes == [6, 12, 18, 24]  # n/4, n/2, 3n/4 and n of the demo's 24 prompts
        assert curve.values[-1] == r["grace"]
    assert (not u.settled) == any(w.code == "ranking_unsettled" for w in result.warnings)
    p = result.projection
    assert p is not None
    assert p.kind == "factorized"
    assert p.d == result.config.proj_dim
    assert p.grad_dim == result.grad_dim
    assert len(p.checksum) == 16
    data = result.to_dict(include_responses=False)
    assert data["projection"]["checksum"] == p.checksum
    assert data["settled"] is u.settled


def test_forward_only_predictors_run_no_backward(
    tiny: TinyModels,
    policy: ModelPolicy,
    cache: ModelCache,
    store: DirectoryResponseStore,
    demo: tuple[RankingResult, list[ProgressEvent]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    def no_backward(*args: object, **kwargs: object) -> None:
        raise AssertionError("a forward-only job ran a backward pass")

    monkeypatch.setattr(torch.autograd, "grad", no_backward)
    monkeypatch.setattr(torch.Tensor, "backward", no_backward)
    cfg = ScoringConfig(predictors=("rsr", "student_nll", "length"), bootstrap=50)
    result = _rank_demo(tiny, policy, cache, responses=store, config=cfg)
    assert result.grad_dim == 0
    assert result.projection is None
    assert [r.score for r in result.ranking] == ["rsr"] * len(result.ranking)
    values = [r.value for r in result.ranking]
    assert values == sorted(values)
    full = demo[0].candidates
    for name, c in result.candidates.items():
        assert c.grace is None
        assert c.score("g_norm") is None
        assert c.score("g_vendi") is None
        assert c.score("teacher_accuracy") is None
        # same responses, no gradients
        assert c.score("rsr") == pytest.approx(full[name].score("rsr"), rel=1e-4)
        assert c.score("student_nll") == pytest.approx(full[name].score("student_nll"), rel=1e-4)
        assert c.mean_response_tokens == full[name].mean_response_tokens
    assert not any(w.code == "small_sample" for w in result.warnings)


def test_projection_identity_is_a_function_of_seed_and_size() -> None:
    from grace_engine.science.projection import Block, DenseProjector, FactorizedProjector

    blocks = [Block("w", (96, 80)), Block("b", (96,)), Block("e", (50, 8))]
    base = FactorizedProjector(blocks, 32, 7, factor_dim=16).identity()
    assert FactorizedProjector(blocks, 32, 7, factor_dim=16).identity() == base
    # float64 factors are the same signs scaled by the same power of two: the same map
    assert FactorizedProjector(blocks, 32, 7, factor_dim=16, dtype=torch_float64()).identity() == base
    assert FactorizedProjector(blocks, 32, 8, factor_dim=16).identity().checksum != base.checksum
    assert FactorizedProjector(blocks, 64, 7, factor_dim=16).identity().checksum != base.checksum
    dense = DenseProjector(20000, 16, 3).identity()
    assert dense == DenseProjector(20000, 16, 3).identity()
    assert dense.checksum != DenseProjector(20000, 16, 4).identity().checksum


def torch_float64() -> Any:
    import torch

    return torch.float64


def test_a_budget_aware_job_stops_early_when_one_candidate_dominates(
    tiny: TinyModels, policy: ModelPolicy, cache: ModelCache, store: DirectoryResponseStore
) -> None:
    from grace_engine.pipelines.context import EngineContext, JobInputs
    from grace_engine.science.adaptive import RankingBudget

    chosen = [c for c in read_candidates(tiny.candidates_file) if c.name in ("tutor-cold", "noise")]
    assert len(chosen) == 2
    prompts = read_prompts(tiny.prompts_file)
    cfg = ScoringConfig(budget=RankingBudget(initial_prompts=8), bootstrap=100)
    result = rank_teachers(
        JobInputs(prompts, chosen, str(tiny.student)),
        cfg,
        EngineContext(policy=policy, models=cache, responses=store),
    )
    spent = result.budget
    assert spent is not None
    assert spent.stopped == "settled"
    assert spent.rounds[-1].settled
    assert spent.rounds[-1].n_prompts < len(prompts)
    assert spent.compute_fraction < 1.0
    assert spent.examples_used == sum(c.n_responses for c in result.candidates.values())
    assert result.settled
    assert result.ranking[0].name == "tutor-cold"
    assert result.config.proj_dim == 16  # auto for 24 prompts x 4, and for every round's fewer
    assert result.projection is not None
    assert result.projection.folded_to is None
    data = result.to_dict(include_responses=False)
    assert data["budget"]["compute_fraction"] == pytest.approx(spent.compute_fraction)
    assert data["budget"]["rounds"][0]["n_prompts"] == 8


def test_a_budget_aware_job_projects_once_and_scores_each_round_at_its_own_dim(
    tiny: TinyModels, policy: ModelPolicy, cache: ModelCache
) -> None:
    from grace_engine.models.data import clean_solution
    from grace_engine.models.tiny_models import gsm8k_records
    from grace_engine.pipelines.context import EngineContext, JobInputs
    from grace_engine.science.adaptive import RankingBudget
    from grace_engine.science.grace import auto_proj_dim

    records = gsm8k_records()[100:172]
    prompts = [Prompt(f"p{i}", r["question"]) for i, r in enumerate(records)]
    short = [clean_solution(r["answer"])[:160] for r in records]  # within the tiny context
    gold = {p.id: [s] * 2 for p, s in zip(prompts, short, strict=True)}
    rng = random.Random(0)
    noise = {p.id: ["".join(rng.choices("qxzjv#%&@ 0123", k=120))] * 2 for p in prompts}

    def rank(names: dict[str, dict[str, list[str]]], **kw: Any) -> Any:
        chosen = [Candidate(n, responses=r, responses_per_prompt=2) for n, r in names.items()]
        cfg = ScoringConfig(responses_per_prompt=2, bootstrap=60, predictors=("grace", "g_norm"), **kw)
        return rank_teachers(
            JobInputs(prompts, chosen, str(tiny.student)), cfg, EngineContext(policy=policy, models=cache)
        )

    d_full = auto_proj_dim(72, 2)
    assert d_full > auto_proj_dim(8, 2)  # the sample is large enough for the rounds' d to grow
    full = rank({"a": gold, "b": gold})
    swept = rank({"a": gold, "b": gold}, budget=RankingBudget(initial_prompts=8))
    assert swept.budget is not None
    assert swept.budget.stopped == "exhausted"
    dims = [r.proj_dim for r in swept.budget.rounds]
    assert dims[0] == auto_proj_dim(8, 2)
    assert dims[-1] == d_full
    assert dims == sorted(dims)
    assert swept.config.proj_dim == full.config.proj_dim == d_full
    for name in ("a", "b"):  # every prompt scored: the full run's scores, to float32 batching noise
        assert swept.candidates[name].grace.score == pytest.approx(
            full.candidates[name].grace.score, rel=1e-6
        )
        swept_norm, full_norm = swept.candidates[name].score("g_norm"), full.candidates[name].score("g_norm")
        assert swept_norm == pytest.approx(full_norm, rel=1e-6)
    quick = rank({"gold": gold, "noise": noise}, budget=RankingBudget(initial_prompts=8))
    assert quick.budget is not None
    assert quick.budget.stopped == "settled"
    scored = quick.budget.rounds[-1]
    assert quick.config.proj_dim == scored.proj_dim == auto_proj_dim(scored.n_prompts, 2) < d_full
    assert quick.projection is not None
    assert (quick.projection.d, quick.projection.folded_to) == (d_full, quick.config.proj_dim)
    assert quick.to_dict()["projection"]["folded_to"] == quick.config.proj_dim
