"""The ranking's uncertainty at the job's n: paired repeated K-fold cross-validation, copies across
prompts, learning curves, P(top-1) by subsampling; each piece against a slow or scipy reference."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from scipy import stats

from grace_engine.science import crossval, learning_curve
from grace_engine.science.caveats import unsettled
from grace_engine.science.near_duplicates import find_copies
from grace_engine.science.predictors import PREDICTORS, Evidence, GraceSettings, value
from grace_engine.science.uncertainty import Draws, rank_uncertainty, subsample_plan
from tests.test_adaptive import _full


def _evidence(rng: np.random.Generator, n: int, m: int, d: int, scale: float = 1.0) -> Evidence:
    """test_adaptive's synthetic rows, with every prompt answered (so teacher accuracy is defined)."""
    ev = _full(rng, n, m, d, scale)
    return replace(ev, correct=rng.integers(0, 2, ev.losses.shape[0]).astype(np.float64))


def slow_energies(g: np.ndarray, test: np.ndarray, train: np.ndarray, smoothing: float = 1e-3) -> np.ndarray:
    """Held-out energies the obvious way: the d x d second moment of the training unit rows, its
    clipped and smoothed spectrum, then x^T K^-1 x row by row."""
    unit = g[train] / np.maximum(np.linalg.norm(g[train], axis=1, keepdims=True), 1e-12)
    w, v = np.linalg.eigh(unit.T @ unit / len(train))
    w = np.maximum(w, 1e-12)
    w = np.maximum((1 - smoothing) * w + smoothing * w.mean(), 1e-12)
    inverse = v @ np.diag(1.0 / w) @ v.T
    return np.array([float(x @ inverse @ x) for x in g[test]])


@pytest.mark.parametrize(("n", "m", "d"), [(30, 3, 8), (12, 2, 40)])  # more and fewer rows than d
def test_contributions_are_held_out_energies_over_the_folds(n: int, m: int, d: int) -> None:
    rng = np.random.default_rng(n)
    ev = _evidence(rng, n, m, d)
    folds = crossval.fold_assignment(n, repeats=3, seed=4)
    got = crossval.grace_contributions(ev, folds)
    assert got.shape == (3, n)
    for r in range(3):
        sizes = np.bincount(folds[r])
        assert len(sizes) == 10
        assert sizes.max() - sizes.min() <= 1
        for j in np.unique(folds[r]):
            held = np.flatnonzero(folds[r] == j)
            energies = slow_energies(ev.gradients, ev.rows(held), ev.rows(np.flatnonzero(folds[r] != j)))
            np.testing.assert_allclose(got[r, held], energies.reshape(-1, m).mean(axis=1), rtol=1e-6)


def test_copies_of_a_held_out_text_stay_out_of_training() -> None:
    rng = np.random.default_rng(1)
    n, m = 20, 2
    ev = _evidence(rng, n, m, 6)
    texts = [[f"solution {p} step {j} " * 4 for j in range(m)] for p in range(n)]
    texts[7][1] = texts[3][0]  # one text reused under another prompt
    texts[11][0] = texts[3][0].upper() + "!"  # the same after normalisation
    copies = find_copies(texts)
    assert (copies.n_clusters, copies.n_rows) == (1, 3)
    folds = crossval.fold_assignment(n, repeats=1, seed=0)
    got = crossval.grace_contributions(ev, folds, copies=copies.cluster)
    plain = crossval.grace_contributions(ev, folds)
    copied_rows = np.flatnonzero(copies.cluster == copies.cluster[ev.rows([3])[0]])
    for j in np.unique(folds[0]):
        held = np.flatnonzero(folds[0] == j)
        train = ev.rows(np.flatnonzero(folds[0] != j))
        if np.isin(copied_rows, ev.rows(held)).any():
            train = np.setdiff1d(train, copied_rows)
        want = slow_energies(ev.gradients, ev.rows(held), train).reshape(-1, m).mean(axis=1)
        np.testing.assert_allclose(got[0, held], want, rtol=1e-6)
    assert not np.allclose(got, plain)


