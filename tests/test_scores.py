"""GRACE and the baselines against plain restatements of design.md §2.5.

The reference below is written from the spec, loop by loop, and imports nothing from the engine.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from grace_engine.errors import InvalidInput
from grace_engine.science.evidence import Evidence, GraceSettings
from grace_engine.science.grace import (
    answers_match,
    extract_answer,
    grace,
    log_length_factor,
    teacher_accuracy,
)
from grace_engine.science.predictors import value as predictor_value


def _on_rows(
    name: str, gradients: object = None, losses: object = None, n_tokens: object = None
) -> float | None:
    """Predictor ``name`` on one response per prompt with these rows (what is not given is zero)."""
    g = np.asarray(
        gradients if gradients is not None else np.zeros((len(np.asarray(losses)), 0)), dtype=float
    )
    rows = g.shape[0]
    zeros = np.zeros(rows)
    ev = Evidence(
        g,
        zeros if losses is None else np.asarray(losses, dtype=float),
        np.ones(rows) if n_tokens is None else np.asarray(n_tokens, dtype=float),
        zeros,
        np.full(rows, np.nan),
        1,
    )
    return predictor_value(name, ev, GraceSettings())


def reference_grace(g: np.ndarray, m: int, splits: int = 10, f: float = 0.1, nu: float = 1e-3) -> float:
    g = np.array(g, dtype=np.float64)
    n = g.shape[0] // m
    n_test = max(1, int(n * f))
    values = []
    for s in range(splits):
        perm = np.random.default_rng(s).permutation(n)
        test_prompts, train_prompts = perm[len(perm) - n_test :], perm[: len(perm) - n_test]
        train = np.stack([g[p * m + j] for p in train_prompts for j in range(m)])
        test = np.stack([g[p * m + j] for p in test_prompts for j in range(m)])
        for i in range(train.shape[0]):
            train[i] = train[i] / max(np.linalg.norm(train[i]), 1e-12)
        k_tr = train.T @ train / train.shape[0]
        k_te = test.T @ test / test.shape[0]
        w, v = np.linalg.eigh(k_tr)
        w = np.clip(w, 1e-12, None)
        w = (1 - nu) * w + nu * np.mean(w)
        w = np.clip(w, 1e-12, None)
        inv = v @ np.diag(1.0 / w) @ v.T
        values.append(np.trace(inv @ k_te))
    return float(np.mean(values))


def _prompt_major(rng: np.random.Generator, n: int, m: int, d: int) -> np.ndarray:
    return rng.normal(size=(n * m, d)) * rng.uniform(0.1, 3.0, size=(n * m, 1))


@pytest.mark.parametrize(
    ("n", "m", "d", "b"),
    [(24, 4, 16, 12), (24, 4, 64, 12), (24, 4, 16, 6), (40, 2, 32, 20), (10, 1, 8, 2), (30, 3, 200, 15)],
)
def test_grace_of_many_subsets_is_grace_of_each(n: int, m: int, d: int, b: int) -> None:
    """Stacked splits (both the X^T X and the row-space cases) against the slow reference, subset
    by subset, rows taken in the subset's order."""
    from grace_engine.science.grace import grace_subsets

    rng = np.random.default_rng(n * d + b)
    g = _prompt_major(rng, n, m, d)
    subsets = np.stack([rng.choice(n, b, replace=False) for _ in range(7)])
    got = grace_subsets(g, m, subsets, n_splits=4, test_fraction=0.2, smoothing=1e-2)
    for value, sub in zip(got, subsets, strict=True):
        rows = (sub[:, None] * m + np.arange(m)).ravel()
        assert value == pytest.approx(reference_grace(g[rows], m, splits=4, f=0.2, nu=1e-2), rel=1e-9)
    with pytest.raises(InvalidInput, match="at least 2 prompts") as err:
        grace_subsets(g, m, subsets[:, :1])
    assert err.value.field == "subsets"
    with pytest.raises(InvalidInput, match=r"in \[0, "):
        grace_subsets(g, m, subsets + n)


