"""Correlation of a score with distillation outcomes, against scipy as the independent reference."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from grace_engine.errors import InvalidInput
from grace_engine.validation import correlate, kendall_tau_b


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