def test_near_identical_texts_cluster_and_different_ones_do_not() -> None:
    base = (
        "Natalia sold 48 clips to her friends in April. In May she sold half as many clips as in April, "
        "which is 48 / 2 = 24 clips. Altogether she sold 48 + 24 = 72 clips in April and May. Each clip "
        "cost her 2 dollars to make and she sold it for 3 dollars, so her profit was 72 dollars. The "
        "answer is 72."
    )
    near = base.replace("Altogether", "In total", 1)  # one word of ~60 changed
    texts = [[base, "an unrelated answer about trains and speeds"], [near, "the answer is 5"], ["x", "y"]]
    copies = find_copies(texts)
    assert copies.cluster[0] == copies.cluster[2]
    assert len(set(copies.cluster.tolist())) == 5
    assert (copies.n_clusters, copies.n_rows) == (1, 2)
    same_prompt = find_copies([["same text here", "same text here"], ["other", "words"]])
    assert (same_prompt.n_clusters, same_prompt.n_rows) == (0, 0)  # copies within a prompt share its fold


@pytest.mark.parametrize("name", ["g_norm", "length", "student_nll", "rsr", "teacher_accuracy"])
def test_mean_contributions_average_to_the_predictor(name: str) -> None:
    ev = _evidence(np.random.default_rng(2), 15, 3, 5)
    contributions = PREDICTORS[name].contributions
    assert contributions is not None
    folds = crossval.fold_assignment(ev.n_prompts, repeats=2)
    per_prompt = contributions(ev, folds, GraceSettings(), None)
    assert per_prompt.shape == folds.shape
    assert float(np.nanmean(per_prompt[1])) == pytest.approx(value(name, ev, GraceSettings()), rel=1e-12)


def test_an_untrained_comparison_is_scipys_paired_t_and_wilcoxon() -> None:
    rng = np.random.default_rng(3)
    leader, other = rng.gamma(2.0, size=25), rng.gamma(2.0, size=25) + 0.4
    folds = crossval.fold_assignment(25, repeats=1)
    got = crossval.compare(
        leader[None], other[None], folds, lower_is_better=True, confidence=0.9, trained=False
    )
    ref = stats.ttest_rel(other, leader, alternative="greater")
    assert got.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    ci = stats.ttest_rel(other, leader).confidence_interval(0.9)
    assert got.interval == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert got.wilcoxon_p == pytest.approx(stats.wilcoxon(other - leader, alternative="greater").pvalue)
    assert got.leader_better == pytest.approx(np.mean(other > leader))


def test_a_cross_validated_comparison_is_nadeau_bengio_corrected() -> None:
    rng = np.random.default_rng(4)
    n, repeats = 40, 5
    folds = crossval.fold_assignment(n, repeats=repeats, seed=2)
    leader = rng.gamma(2.0, size=(repeats, n))
    other = leader + 0.3 + rng.normal(scale=0.5, size=(repeats, n))
    got = crossval.compare(leader, other, folds, lower_is_better=True, confidence=0.9, trained=True)
    # Slow: every (repeat, fold) mean difference; variance corrected by (1/J + n_test/n_train).
    means = [
        float(np.mean([other[r, p] - leader[r, p] for p in range(n) if folds[r, p] == j]))
        for r in range(repeats)
        for j in range(10)
    ]
    se = math.sqrt((1 / len(means) + 4 / 36) * np.var(means, ddof=1))
    assert got.se == pytest.approx(se, rel=1e-9)
    assert got.p_value == pytest.approx(stats.t.sf(got.gap / se, len(means) - 1), rel=1e-9)
    assert got.gap == pytest.approx(float(np.mean(other - leader)), rel=1e-12)
    lo, hi = got.interval
    assert lo < got.gap < hi
    assert hi - lo == pytest.approx(2 * stats.t.ppf(0.95, len(means) - 1) * se, rel=1e-9)
    # the naive t over folds, which ignores the overlapping training sets, is narrower
    assert se > np.std(means, ddof=1) / math.sqrt(len(means))


