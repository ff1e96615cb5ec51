"""The memory budget: batch plans, the probe, refusal before work, and results that do not depend on it."""

from __future__ import annotations

import gc
import weakref
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from grace_engine.errors import InvalidInput
from grace_engine.memory import (
    GB,
    PLANNED_SHARE,
    BatchCost,
    MemoryBudget,
    default_budget_gb,
    fit_token_terms,
    freeze_imports,
    grace_workers,
    release_memory,
    resident_bytes,
)
from grace_engine.models.candidates import Candidate, read_candidates
from grace_engine.models.data import length_batches, read_prompts
from grace_engine.models.generation import GenerationSettings, TransformersBackend
from grace_engine.models.loading import ModelCache, ModelPolicy, load_causal_lm, load_tokenizer, resolve_model
from grace_engine.models.tiny_models import TinyModels, tiny_llama
from grace_engine.pipelines.config import ScoringConfig
from grace_engine.pipelines.context import EngineContext, JobInputs
from grace_engine.pipelines.scoring import rank_teachers
from grace_engine.progress import ProgressEvent
from grace_engine.science.gradient_space import GradientSpace
from grace_engine.science.gradients import make_gradient_computer
from grace_engine.stores.response_store import DirectoryResponseStore


def test_three_points_give_the_linear_and_quadratic_terms() -> None:
    c, a, b = 5e6, 1.5e4, 7.0
    lengths = (16, 32, 64)
    values = tuple(c + a * t + b * t * t for t in lengths)
    fa, fb = fit_token_terms(lengths, values)  # type: ignore[arg-type]
    assert fa == pytest.approx(a, rel=1e-9)
    assert fb == pytest.approx(b, rel=1e-9)
    assert fit_token_terms(lengths, (3.0, 2.0, 0.0)) == (0.0, 0.0)  # never negative


def test_a_plan_fills_the_budget_and_no_more() -> None:
    cost = BatchCost(per_token=1e6, per_example=1e7)
    budget = MemoryBudget.from_gb(2)
    plan = budget.plan(1.0 * GB, cost, stage="gradient")
    room = 2 * GB * PLANNED_SHARE - 1.0 * GB
    rows = plan.rows(100, limit=10_000)
    assert cost.bytes(rows, 100) <= room < cost.bytes(rows + 1, 100)
    assert plan.rows(100, limit=3) == 3
    # Length-sorted batches under the plan: every batch fits, every index once.
    lengths = [int(x) for x in np.random.default_rng(0).integers(10, 400, size=300)]
    batches = length_batches(lengths, max_batch=10_000, fits=plan.fits)
    assert sorted(i for b in batches for i in b) == list(range(300))
    assert all(cost.bytes(len(b), max(lengths[i] for i in b)) <= room for b in batches if len(b) > 1)
    # Sequential costs (the exact path) count one row's tokens whatever the batch size.
    seq = BatchCost(per_token=1e6, per_example=1e7, sequential=True)
    assert seq.bytes(8, 100) == 1e6 * 100 + 8e7


def test_a_budget_too_small_names_its_minimum() -> None:
    plan = MemoryBudget.from_gb(1).plan(0.8 * GB, BatchCost(per_token=2e6), stage="gradient")
    with pytest.raises(InvalidInput) as err:
        plan.require(400)
    assert err.value.field == "memory_budget"
    need = (0.8 * GB + 400 * 2e6) / PLANNED_SHARE
    assert f"needs at least {need / GB:.2f} GB" in err.value.message
    assert "--memory-budget" in err.value.message
    MemoryBudget.from_gb(need / GB + 0.01).plan(0.8 * GB, BatchCost(per_token=2e6), stage="x").require(400)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_budget_values_are_checked(bad: float) -> None:
    with pytest.raises(InvalidInput) as err:
        MemoryBudget.from_gb(bad)
    assert err.value.field == "memory_budget"


def test_the_default_is_safe_here() -> None:
    """Half of this machine's 24 GiB would be 12.9 GB; the default stops at 8."""
    assert 0 < default_budget_gb() <= 8.0
    assert MemoryBudget().gb == pytest.approx(default_budget_gb())


