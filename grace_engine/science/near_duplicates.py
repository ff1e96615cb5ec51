"""Responses whose text is (nearly) the same under different prompts.

A cross-validated score must not train on a copy of the text it holds out: a teacher that answers
several problems with one solution (or a supplied set that reuses solutions across problems) would
otherwise look predictable for the wrong reason (study A's ``other-problem`` candidate). The
cross-validation in :mod:`~grace_engine.science.crossval` therefore keeps every copy of a held-out text out
of the training side of its fold.

Texts are normalised (lower case, runs of non-word characters to one space); identical normalised
texts are copies, and so are texts whose word 3-gram sets have an estimated Jaccard similarity of at
least :data:`JACCARD` (candidate pairs from MinHash with locality-sensitive hashing, from
``datasketch``, so the cost grows with the number of texts, not with their pairs; each candidate pair
is then checked exactly).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

JACCARD = 0.8  # near-identical: four in five word 3-grams shared
NUM_PERM = 128  # MinHash permutations
# LSH bands tuned for recall (a missed pair costs a leak, a false candidate one exact Jaccard check).
LSH_WEIGHTS = (0.2, 0.8)
SHINGLE = 3  # words per shingle
_NON_WORD = re.compile(r"\W+")


def normalise(text: str) -> str:
    """Lower case, every run of non-word characters (spaces, punctuation) as one space, stripped."""
    return _NON_WORD.sub(" ", text.lower()).strip()


def _shingles(text: str) -> set[bytes]:
    words = text.split()
    if len(words) < SHINGLE:
        return {text.encode()}
    return {" ".join(words[i : i + SHINGLE]).encode() for i in range(len(words) - SHINGLE + 1)}


@dataclass(frozen=True)
class Copies:
    """Which responses copy a response to another prompt.

    Attributes:
        cluster: ``(N,)`` per response (prompt-major), the lowest row index of its cluster: rows with
            the same value are (near-)copies.
        n_clusters: clusters that span two or more prompts.
        n_rows: responses in those clusters.
    """

    cluster: npt.NDArray[np.int64]
    n_clusters: int
    n_rows: int


def find_copies(texts: Sequence[Sequence[str]]) -> Copies:
    """Cluster the responses ``texts[prompt][j]`` (module docstring) and count the clusters that span
    more than one prompt. Deterministic: MinHash is seeded and clusters are named by their first row."""
    flat = [normalise(t) for per_prompt in texts for t in per_prompt]
    prompt_of = np.repeat(np.arange(len(texts)), [len(p) for p in texts])
    parent = list(range(len(flat)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(i: int, j: int) -> None:
        a, b = root(i), root(j)
        if a != b:
            parent[max(a, b)] = min(a, b)

    first: dict[str, int] = {}
    for i, t in enumerate(flat):
        if t in first:
            join(first[t], i)
        else:
            first[t] = i
    distinct = [i for i in first.values() if flat[i]]
    if len(distinct) > 1:
        # Imported here: datasketch's package imports its optional Redis storage, and the engine's
        # modules must import no queue client (tests/test_layering.py).
        from datasketch import MinHash, MinHashLSH

        lsh = MinHashLSH(threshold=JACCARD, num_perm=NUM_PERM, weights=LSH_WEIGHTS)
        shingles = {i: _shingles(flat[i]) for i in distinct}
        hashes = MinHash.bulk([shingles[i] for i in distinct], num_perm=NUM_PERM, seed=1)
        for i, h in zip(distinct, hashes, strict=True):
            for j in lsh.query(h):
                a, b = shingles[i], shingles[int(j)]
                if len(a & b) >= JACCARD * len(a | b):
                    join(int(j), i)
            lsh.insert(i, h)
    cluster = np.array([root(i) for i in range(len(flat))], dtype=np.int64)
    prompts_of: dict[int, set[int]] = {}
    for c, p in zip(cluster.tolist(), prompt_of.tolist(), strict=True):
        prompts_of.setdefault(c, set()).add(p)
    across = [c for c, ps in prompts_of.items() if len(ps) > 1]
    return Copies(cluster, len(across), int(np.isin(cluster, across).sum()))