def test_a_curve_of_a_plus_c_over_b_is_recovered_and_extrapolated() -> None:
    curve = learning_curve.fit([10, 20, 30, 40], [2 + 8 / b for b in (10, 20, 30, 40)])
    assert (curve.a, curve.c) == (pytest.approx(2.0), pytest.approx(8.0))
    assert learning_curve.fit([20, 40], [1.0, 2.0]).fitted is False
    # A constant gap g with standard error s at n clears a t interval at n (t s / g)^2 prompts.
    t = stats.t.ppf(0.95, 99)
    need = learning_curve.prompts_to_settle(lambda b: 0.1, 0.2, 50, 99, 0.9)
    assert need == math.ceil(50 * (t * 0.2 / 0.1) ** 2)
    assert learning_curve.prompts_to_settle(lambda b: -0.1, 0.2, 50, 99, 0.9) is None
    lead = learning_curve.fit([10, 20, 40], [1 + 20 / b for b in (10, 20, 40)])
    runner = learning_curve.fit([10, 20, 40], [1.5 + 10 / b for b in (10, 20, 40)])
    assert learning_curve.crossing(lead, runner, 40, lower_is_better=True) is None  # the gap widens
    assert learning_curve.crossing(runner, lead, 10, lower_is_better=True) == 20  # 1.5+10/b = 1+20/b


def test_subsamples_are_without_replacement_and_depend_only_on_their_arguments() -> None:
    plan = subsample_plan(24, 30, seed=5)
    assert [(b, len(s)) for b, s in plan] == [(12, 30), (6, 20), (18, 20)]
    for _, subsamples in plan:
        for s in subsamples:
            assert len(set(s.tolist())) == len(s)
    again = subsample_plan(24, 30, seed=5)
    for (_, first), (_, second) in zip(plan, again, strict=True):
        assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


def _ranked(evidence: dict[str, Evidence], score: str = "grace", **kw: object):  # type: ignore[no-untyped-def]
    point = {c: float(value(score, ev, GraceSettings()) or 0.0) for c, ev in evidence.items()}
    return point, rank_uncertainty(evidence, score, point, settings=GraceSettings(), **kw)  # type: ignore[arg-type]


def test_a_dominant_leader_is_settled_and_every_interval_holds_its_point() -> None:
    rng = np.random.default_rng(3)
    evidence = {f"c{k}": _evidence(rng, 40, 2, 6, scale=s) for k, s in enumerate((0.3, 1.0, 1.1, 1.2))}
    point, u = _ranked(evidence, n_subsamples=40, seed=1)
    assert (u.method, u.leader, u.settled, u.prompts_to_settle) == ("paired_cv", "c0", True, None)
    assert math.isclose(sum(c.p_top1 for c in u.candidates.values()), 1.0, abs_tol=1e-9)
    assert u.candidates["c0"].vs_leader is None
    for name, c in u.candidates.items():
        assert c.curve.sizes == [10, 20, 30, 40]
        assert c.curve.values[-1] == point[name]
        if name != "c0":
            assert c.vs_leader is not None
            lo, hi = c.vs_leader.interval
            assert 0 < lo <= c.vs_leader.gap <= hi
            assert c.vs_leader.gap == pytest.approx(c.cv_score - u.candidates["c0"].cv_score)  # type: ignore[operator]
    _, again = _ranked(evidence, n_subsamples=40, seed=1)
    assert again == u


