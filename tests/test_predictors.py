"""RSR and the other predictors against slow references; weighted GRACE; the warnings they raise."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from scipy import stats

from grace_engine.errors import InvalidInput
from grace_engine.models.batches import collate
from grace_engine.science.grace import grace
from grace_engine.science.gradient_space import GradientSpace
from grace_engine.science.gradients import (
    RANK_CLIP,
    ForwardStatistics,
    compute_gradients,
    make_gradient_computer,
)
from grace_engine.science.predictors import (
    Evidence,
    GraceSettings,
    check_predictors,
    value,
)
from tests.conftest import make_examples
from tests.test_scores import reference_grace


def slow_rsr(rank_sums: np.ndarray, losses: np.ndarray, n_tokens: np.ndarray) -> float:
    """RSR as the released code aggregates a dataset, response by response: the mean of each
    response's average clipped rank over the mean of its average NLL."""
    avg_ranks = [r / max(t, 1.0) for r, t in zip(rank_sums.tolist(), n_tokens.tolist(), strict=True)]
    return (sum(avg_ranks) / len(avg_ranks)) / (sum(losses.tolist()) / len(losses))


def slow_g_vendi(g: np.ndarray) -> float:
    """The Vendi score by its definition (Friedman & Dieng 2023): exp of the entropy of the
    eigenvalues of K / n, K the cosine-similarity matrix of the rows."""
    unit = [row / np.linalg.norm(row) for row in g]
    k = np.array([[float(a @ b) for b in unit] for a in unit]) / len(unit)
    eig = np.linalg.eigvals(k).real
    eig = eig[eig > 1e-12]
    return math.exp(float(stats.entropy(eig)))


def slow_rsr_terms(
    model: torch.nn.Module, ids: list[int], labels: list[int], clip: int
) -> tuple[float, float, int]:
    """One example, token by token in float64 Python: (sum of clipped ranks, sum of NLL, tokens)."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].double()
    rank_sum = nll_sum = 0.0
    count = 0
    for t in range(len(ids) - 1):
        target = labels[t + 1]
        if target == -100:
            continue
        row = logits[t].tolist()
        log_z = math.log(sum(math.exp(v - max(row)) for v in row)) + max(row)
        nll_sum += log_z - row[target]
        rank_sum += min(1 + sum(1 for v in row if v > row[target]), clip)
        count += 1
    return rank_sum, nll_sum, count


@pytest.mark.parametrize(("arch", "tied"), [("llama", False), ("gpt2", True)])
@pytest.mark.parametrize("path", ["fast", "exact", "forward"])
def test_rsr_matches_a_token_by_token_reference(
    random_lm: Callable[..., torch.nn.Module], arch: str, tied: bool, path: str
) -> None:
    model = random_lm(arch, tied=tied).double()
    examples = make_examples([(12, 4), (20, 7), (7, 3), (16, 5), (9, 2), (25, 10)], seed=5)
    computer = (
        ForwardStatistics(model)
        if path == "forward"
        else make_gradient_computer(model, space=GradientSpace("full"), d=8, path=path)  # type: ignore[arg-type]
    )
    out = compute_gradients(model, computer, examples, pad_id=0, max_batch=3)
    terms = [slow_rsr_terms(model, e.input_ids, e.labels, RANK_CLIP) for e in examples]
    ranks = np.array([t[0] for t in terms])
    nlls = np.array([t[1] for t in terms])
    counts = np.array([t[2] for t in terms])
    np.testing.assert_array_equal(out.n_tokens, counts)
    np.testing.assert_allclose(out.rank_sums, ranks, rtol=0, atol=0)  # ranks are integers
    np.testing.assert_allclose(out.losses, nlls / counts, rtol=1e-9)
    expected = np.mean(ranks / counts) / np.mean(nlls / counts)
    assert slow_rsr(out.rank_sums, out.losses, out.n_tokens) == pytest.approx(expected, rel=1e-12)
    ev = Evidence(
        out.gradients.astype(np.float64),
        out.losses,
        out.n_tokens.astype(np.float64),
        out.rank_sums,
        np.full(len(examples), np.nan),
        1,
    )
    assert value("rsr", ev, GraceSettings()) == pytest.approx(expected, rel=1e-6)
    if path == "forward":
        assert out.gradients.shape == (len(examples), 0)


def test_rank_clip_applies(random_lm: Callable[..., torch.nn.Module]) -> None:
    """A clip of 2 caps every token's rank at 2, so the rank sum is at most 2 per token."""
    from grace_engine.science.gradients import per_example_rank_sums

    model = random_lm("llama", tied=False)
    batch = collate(make_examples([(30, 2), (18, 3)], seed=9), pad_id=0)
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    full = per_example_rank_sums(logits, batch.labels)
    clipped = per_example_rank_sums(logits, batch.labels, clip=2)
    tokens = (batch.labels[:, 1:] != -100).sum(dim=1).double()
    assert bool((clipped <= 2 * tokens).all())
    assert bool((clipped >= tokens).all())
    assert bool((full > clipped).any())