@pytest.mark.parametrize(
    ("n", "m", "d", "note"),
    [
        (40, 4, 16, "rows >> d"),
        (12, 4, 8, "typical small"),
        (5, 2, 6, "one test prompt (int(0.5) = 0 -> 1)"),
        (9, 1, 30, "m = 1 and d larger than the rows"),
        (20, 3, 200, "d much larger than the rows"),
        (2, 4, 5, "two prompts: one train, one test"),
    ],
)
def test_grace_matches_reference(n: int, m: int, d: int, note: str) -> None:
    g = _prompt_major(np.random.default_rng(n * 1000 + m * 10 + d), n, m, d)
    result = grace(g, m)
    expected = reference_grace(g, m)
    assert result.score == pytest.approx(expected, rel=1e-10), note
    assert result.score == pytest.approx(np.mean(result.split_scores), rel=1e-12)
    assert result.variance + result.bias == pytest.approx(result.score, rel=1e-9)
    assert len(result.split_scores) == 10


def test_grace_rank_deficient_gradients() -> None:
    rng = np.random.default_rng(7)
    basis = rng.normal(size=(3, 24))
    g = rng.normal(size=(60, 3)) @ basis  # rank 3 in 24 dims
    g[5] = 0.0  # a zero gradient exercises the norm clip
    for m in (1, 3, 4):
        assert grace(g, m).score == pytest.approx(reference_grace(g, m), rel=1e-10)


def test_grace_rank_deficient_gradients_with_more_dimensions_than_rows() -> None:
    """The row-space path: rank 3 in 200 dimensions, 40 rows, including a zero row."""
    rng = np.random.default_rng(8)
    g = rng.normal(size=(40, 3)) @ rng.normal(size=(3, 200))
    g[7] = 0.0
    for m in (1, 2, 4):
        result = grace(g, m)
        assert result.score == pytest.approx(reference_grace(g, m), rel=1e-7)
        assert result.variance + result.bias == pytest.approx(result.score, rel=1e-7)


def test_grace_nondefault_settings_match_reference() -> None:
    g = _prompt_major(np.random.default_rng(3), 30, 2, 10)
    got = grace(g, 2, n_splits=4, test_fraction=0.25, smoothing=0.05)
    assert got.score == pytest.approx(reference_grace(g, 2, splits=4, f=0.25, nu=0.05), rel=1e-10)
    assert got.n_test_prompts == 7


def test_grace_bias_is_the_heldout_mean_part() -> None:
    # m = 1 with one held-out prompt: K_te = mu mu^T, so all of GRACE is bias.
    g = _prompt_major(np.random.default_rng(11), 6, 1, 4)
    r = grace(g, 1)
    assert r.n_test_prompts == 1
    assert r.variance == pytest.approx(0.0, abs=1e-12 * r.score)
    assert r.bias == pytest.approx(r.score, rel=1e-10)
    # Identical responses per prompt: the held-out covariance vanishes as well.
    rep = np.repeat(g, 3, axis=0)
    assert grace(rep, 3).variance == pytest.approx(0.0, abs=1e-9)


def test_grace_is_invariant_to_train_scale_but_not_test_scale() -> None:
    g = _prompt_major(np.random.default_rng(5), 20, 2, 6)
    a = grace(g, 2).score
    assert grace(3.0 * g, 2).score == pytest.approx(9.0 * a, rel=1e-10)


@pytest.mark.parametrize(
    ("gradients", "m", "field", "needle"),
    [
        (np.zeros((0, 4)), 1, "gradients", "non-empty"),
        (np.ones((7, 4)), 2, "gradients", "multiple of n_per_prompt"),
        (np.ones((4, 4)), 4, "gradients", "at least 2 prompts"),
        (np.full((4, 2), np.nan), 1, "gradients", "NaN"),
        (np.ones(4), 1, "gradients", "2-D"),
        (np.ones((4, 2)), 0, "n_per_prompt", "at least 1"),
    ],
)
def test_grace_rejects_bad_input(gradients: np.ndarray, m: int, field: str, needle: str) -> None:
    with pytest.raises(InvalidInput) as err:
        grace(gradients, m)
    assert err.value.field == field
    assert needle in err.value.message