def test_twins_are_not_settled_and_the_warning_says_why() -> None:
    rng = np.random.default_rng(4)
    evidence = {"a": _evidence(rng, 30, 2, 5), "b": _evidence(rng, 30, 2, 5)}
    for score in ("grace", "rsr", "student_nll", "g_vendi"):
        _, u = _ranked(evidence, score, n_subsamples=40)
        assert not u.settled
        assert u.method == {"grace": "paired_cv", "g_vendi": "subsampling"}.get(score, "paired")
        assert 0.0 < u.candidates["a"].p_top1 < 1.0
        assert u.prompts_to_settle is None or u.prompts_to_settle > 30
        warning = unsettled(u)
        assert warning is not None
        assert warning.code == "ranking_unsettled"
        assert f"over 30 prompts is not settled: {'' if score == 'g_vendi' else 'by '}" in warning.message
        if score == "grace":
            assert "10 x 10-fold cross-validation" in warning.message
            assert "signed-rank p" in warning.message
    assert unsettled(_ranked({"a": evidence["a"]})[1]) is None  # alone: nothing to settle


def test_units_draws_give_the_joint_uncertainty_and_survive_json() -> None:
    rng = np.random.default_rng(5)
    evidence = {f"c{k}": _evidence(rng, 30, 2, 6, scale=s) for k, s in enumerate((0.6, 1.0, 1.05))}
    texts = {c: [[f"{c} {p} {j}" for j in range(2)] for p in range(30)] for c in evidence}
    point, joint = _ranked(evidence, n_subsamples=25, seed=7, texts=texts)
    alone = {
        c: Draws.from_json(
            _ranked({c: ev}, n_subsamples=25, seed=7, texts={c: texts[c]})[1].draws[c].to_json()
        )
        for c, ev in evidence.items()
    }
    for c in evidence:
        np.testing.assert_array_equal(alone[c].subsamples, joint.draws[c].subsamples)
        np.testing.assert_array_equal(alone[c].contributions, joint.draws[c].contributions)  # type: ignore[arg-type]
    assembled = rank_uncertainty(
        evidence, "grace", point, settings=GraceSettings(), n_subsamples=25, seed=7, known=alone
    )
    assert assembled == joint
    with pytest.raises(ValueError, match="one value per subsample"):
        rank_uncertainty(
            evidence,
            "grace",
            point,
            settings=GraceSettings(),
            n_subsamples=10,
            seed=7,
            known={"c1": alone["c1"]},
        )


# --- permutation tests of a validation's correlations ------------------------------------------


@pytest.mark.parametrize("n", [5, 7])
def test_spearman_permutation_p_is_scipys_exact_permutation_test(n: int) -> None:
    from grace_engine.science.permutation import spearman_p

    rng = np.random.default_rng(n)
    x, y = rng.normal(size=n), rng.normal(size=n) + 0.5 * np.arange(n)
    y[1] = y[2]  # a tie: the test stays exact with average ranks
    ref = stats.permutation_test(
        (x,),
        lambda a: stats.spearmanr(a, y).statistic,
        permutation_type="pairings",
        alternative="greater",
        n_resamples=math.factorial(n),
    )
    assert spearman_p(x, y) == pytest.approx(ref.pvalue, rel=1e-9)


def test_critical_rho_is_the_textbook_table_and_monte_carlo_above_ten() -> None:
    from grace_engine.science.permutation import MONTE_CARLO, critical_rho, spearman_p

    table = {5: 0.900, 6: 0.829, 7: 0.714, 8: 0.643, 9: 0.600, 10: 0.564}
    for n, rho in table.items():
        assert critical_rho(n) == pytest.approx(rho, abs=5e-4)
    assert critical_rho(3) is None  # 1/3! > 5%: nothing three candidates say reaches it
    p = spearman_p(list(range(12)), list(range(12)))
    assert p == pytest.approx(1 / (MONTE_CARLO + 1))  # Monte Carlo: (k + 1) / (N + 1)
    assert 0.3 < critical_rho(12) < 0.6  # type: ignore[operator]