def _evidence(rng: np.random.Generator, n: int, m: int, d: int, scale: float = 1.0) -> Evidence:
    rows = n * m
    correct = rng.integers(0, 2, rows).astype(np.float64)
    correct[: m * 2] = np.nan  # two prompts without an answer
    return Evidence(
        rng.normal(size=(rows, d)) * scale * rng.uniform(0.5, 2.0, size=(rows, 1)),
        rng.uniform(0.5, 3.0, rows),
        rng.integers(5, 80, rows).astype(np.float64),
        rng.uniform(10, 500, rows),
        correct,
        m,
    )


def test_every_predictor_unweighted_matches_its_score_function() -> None:
    ev = _evidence(np.random.default_rng(0), 12, 3, 10)
    s = GraceSettings()
    assert value("grace", ev, s) == pytest.approx(grace(ev.gradients, 3).score, rel=1e-12)
    norms = [sum(x * x for x in row) for row in ev.gradients.tolist()]
    assert value("g_norm", ev, s) == pytest.approx(sum(norms) / len(norms), rel=1e-12)
    assert value("g_vendi", ev, s) == pytest.approx(slow_g_vendi(ev.gradients), rel=1e-9)
    nll = (
        sum(a * b for a, b in zip(ev.losses.tolist(), ev.n_tokens.tolist(), strict=True)) / ev.n_tokens.sum()
    )
    assert value("student_nll", ev, s) == pytest.approx(nll, rel=1e-12)
    assert value("rsr", ev, s) == pytest.approx(slow_rsr(ev.rank_sums, ev.losses, ev.n_tokens), rel=1e-12)
    assert value("length", ev, s) == pytest.approx(float(np.mean(ev.n_tokens)))
    known = ev.correct[~np.isnan(ev.correct)]
    assert value("teacher_accuracy", ev, s) == pytest.approx(float(known.mean()))


@pytest.mark.parametrize("name", ["g_norm", "g_vendi", "student_nll", "rsr", "length", "teacher_accuracy"])
def test_weights_are_repetitions(name: str) -> None:
    """For the row-wise predictors, weight k is the same as the prompt's rows repeated k times."""
    ev = _evidence(np.random.default_rng(1), 9, 2, 6)
    weights = np.array([1, 3, 1, 2, 1, 1, 4, 1, 2], dtype=np.float64)
    repeated = ev.take(np.repeat(np.arange(9), weights.astype(int)))
    s = GraceSettings()
    assert value(name, ev, s, weights) == pytest.approx(value(name, repeated, s), rel=1e-10)