def test_grace_rejects_bad_settings() -> None:
    g = np.ones((8, 2))
    for kwargs, field in [
        ({"n_splits": 0}, "n_splits"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"smoothing": -0.1}, "smoothing"),
    ]:
        with pytest.raises(InvalidInput) as err:
            grace(g, 1, **kwargs)  # type: ignore[arg-type]
        assert err.value.field == field


def test_g_norm_hand_computed() -> None:
    g = np.array([[3.0, 4.0], [1.0, 0.0], [0.0, 0.0]])
    assert _on_rows("g_norm", g) == pytest.approx((25 + 1 + 0) / 3)


def test_g_vendi_hand_computed() -> None:
    assert _on_rows("g_vendi", np.eye(4) * np.array([[1.0], [2.0], [3.0], [4.0]])) == pytest.approx(4.0)
    assert _on_rows("g_vendi", np.array([[1.0, 1.0], [2.0, 2.0], [-3.0, -3.0]])) == pytest.approx(1.0)
    # Two orthogonal directions holding 3 and 1 of 4 unit rows: p = (3/4, 1/4).
    rows = np.array([[1.0, 0], [2.0, 0], [5.0, 0], [0, 7.0]])
    p = np.array([0.75, 0.25])
    assert _on_rows("g_vendi", rows) == pytest.approx(math.exp(-np.sum(p * np.log(p))))
    assert _on_rows("g_vendi", np.zeros((3, 2))) == 0.0


def test_student_nll_is_token_weighted() -> None:
    assert _on_rows("student_nll", losses=[1.0, 4.0], n_tokens=[3, 1]) == pytest.approx((3 * 1.0 + 4.0) / 4)


def test_log_length_factor() -> None:
    np.testing.assert_allclose(log_length_factor([1, 2, 10]), np.log([2.0, 2.0, 10.0]))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so 3+4 = 7 and the total is \\boxed{18}.", "18"),
        ("first \\boxed{1} then \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("We get 5 apples. The answer is 12.", "12"),
        ("The answer is: $1,000.", "1,000"),
        ("the final answer is forty", "forty"),
        ("He has 3 cats and 4 dogs, so 7 pets", "7"),
        ("it costs -2.5 dollars", "-2.5"),
        ("no digits at all", None),
        ("unclosed \\boxed{12", "12"),
    ],
)
def test_extract_answer(text: str, expected: str | None) -> None:
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    ("predicted", "reference", "same"),
    [
        ("1,000", "1000", True),
        ("18.00", "18", True),
        ("\\$18", "18", True),
        ("18 \\text{ dollars}", "18", True),
        ("17", "18", False),
        ("Forty", "forty", True),
        (None, "3", False),
    ],
)
def test_answers_match(predicted: str | None, reference: str, same: bool) -> None:
    assert answers_match(predicted, reference) is same


def test_teacher_accuracy_uses_gsm8k_reference_and_skips_unanswered() -> None:
    responses = [["... \\boxed{18}", "the answer is 17"], ["so 3"], ["whatever 9"]]
    answers = ["Janet sells 9 eggs.\n#### 18", "3", None]
    assert teacher_accuracy(responses, answers) == pytest.approx(2 / 3)
    assert teacher_accuracy([["1"]], [None]) is None


@pytest.mark.parametrize(
    ("n", "m", "d"),
    [
        (24, 4, 16),
        (96, 1, 16),
        (256, 4, 256),
        (512, 4, 512),  # the paper's sample gets the paper's d
        (511, 4, 256),
        (1000, 1, 128),
        (4096, 4, 512),
        (2, 1, 16),
        (64, 16, 256),
    ],
)
def test_auto_proj_dim_keeps_the_papers_rows_per_dimension(n: int, m: int, d: int) -> None:
    """The largest power of two with rows / d at least the paper's 1844 / 512, within [16, 512]."""
    from grace_engine.science.grace import auto_proj_dim, train_rows

    assert auto_proj_dim(n, m) == d
    rows = train_rows(n, m, 0.1)
    paper = 1844 / 512
    assert d == 16 or rows / d >= paper
    assert d == 512 or rows / (2 * d) < paper
