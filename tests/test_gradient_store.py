"""The gradient store: content addresses, the bounded directory store, and rank_teachers reusing
stored gradients (checked against a run that computes everything, at the same settings)."""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from grace_engine.models.candidates import Candidate
from grace_engine.models.data import Prompt, StudentFormat, read_prompts
from grace_engine.models.loading import ModelCache, ModelPolicy, ModelSource
from grace_engine.models.tiny_models import TinyModels
from grace_engine.pipelines.config import ScoringConfig
from grace_engine.pipelines.context import EngineContext, JobInputs
from grace_engine.pipelines.results import RankingResult
from grace_engine.pipelines.scoring import rank_teachers
from grace_engine.science.gradient_space import GradientSpace
from grace_engine.stores.gradient_store import (
    DirectoryGradientStore,
    GradientStore,
    StoredGradients,
    content_hash,
    gradient_key,
)


def _stored(rows: int, d: int, seed: int = 0) -> StoredGradients:
    rng = np.random.default_rng(seed)
    return StoredGradients(
        rng.standard_normal((rows, d)).astype(np.float32),
        rng.random(rows),
        rng.integers(1, 50, rows),
        rng.random(rows) * 10,
    )


def test_stored_gradients_round_trip_exactly() -> None:
    original = _stored(12, 16)
    back = StoredGradients.from_bytes(original.to_bytes())
    for name in ("gradients", "losses", "n_tokens", "rank_sums"):
        np.testing.assert_array_equal(getattr(back, name), getattr(original, name))
    assert back.gradients.dtype == np.float32
    picked = back.rows(np.array([3, 0]))
    np.testing.assert_array_equal(picked.gradients, original.gradients[[3, 0]])


def _key(**changes: Any) -> str:
    """The key of a fixed candidate under ``ScoringConfig(**changes)`` (or another student,
    prompts or responses)."""
    content = {
        "student_hash": changes.pop("student_hash", "s"),
        "prompts": changes.pop("prompts", [Prompt("a", "one"), Prompt("b", "two")]),
        "responses": changes.pop("responses", [["x", "y"], ["z", "w"]]),
    }
    cfg = ScoringConfig(**{"proj_dim": 32, **changes})
    return gradient_key(**content, settings=cfg.gradient_settings())


def test_the_key_changes_with_everything_gradients_depend_on_and_nothing_else() -> None:
    base = _key()
    changed = [
        _key(student_hash="t"),
        _key(student_format=StudentFormat(max_length=100)),
        _key(prompts=[Prompt("a", "one!"), Prompt("b", "two")]),
        _key(responses=[["x", "y"], ["z", "v"]]),
        _key(gradient_space=GradientSpace(kind="lora")),
        _key(gradient_space=GradientSpace(lora_alpha=4.0)),
        _key(proj_dim=64),
        _key(seed=1),
        _key(path="exact"),
        _key(factor_dim=32),
    ]
    assert base not in changed
    assert len(set(changed)) == len(changed)
    # prompt ids and answers do not change a gradient, nor do GRACE's own settings
    assert _key(prompts=[Prompt("p0", "one", "1"), Prompt("p1", "two")]) == base
    assert _key(n_splits=3, test_fraction=0.3, smoothing=0.1, length_factor=True, bootstrap=0) == base


def test_content_hash_follows_the_files(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "weights.bin").write_bytes(b"\x00" * 10)
    source = ModelSource(str(tmp_path), is_hub=False)
    first = content_hash(source)
    assert content_hash(source) == first
    (tmp_path / "weights.bin").write_bytes(b"\x01" * 11)
    assert content_hash(source) != first
    assert content_hash(ModelSource("org/model", is_hub=True)) != content_hash(
        ModelSource("org/other", is_hub=True)
    )


def test_the_directory_store_stays_within_its_bytes_dropping_the_least_recently_used(tmp_path: Path) -> None:
    one = len(_stored(8, 64).to_bytes())
    store = DirectoryGradientStore(tmp_path, max_bytes=int(2.5 * one))
    store.put("aa01", _stored(8, 64, 1))
    store.put("bb02", _stored(8, 64, 2))
    old = os.stat(tmp_path / "aa" / "aa01.npz").st_mtime_ns
    os.utime(tmp_path / "bb" / "bb02.npz", ns=(old - 10**9, old - 10**9))  # bb02 is now the older
    assert store.get("aa01") is not None  # and using aa01 makes it the most recent
    store.put("cc03", _stored(8, 64, 3))
    assert store.get("bb02") is None
    assert store.get("aa01") is not None
    found = store.get("cc03")
    assert found is not None
    np.testing.assert_array_equal(found.gradients, _stored(8, 64, 3).gradients)
    assert store.get("dd04") is None
    assert sum(p.stat().st_size for p in tmp_path.glob("*/*.npz")) <= 2.5 * one