def weighted_reference_grace(g: np.ndarray, m: int, w: np.ndarray, splits: int = 10, f: float = 0.1) -> float:
    """The released GRACE with per-prompt multiplicities, written out with explicit sums."""
    n = g.shape[0] // m
    n_test = max(1, int(n * f))
    values = []
    for s in range(splits):
        perm = np.random.default_rng(s).permutation(n)
        test_p, train_p = perm[n - n_test :], perm[: n - n_test]
        d = g.shape[1]
        k_tr, k_te, w_tr, w_te = np.zeros((d, d)), np.zeros((d, d)), 0.0, 0.0
        for p in train_p:
            for j in range(m):
                u = g[p * m + j] / max(np.linalg.norm(g[p * m + j]), 1e-12)
                k_tr += w[p] * np.outer(u, u)
                w_tr += w[p]
        for p in test_p:
            for j in range(m):
                k_te += w[p] * np.outer(g[p * m + j], g[p * m + j])
                w_te += w[p]
        eig, vec = np.linalg.eigh(k_tr / w_tr)
        eig = np.clip(eig, 1e-12, None)
        eig = np.clip(0.999 * eig + 1e-3 * eig.mean(), 1e-12, None)
        values.append(np.trace(vec @ np.diag(1 / eig) @ vec.T @ (k_te / w_te)))
    return float(np.mean(values))


@pytest.mark.parametrize(("n", "m", "d"), [(20, 3, 8), (12, 2, 40), (30, 1, 12)])
def test_weighted_grace_matches_its_reference(n: int, m: int, d: int) -> None:
    rng = np.random.default_rng(n + d)
    g = rng.normal(size=(n * m, d)) * rng.uniform(0.2, 3.0, size=(n * m, 1))
    w = rng.integers(1, 4, n).astype(np.float64)
    result = grace(g, m, prompt_weights=w)
    assert result.score == pytest.approx(weighted_reference_grace(g, m, w), rel=1e-8)
    assert result.variance + result.bias == pytest.approx(result.score, rel=1e-8)
    # Unit weights are the released computation; a common factor changes nothing.
    assert grace(g, m, prompt_weights=np.ones(n)).score == pytest.approx(reference_grace(g, m), rel=1e-10)
    assert grace(g, m, prompt_weights=2 * w).score == pytest.approx(result.score, rel=1e-10)
    with pytest.raises(InvalidInput, match="positive"):
        grace(g, m, prompt_weights=np.zeros(n))


@pytest.mark.parametrize(
    ("names", "rank_by", "field"),
    [
        ([], "grace", "predictors"),
        (["grace", "bogus"], "grace", "predictors"),
        (["rsr", "rsr"], "rsr", "predictors"),
        (["rsr"], "grace", "rank_by"),
    ],
)
def test_bad_predictor_lists_name_the_field(names: list[str], rank_by: str, field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        check_predictors(names, rank_by)
    assert err.value.field == field


def test_a_ranking_that_follows_length_is_flagged() -> None:
    from grace_engine.science.caveats import tracks_length

    flagged = tracks_length(score="grace", rho=-0.94, n_candidates=5)
    assert flagged is not None
    assert flagged.code == "ranking_tracks_length"
    assert "Spearman -0.94" in flagged.message
    assert tracks_length(score="grace", rho=0.85, n_candidates=5) is None
    assert tracks_length(score="grace", rho=1.0, n_candidates=3) is None  # too few to tell
    assert tracks_length(score="length", rho=1.0, n_candidates=9) is None


def test_the_most_accurate_candidate_outside_the_top_pick_is_flagged() -> None:
    from grace_engine.science.caveats import accuracy_disagrees

    accuracy = {"a": 0.2, "b": 0.9, "c": 0.9}
    flagged = accuracy_disagrees(score="grace", top_pick="a", accuracy=accuracy)
    assert flagged is not None
    assert flagged.numbers["most_accurate"] == "b"
    assert "rank_by teacher_accuracy" not in flagged.message  # the recommendation is withdrawn
    assert accuracy_disagrees(score="grace", top_pick="c", accuracy=accuracy) is None  # tied best
    assert accuracy_disagrees(score="teacher_accuracy", top_pick="a", accuracy=accuracy) is None
    assert accuracy_disagrees(score="grace", top_pick="a", accuracy={}) is None  # no answers