def _eager_llama(attn: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = tiny_llama(97, eos_id=1, pad_id=0, hidden=32, max_positions=128)
    model.config._attn_implementation = attn
    model.eval()
    model.requires_grad_(False)
    return model


def test_the_probe_sees_what_the_backward_keeps() -> None:
    """SDPA keeps no T x T tensor; eager attention keeps its probabilities (per head, per layer)."""
    sdpa, eager = _eager_llama("sdpa"), _eager_llama("eager")
    c_sdpa = make_gradient_computer(sdpa, space=GradientSpace(), d=64).cost()
    c_eager = make_gradient_computer(eager, space=GradientSpace(), d=64).cost()
    assert c_sdpa.per_token > 0
    assert c_sdpa.per_token_pair == 0
    heads, layers = sdpa.config.num_attention_heads, sdpa.config.num_hidden_layers
    # Probabilities (and their dropout-free copy) in float32: at least 4 bytes x heads x layers.
    assert c_eager.per_token_pair >= 4 * heads * layers
    exact = make_gradient_computer(sdpa, space=GradientSpace(), d=64, path="exact").cost()
    grad_dim = sum(p.numel() for p in sdpa.parameters())
    assert exact.sequential
    assert exact.per_example == 2 * 4 * grad_dim


def test_resident_counts_each_model_once() -> None:
    model = _eager_llama("sdpa")
    once = resident_bytes([model])
    assert resident_bytes([model, model]) == once
    assert once - resident_bytes([]) == sum(p.numel() * 4 for p in model.parameters()) + sum(
        b.numel() * b.element_size() for b in model.buffers()
    )


# --- through the pipeline ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def setup(tiny: TinyModels) -> dict[str, Any]:
    policy = ModelPolicy.from_paths([tiny.root])
    prompts = read_prompts(tiny.prompts_file)[:12]
    generated = [c for c in read_candidates(tiny.candidates_file) if c.name in ("tutor", "noise")]
    supplied = Candidate(
        "supplied",
        responses={p.id: [p.prompt[::-1][:300], p.prompt[:200]] for p in prompts},
        responses_per_prompt=2,
    )
    return {
        "policy": policy,
        "prompts": prompts,
        "candidates": [*generated, supplied],
        "student": str(tiny.student),
        "tutor": str(tiny.teachers["tutor"]),
    }


def _run(setup: dict[str, Any], budget: MemoryBudget, tmp: Path | None = None, **kw: Any) -> Any:
    events: list[ProgressEvent] = []
    result = rank_teachers(
        JobInputs(setup["prompts"], setup["candidates"], setup["student"]),
        ScoringConfig(responses_per_prompt=2, proj_dim=64, **kw),
        EngineContext(
            policy=setup["policy"],
            models=ModelCache(setup["policy"], capacity=4),
            responses=DirectoryResponseStore(tmp) if tmp is not None else None,
            budget=budget,
            progress=events.append,
        ),
    )
    return result, events


def _small_budget(setup: dict[str, Any]) -> MemoryBudget:
    """Just above what the student, the largest teacher and one long row need: batches of a few rows."""
    policy = setup["policy"]
    student = load_causal_lm(resolve_model(setup["student"], policy, field="s"), policy)
    teacher = load_causal_lm(resolve_model(setup["tutor"], policy, field="t"), policy)
    cost = make_gradient_computer(student, space=GradientSpace(), d=64).cost()
    resident = resident_bytes([student, teacher, teacher])  # two teachers may be cached beside it
    return MemoryBudget(int((resident + cost.bytes(3, 400)) / PLANNED_SHARE))


def test_scores_do_not_depend_on_the_budget(setup: dict[str, Any]) -> None:
    small, large = _small_budget(setup), MemoryBudget.from_gb(8)
    (a, ev_a), (b, ev_b) = _run(setup, small), _run(setup, large)
    batches = [sum(e.stage == "gradients" for e in ev) for ev in (ev_a, ev_b)]
    print(f"budgets {small.gb:.3f} / {large.gb:.0f} GB: {batches[0]} / {batches[1]} gradient progress events")
    assert batches[0] > batches[1] + 3  # the small budget really cut the batches smaller
    assert a.memory_budget_gb == pytest.approx(small.gb)
    assert b.memory_budget_gb == 8
    # Batches of different shapes round float32 gradients differently (~1e-7). GRACE divides the part
    # of a held-out row outside 22 training rows' span (d = 64) by the smoothing floor, which amplifies
    # that rounding: random-token rows (noise) move by up to 1.3e-6 per split, 5e-7 on the mean.
    # GRACE gets 1e-5; the other scores divide by no floor and keep 1e-6.
    for name, ca in a.candidates.items():
        cb = b.candidates[name]
        assert ca.responses == cb.responses, name  # generation is batch-independent too
        assert ca.grace.score == pytest.approx(cb.grace.score, rel=1e-5, abs=0)
        assert ca.score("g_norm") == pytest.approx(cb.score("g_norm"), rel=1e-6)
        assert ca.score("g_vendi") == pytest.approx(cb.score("g_vendi"), rel=1e-6)
        assert ca.score("student_nll") == pytest.approx(cb.score("student_nll"), rel=1e-6)
        assert ca.grace.split_scores == pytest.approx(cb.grace.split_scores, rel=1e-5)


def test_a_budget_too_small_is_refused_before_any_work(setup: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"needs at least \d+\.\d\d GB") as err:
        _run(setup, MemoryBudget.from_gb(0.5), tmp_path / "store")
    assert err.value.field == "memory_budget"
    assert not (tmp_path / "store").exists()  # nothing was generated


def _tutor(tiny: TinyModels) -> tuple[torch.nn.Module, Any]:
    policy = ModelPolicy.from_paths([tiny.root])
    source = resolve_model(str(tiny.teachers["tutor"]), policy, field="t")
    return load_causal_lm(source, policy), load_tokenizer(source, policy)


def test_generation_does_not_depend_on_batch_size(tiny: TinyModels) -> None:
    model, tok = _tutor(tiny)
    prompts = read_prompts(tiny.prompts_file)[:6]
    settings = GenerationSettings(m=3, temperature=0.9, top_p=0.95, max_tokens=40, seed=3)
    one = TransformersBackend(batch_size=1).generate(model, tok, prompts, settings)
    many = TransformersBackend(batch_size=64).generate(model, tok, prompts, settings)
    assert one == many
    assert len({t for g in many.texts for t in g}) > len(prompts)  # sampled, not one text repeated
    other = TransformersBackend(batch_size=7).generate(model, tok, prompts, replace(settings, seed=4))
    assert other.texts != many.texts


def test_responses_that_hit_max_tokens_are_told_apart(tiny: TinyModels) -> None:
    model, tok = _tutor(tiny)
    prompts = read_prompts(tiny.prompts_file)[:6]
    settings = GenerationSettings(m=2, temperature=0.6, top_p=1.0, max_tokens=3, seed=0)
    clipped = TransformersBackend().generate(model, tok, prompts, settings)
    assert clipped.n_at_cap == 12
    ended = TransformersBackend().generate(model, tok, prompts, replace(settings, max_tokens=250))
    assert ended.n_at_cap < 12  # the tutor learned to stop (its solutions end with EOS)
    for texts, caps in zip(ended.texts, ended.at_cap, strict=True):
        for text, cap in zip(texts, caps, strict=True):
            assert cap or len(tok(text)["input_ids"]) < 250


def test_grace_splits_in_flight_follow_the_budget() -> None:
    rows, d = 4096, 4096  # one split ~0.5 GB, the shared part ~0.4 GB
    assert grace_workers(MemoryBudget.from_gb(8), 1 * GB, (rows, d)) >= 2
    assert grace_workers(MemoryBudget.from_gb(1.3), 1 * GB, (rows, d)) == 1  # never zero
    few, many = (grace_workers(MemoryBudget.from_gb(gb), 1 * GB, (rows, d)) for gb in (2, 8))
    assert few < many


def test_after_freezing_the_imports_a_dropped_model_in_a_cycle_is_still_collected() -> None:
    """freeze_imports exempts what is alive at the call; a model made afterwards and dropped while
    it sits in a reference cycle (as hooks and peft wrappers make) is freed by release_memory."""
    freeze_imports()
    assert gc.get_freeze_count() > 0
    model = tiny_llama(97, eos_id=1, pad_id=0)
    model.cycle = [model]  # type: ignore[assignment]  # refcounts alone can never free it now
    alive = weakref.ref(model)
    gc.disable()  # no automatic collection between the two checks
    try:
        del model
        assert alive() is not None
        release_memory()
        assert alive() is None
    finally:
        gc.enable()