# --- rank_teachers with a store ------------------------------------------------------------------


def _candidates(prompts: list[Prompt], names: tuple[str, ...]) -> list[Candidate]:
    styles = {
        "plain": lambda p: [f"The answer is {len(p.prompt) % 7}.", "I think it is 3."],
        "verbose": lambda p: [f"Let us think. {p.prompt} So the answer is 4.", "Step by step: 2 + 2 = 4."],
        "terse": lambda p: ["4", "5"],
    }
    return [Candidate(name=n, responses={p.id: styles[n](p) for p in prompts}) for n in names]


@pytest.fixture(scope="module")
def setup(tiny: TinyModels) -> dict[str, Any]:
    policy = ModelPolicy.from_paths([tiny.root])
    prompts = read_prompts(tiny.prompts_file)[:12]
    return {"prompts": prompts, "policy": policy, "cache": ModelCache(policy, capacity=2), "tiny": tiny}


def _rank(
    setup: dict[str, Any],
    names: tuple[str, ...],
    config: ScoringConfig,
    gradients: GradientStore | None = None,
) -> RankingResult:
    inputs = JobInputs(setup["prompts"], _candidates(setup["prompts"], names), str(setup["tiny"].student))
    ctx = EngineContext(policy=setup["policy"], models=setup["cache"], gradients=gradients)
    return rank_teachers(inputs, config, ctx)


def _same_scores(a: RankingResult, b: RankingResult) -> None:
    assert [c["name"] for c in a.ranking_rows()] == [c["name"] for c in b.ranking_rows()]
    for name, cand in a.candidates.items():
        other = b.candidates[name]
        assert cand.grace is not None
        assert other.grace is not None
        assert cand.grace.score == pytest.approx(other.grace.score, rel=1e-6)
        assert cand.score("g_norm") == pytest.approx(other.score("g_norm"), rel=1e-6)
        assert cand.score("student_nll") == pytest.approx(other.score("student_nll"), rel=1e-9)


def test_a_re_score_with_other_splits_computes_no_gradient_and_matches_a_fresh_run(
    setup: dict[str, Any],
    tmp_path: Path,
    gradient_calls: list[int],
    no_model_loads: Callable[[], AbstractContextManager[None]],
) -> None:
    store = DirectoryGradientStore(tmp_path, max_bytes=10**9)
    first = ScoringConfig(responses_per_prompt=2, proj_dim=32, bootstrap=50)
    calls = gradient_calls
    _rank(setup, ("plain", "verbose"), first, gradients=store)
    assert calls == [24, 24]
    assert len(list(tmp_path.glob("*/*.npz"))) == 2
    for changed in (
        replace(first, n_splits=4, test_fraction=0.25),
        replace(first, length_factor=True, smoothing=1e-2),
    ):
        calls.clear()
        with no_model_loads():
            fresh = {**setup, "cache": ModelCache(setup["policy"])}  # nothing loaded in it yet
            reused = _rank(fresh, ("plain", "verbose"), changed, gradients=store)
        assert calls == []
        reference = _rank(setup, ("plain", "verbose"), changed)  # computes everything
        _same_scores(reused, reference)
        assert reused.projection == reference.projection
        assert reused.grad_dim == reference.grad_dim
        assert reused.to_dict()["warnings"] == reference.to_dict()["warnings"]


def test_adding_a_candidate_computes_only_the_new_one(
    setup: dict[str, Any], tmp_path: Path, gradient_calls: list[int]
) -> None:
    store = DirectoryGradientStore(tmp_path, max_bytes=10**9)
    config = ScoringConfig(responses_per_prompt=2, proj_dim=32, bootstrap=50)
    _rank(setup, ("plain", "verbose"), config, gradients=store)
    calls = gradient_calls
    calls.clear()
    grown = _rank(setup, ("plain", "verbose", "terse"), config, gradients=store)
    assert calls == [24]
    calls.clear()
    _same_scores(grown, _rank(setup, ("plain", "verbose", "terse"), config))
    assert calls == [24, 24, 24]
    # another projection is another address: nothing is reused
    calls.clear()
    _rank(setup, ("plain", "verbose"), replace(config, seed=1), gradients=store)
    assert calls == [24, 24]
