"""Budget-aware ranking in rounds, on synthetic evidence with a known answer."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from grace_engine.errors import InvalidInput
from grace_engine.science.adaptive import RankingBudget, adaptive_evidence, prompt_order
from grace_engine.science.predictors import Evidence, GraceSettings, value
from grace_engine.science.uncertainty import Uncertainty, rank_uncertainty


def _full(rng: np.random.Generator, n: int, m: int, d: int, scale: float) -> Evidence:
    rows = n * m
    return Evidence(
        rng.normal(size=(rows, d)) * scale * rng.uniform(0.5, 2.0, size=(rows, 1)),
        rng.uniform(0.5, 3.0, rows),
        rng.integers(5, 80, rows).astype(np.float64),
        rng.uniform(10, 500, rows),
        np.full(rows, np.nan),
        m,
    )


class Lookup:
    """The evidence source of a benchmark: rows of a full run, recording what was asked for."""

    def __init__(self, full: dict[str, Evidence]) -> None:
        self.full = full
        self.asked: dict[str, list[int]] = {c: [] for c in full}

    def __call__(self, name: str, prompts: npt.NDArray[np.int64]) -> Evidence:
        self.asked[name] += prompts.tolist()
        return self.full[name].take(prompts)


def _assess(evidence: dict[str, Evidence], confidence: float = 0.9) -> Uncertainty:
    point = {c: float(value("grace", ev, GraceSettings()) or 0.0) for c, ev in evidence.items()}
    return rank_uncertainty(
        evidence, "grace", point, settings=GraceSettings(), n_subsamples=40, seed=0, confidence=confidence
    )


def _run(
    full: dict[str, Evidence], budget: RankingBudget
) -> tuple[dict[str, Evidence], Uncertainty, object, Lookup]:
    lookup = Lookup(full)
    n = next(iter(full.values())).n_prompts
    evidence, u, report = adaptive_evidence(
        list(full), n, {c: e.m for c, e in full.items()}, lookup, _assess, budget
    )
    return evidence, u, report, lookup


def test_a_dominant_candidate_settles_in_the_first_round() -> None:
    rng = np.random.default_rng(0)
    full = {
        "good": _full(rng, 128, 2, 6, 0.3),
        "b": _full(rng, 128, 2, 6, 1.0),
        "c": _full(rng, 128, 2, 6, 1.1),
    }
    evidence, u, report, lookup = _run(full, RankingBudget(initial_prompts=16, seed=3))
    assert report.stopped == "settled"
    assert len(report.rounds) == 1
    assert u.settled
    assert u.leader == "good"
    assert report.examples_used == 3 * 16 * 2
    assert report.compute_fraction == pytest.approx(16 / 128)
    assert lookup.asked["good"] == prompt_order(128, 3)[:16].tolist()
    # kept in the job's prompt order, so scores depend on the prompts taken, not their order
    np.testing.assert_array_equal(evidence["good"].prompt_index, np.sort(prompt_order(128, 3)[:16]))


def test_rounds_grow_drop_the_hopeless_and_never_repeat_a_prompt() -> None:
    rng = np.random.default_rng(1)
    full = {
        "twin-a": _full(rng, 96, 1, 5, 1.0),
        "twin-b": _full(rng, 96, 1, 5, 1.0),
        "hopeless": _full(rng, 96, 1, 5, 4.0),
    }
    evidence, u, report, lookup = _run(full, RankingBudget(initial_prompts=8, growth=2.0))
    rounds = report.rounds
    assert [r.n_prompts for r in rounds][:4] == [8, 16, 32, 64]
    assert list(report.dropped) == ["hopeless"]
    left_after = report.dropped["hopeless"]
    assert left_after <= 1  # out of the race within two rounds
    assert len(lookup.asked["hopeless"]) == rounds[left_after].n_prompts
    assert "hopeless" not in rounds[left_after + 1].active
    for name in ("twin-a", "twin-b"):
        assert len(lookup.asked[name]) == len(set(lookup.asked[name])) == evidence[name].n_prompts
    if not u.settled:
        assert report.stopped == "exhausted"
        assert evidence["twin-a"].n_prompts == 96
    used = report.examples_used
    assert used == sum(len(v) for v in lookup.asked.values())
    assert report.compute_fraction < 1.0


def test_each_round_is_scored_at_its_own_dim_and_a_full_sweep_equals_the_full_run() -> None:
    rng = np.random.default_rng(2)
    twin = _full(rng, 64, 2, 32, 1.0)
    full = {"twin-a": twin, "twin-b": twin}  # tied: never settles, so every prompt gets scored
    seen: list[tuple[int, int]] = []

    def assess(evidence: dict[str, Evidence], confidence: float) -> Uncertainty:
        seen.extend((ev.n_prompts, ev.gradients.shape[1]) for ev in evidence.values())
        return _assess(evidence, confidence)

    def dim(n: int) -> int:
        return 8 if n < 32 else 32

    evidence, _, report = adaptive_evidence(
        list(full), 64, {c: 2 for c in full}, Lookup(full), assess, RankingBudget(initial_prompts=16), dim=dim
    )
    assert report.stopped == "exhausted"
    assert [(r.n_prompts, r.proj_dim) for r in report.rounds] == [(16, 8), (32, 32), (64, 32)]
    assert seen == [(16, 8), (16, 8), (32, 32), (32, 32), (64, 32), (64, 32)]
    # the last round's evidence is the full run's rows in the full run's order: the same GRACE
    np.testing.assert_array_equal(evidence["twin-a"].gradients, twin.gradients)
    settings = GraceSettings()
    assert value("grace", evidence["twin-a"], settings) == value("grace", twin, settings)


def test_folding_keeps_the_units_of_a_projection_to_the_smaller_dim() -> None:
    rng = np.random.default_rng(4)
    big, small, grad_dim = 64, 16, 400
    g = rng.normal(size=(300, grad_dim))
    signs = rng.choice([-1.0, 1.0], size=(grad_dim, big))
    ev = Evidence(g @ signs / np.sqrt(grad_dim), np.ones(300), np.ones(300), np.ones(300), np.ones(300), 1)
    folded = ev.folded(small).gradients
    assert folded.shape == (300, small)
    # column b of the fold sums columns b, b + 16, ... of the map, scaled by sqrt(16 / 64)
    np.testing.assert_allclose(folded[:, 3], ev.gradients[:, 3::small].sum(axis=1) / 2.0)
    # E|y|^2 = (d / D) |g|^2 at either d
    ratio = np.mean(np.sum(folded**2, axis=1)) / np.mean(np.sum(g**2, axis=1))
    assert ratio == pytest.approx(small / grad_dim, rel=0.1)
    assert ev.folded(big) is ev


def test_an_example_budget_stops_the_rounds() -> None:
    rng = np.random.default_rng(2)
    full = {c: _full(rng, 80, 2, 5, 1.0) for c in ("a", "b", "c")}
    _, _, report, _ = _run(full, RankingBudget(examples=150, initial_prompts=10))
    assert report.stopped == "budget"
    assert report.examples_used <= 150
    with pytest.raises(InvalidInput) as err:
        _run(full, RankingBudget(examples=10, initial_prompts=10))
    assert err.value.field == "budget.examples"


def test_a_time_budget_is_checked_between_rounds() -> None:
    rng = np.random.default_rng(3)
    full = {c: _full(rng, 64, 1, 4, 1.0) for c in ("a", "b")}
    ticks = iter(range(0, 10_000, 5))
    _, _, report = adaptive_evidence(
        list(full), 64, {"a": 1, "b": 1}, Lookup(full), _assess, RankingBudget(seconds=12, initial_prompts=8),
        clock=lambda: float(next(ticks)),
    )  # fmt: skip
    assert report.stopped in ("budget", "settled")
    if report.stopped == "budget":
        assert len(report.rounds) < 4


@pytest.mark.parametrize(
    ("budget", "field"),
    [
        (RankingBudget(examples=0), "budget.examples"),
        (RankingBudget(seconds=0), "budget.seconds"),
        (RankingBudget(initial_prompts=3), "budget.initial_prompts"),
        (RankingBudget(growth=1.0), "budget.growth"),
        (RankingBudget(drop_below=0.5), "budget.drop_below"),
    ],
)
def test_bad_budgets_name_the_field(budget: RankingBudget, field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        budget.check()
    assert err.value.field == field
