"""Exact permutation tests of a rank correlation over a few candidates (design §2.12).

With 7-9 candidates a Spearman correlation of 0.6 is easily chance. Under the null hypothesis that
the predictor says nothing about the outcome, every pairing of the predictor's ranks with the
outcome's is equally likely, so the one-sided p-value is the share of the ``n!`` pairings whose
Spearman reaches the observed one: computed exactly up to :data:`EXACT_UP_TO` candidates (3.6 million
pairings at 10), and from :data:`MONTE_CARLO` seeded random pairings above (p = (k + 1) / (N + 1)).
Ties are kept as they are (average ranks), so the test is exact for tied data too.
:func:`critical_rho` is the smallest Spearman that reaches 5% one-sided for ``n`` untied candidates
(0.714 at 7, 0.600 at 9).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import numpy.typing as npt

EXACT_UP_TO = 10
MONTE_CARLO = 100_000
ALPHA = 0.05
_CHUNK = 400_000  # pairings per block: bounds the memory of the exact enumeration (~30 MB)
_EPS = 1e-12  # a pairing ties the observed statistic within rounding


@lru_cache(maxsize=2)
def _all_permutations(n: int) -> npt.NDArray[np.int8]:
    """Every permutation of ``range(n)``, ``(n!, n)``: each of ``n - 1``'s built by inserting the last
    element at every position."""
    perms = np.zeros((1, 1), dtype=np.int8)
    for k in range(1, n):
        out = np.empty((perms.shape[0] * (k + 1), k + 1), dtype=np.int8)
        for pos in range(k + 1):
            block = out[pos * perms.shape[0] : (pos + 1) * perms.shape[0]]
            block[:, :pos] = perms[:, :pos]
            block[:, pos] = k
            block[:, pos + 1 :] = perms[:, pos:]
        perms = out
    return perms


def _centred_ranks(x: Sequence[float]) -> npt.NDArray[np.float64]:
    from scipy.stats import rankdata

    r = rankdata(np.asarray(x, dtype=np.float64))
    return np.asarray(r - r.mean(), dtype=np.float64)


def _null_statistics(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64], seed: int):  # type: ignore[no-untyped-def]
    """Blocks of ``sum(a[perm] * b)`` over the pairings (all of them, or the Monte Carlo draw)."""
    n = len(a)
    if n <= EXACT_UP_TO:
        perms = _all_permutations(n)
        for start in range(0, perms.shape[0], _CHUNK):
            yield a[perms[start : start + _CHUNK]] @ b
    else:
        rng = np.random.default_rng(seed)
        for start in range(0, MONTE_CARLO, _CHUNK):
            size = min(_CHUNK, MONTE_CARLO - start)
            yield a[rng.permuted(np.tile(np.arange(n), (size, 1)), axis=1)] @ b


def spearman_p(x: Sequence[float], y: Sequence[float], *, seed: int = 0) -> float:
    """One-sided permutation p-value that Spearman(x, y) is this large or larger by chance (module
    docstring). 1.0 when either side is constant."""
    if len(x) != len(y) or len(x) < 2:
        raise ValueError("need two equally long lists of at least 2 values")
    a, b = _centred_ranks(x), _centred_ranks(y)
    if not a.any() or not b.any():
        return 1.0
    observed = float(a @ b)
    hits = total = 0
    for block in _null_statistics(a, b, seed):
        hits += int(np.sum(block >= observed - _EPS))
        total += len(block)
    if len(x) <= EXACT_UP_TO:
        return hits / total
    return (hits + 1) / (total + 1)


@lru_cache(maxsize=64)
def critical_rho(n: int, alpha: float = ALPHA) -> float | None:
    """The smallest Spearman of ``n`` untied candidates with a one-sided permutation p-value at most
    ``alpha`` (as :func:`spearman_p` computes it); None when even a perfect agreement does not reach
    it (``1/n! > alpha``)."""
    if n < 2:
        return None
    a = _centred_ranks(list(range(n)))
    null = np.concatenate(list(_null_statistics(a, a, seed=0))) / float(a @ a)
    values, counts = np.unique(np.round(null, 9), return_counts=True)
    at_least = np.cumsum(counts[::-1])[::-1]  # pairings with a statistic >= each value
    p = at_least / len(null) if n <= EXACT_UP_TO else (at_least + 1) / (len(null) + 1)
    reaching = values[p <= alpha]
    return float(reaching[0]) if len(reaching) else None
