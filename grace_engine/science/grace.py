"""GRACE and the baseline teacher scores, on a matrix of projected per-example gradients.

Throughout, ``G`` is the ``(n_prompts * n_per_prompt, d)`` matrix of projected student gradients,
prompt-major: the ``n_per_prompt`` responses of a prompt occupy adjacent rows. Lower GRACE means a
better teacher for this student.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numpy.linalg import LinAlgError
from scipy.linalg import cho_factor, solve_triangular
from threadpoolctl import threadpool_limits

from grace_engine.errors import InvalidInput
from grace_engine.memory import available_cpus
from grace_engine.models.data import reference_answer

# Released-code constants: norms and eigenvalues are clipped here so that zero gradients and a
# rank-deficient training spectrum stay finite; the smoothing then sets the real floor.
NORM_EPS = 1e-12
EIG_EPS = 1e-12

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class GraceResult:
    """GRACE of one candidate.

    ``score`` is the mean of ``split_scores``; ``bias`` is the part explained by the held-out mean
    gradient whitened by the training spectrum, ``variance`` the rest, so ``variance + bias == score``
    up to rounding. ``split_bias``/``split_variance`` give the same split by split.
    """

    score: float
    split_scores: list[float]
    variance: float
    bias: float
    split_variance: list[float]
    split_bias: list[float]
    n_prompts: int
    n_per_prompt: int
    n_test_prompts: int

    @property
    def split_std(self) -> float:
        """Sample standard deviation of the split scores (0 with a single split)."""
        return float(np.std(self.split_scores, ddof=1)) if len(self.split_scores) > 1 else 0.0


def _as_gradient_matrix(gradients: npt.ArrayLike, n_per_prompt: int) -> tuple[FloatArray, int]:
    g = np.asarray(gradients, dtype=np.float64)
    if g.ndim != 2 or g.shape[0] == 0 or g.shape[1] == 0:
        raise InvalidInput(
            f"expected a non-empty 2-D (rows, dim) matrix, got shape {g.shape}", field="gradients"
        )
    if not np.isfinite(g).all():
        raise InvalidInput("contains NaN or infinite values", field="gradients")
    if n_per_prompt < 1:
        raise InvalidInput("must be at least 1", field="n_per_prompt")
    if g.shape[0] % n_per_prompt:
        raise InvalidInput(
            f"{g.shape[0]} rows is not a multiple of n_per_prompt={n_per_prompt} "
            "(rows must be prompt-major, n_per_prompt responses per prompt)",
            field="gradients",
        )
    return g, g.shape[0] // n_per_prompt


def unit_rows(x: FloatArray) -> FloatArray:
    unit: FloatArray = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), NORM_EPS)
    return unit


def prompt_rows(prompts: npt.NDArray[np.int64], m: int) -> npt.NDArray[np.int64]:
    """Row indices of ``prompts`` in a prompt-major matrix with ``m`` rows per prompt."""
    return (prompts[:, None] * m + np.arange(m)[None, :]).reshape(-1)


def _smoothed_train_spectrum(
    x_train: FloatArray, smoothing: float, total_weight: float
) -> tuple[FloatArray, FloatArray]:
    """Eigen-decomposition of ``K_tr = X^T X / total_weight`` for (weighted) unit rows ``X`` with at
    least as many rows as dimensions, smoothed as released (``total_weight`` is the row count when
    unweighted). Returns ``(w, V)``: the smoothed eigenvalues and the eigenvectors as columns."""
    return _smoothed_spectrum(x_train.T @ x_train, smoothing, total_weight)


def _smoothed_spectrum(
    gram: FloatArray, smoothing: float, total_weight: float
) -> tuple[FloatArray, FloatArray]:
    """:func:`_smoothed_train_spectrum` from the training rows' ``X^T X`` (``gram``, d x d, or a
    stack of them, ``(..., d, d)``: each smoothed towards its own mean)."""
    eigvals, vecs = np.linalg.eigh(gram / total_weight)
    w = np.maximum(eigvals, EIG_EPS)
    w = np.maximum((1.0 - smoothing) * w + smoothing * w.mean(axis=-1, keepdims=True), EIG_EPS)
    return w, vecs


def _cholesky_parts(
    k_train: FloatArray, x_test: FloatArray, mean: FloatArray, smoothing: float, test_weight: float
) -> tuple[float, float, float] | None:
    """The three whitened energies without an eigen-decomposition, or ``None`` to fall back.

    When no eigenvalue of ``K_tr`` is below the 1e-12 clip (checked by a Cholesky of
    ``K_tr - 1e-12 I``), the clip is a no-op and the released smoothing is exactly
    ``(1 - nu) K_tr + nu * mean(eigenvalues) I``, whose Cholesky factor whitens directly.
    """
    d = k_train.shape[0]
    try:
        cho_factor(k_train - EIG_EPS * np.eye(d), lower=True, check_finite=False)
        smoothed = (1.0 - smoothing) * k_train + (smoothing * np.trace(k_train) / d) * np.eye(d)
        factor = cho_factor(smoothed, lower=True, check_finite=False)[0]
    except LinAlgError:
        return None

    def energy(x: FloatArray) -> float:
        return float(np.sum(solve_triangular(factor, x.T, lower=True, check_finite=False) ** 2))

    total, bias = energy(x_test), energy(mean)
    # sum_i w_i |L^-1 (x_i - mu)|^2 = sum_i w_i |L^-1 x_i|^2 - W |L^-1 mu|^2: one solve fewer.
    return total, bias, total - test_weight * bias


@dataclass(frozen=True)
class _Grams:
    """Row-space Gram matrices of one GRACE call, for splits with fewer training rows than ``d``:
    ``unit`` = weighted unit rows ``A``; ``aa = A A^T``, ``ga = G A^T`` and ``gg = G G^T`` with ``G``
    the raw (unweighted) rows."""

    aa: FloatArray
    ga: FloatArray
    gg: FloatArray
    d: int


def _row_space_whitening(
    eigvals: FloatArray, vecs: FloatArray, d: int, w_train: float, smoothing: float
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The released smoothing of a d x d spectrum known from its row space: ``eigvals``/``vecs`` of
    ``S = A A^T / W`` (q x q, or stacks ``(..., q)``/``(..., q, q)``). Returns ``(basis, smoothed,
    w_null)``: ``basis`` maps a row's products with the training rows, ``x A^T``, to its coordinates
    on the eigenvectors ``v_k = A^T u_k / sqrt(W l_k)``, with zero columns for eigenvalues at or below
    1e-10 of the mean (numerically zero, their directions undefined: they join the null space, whose
    smoothed eigenvalue they would get to within 1e-7 anyway); ``smoothed`` their smoothed
    eigenvalues; ``w_null`` the null space's (``(...,)``)."""
    q = eigvals.shape[-1]
    clipped = np.maximum(eigvals, EIG_EPS)
    mean = (clipped.sum(axis=-1) + (d - q) * EIG_EPS) / d
    smoothed = np.maximum((1.0 - smoothing) * clipped + smoothing * mean[..., None], EIG_EPS)
    w_null = np.maximum((1.0 - smoothing) * EIG_EPS + smoothing * mean, EIG_EPS)
    keep = eigvals > 1e-10 * mean[..., None]
    scale = np.where(keep, 1.0 / np.sqrt(w_train * np.where(keep, eigvals, 1.0)), 0.0)
    return vecs * scale[..., None, :], smoothed, w_null


def _kernel_coordinates(
    grams: _Grams,
    train: npt.NDArray[np.int64],
    test: npt.NDArray[np.int64],
    weights: FloatArray,
    smoothing: float,
) -> tuple[FloatArray, FloatArray, float]:
    """Held-out rows' coordinates in the training spectrum, from row-space Gram matrices (fewer
    training rows than dimensions). Returns ``(cross, w_keep, w_null)``: raw held-out rows'
    coordinates ``(t, q)`` on the training spectrum's eigenvectors (zero on the numerically null
    ones), their smoothed eigenvalues, and the smoothed eigenvalue of the null space.

    The non-zero spectrum of ``K_tr = A^T A / W`` is that of ``S = A A^T / W`` (q x q, q the training
    rows), with eigenvectors ``v_k = A^T u_k / sqrt(W l_k)``; a held-out row's coordinates are then
    ``x . v_k = (x A^T) u_k / sqrt(W l_k)`` and its residual is ``|x|^2 - sum_k (x . v_k)^2``. The
    spectrum, its mean and the smoothing are those of the released d x d computation
    (:func:`_row_space_whitening`). Cost: one q x q eigen-solve.
    """
    w_train = float(weights[train].sum())
    eigvals, vecs = np.linalg.eigh(grams.aa[np.ix_(train, train)] / w_train)
    basis, smoothed, w_null = _row_space_whitening(eigvals, vecs, grams.d, w_train, smoothing)
    return grams.ga[np.ix_(test, train)] @ basis, smoothed, float(w_null)


def _row_energies(
    cross: FloatArray, sq_norms: FloatArray, w_keep: FloatArray, w_null: float | FloatArray
) -> FloatArray:
    """``x^T K^-1 x`` per row from its coordinates on the kept eigenvectors and its squared norm
    (the last axis is the eigenvectors'; stacks broadcast)."""
    c2 = cross**2
    energies: FloatArray = np.sum(c2 / w_keep, axis=-1) + (sq_norms - np.sum(c2, axis=-1)) / w_null
    return energies


def _kernel_parts(
    grams: _Grams,
    train: npt.NDArray[np.int64],
    test: npt.NDArray[np.int64],
    weights: FloatArray,
    smoothing: float,
) -> tuple[float, float, float]:
    """The whitened energies of a split in the row space (:func:`_kernel_coordinates`)."""
    cross, w_keep, w_null = _kernel_coordinates(grams, train, test, weights, smoothing)
    w_test = weights[test]
    total = float(w_test @ _row_energies(cross, np.diag(grams.gg)[test], w_keep, w_null))
    w_sum = float(w_test.sum())
    mean_coords = (w_test @ cross)[None, :] / w_sum
    mean_sq = np.array([float(w_test @ grams.gg[np.ix_(test, test)] @ w_test) / w_sum**2])
    bias = float(_row_energies(mean_coords, mean_sq, w_keep, w_null)[0])
    return total, bias, total - w_sum * bias


def held_out_energies(
    gradients: npt.ArrayLike, n_per_prompt: int, test_prompts: npt.ArrayLike, *, smoothing: float = 1e-3
) -> FloatArray:
    """``x^T K_tr^-1 x`` of every held-out row, ``K_tr`` the smoothed second moment of the unit rows of
    every other prompt, exactly as a GRACE split whitens (so the mean over a split's held-out rows
    is its split score). Returns one value per row of ``test_prompts``, prompt-major."""
    g, n = _as_gradient_matrix(gradients, n_per_prompt)
    test_p = np.asarray(test_prompts, dtype=np.int64)
    train_p = np.setdiff1d(np.arange(n), test_p)
    if len(train_p) == 0 or len(test_p) == 0:
        raise InvalidInput("needs prompts on both sides", field="test_prompts")
    test, train = prompt_rows(test_p, n_per_prompt), prompt_rows(train_p, n_per_prompt)
    (energies,) = fold_energies(g, [(test, train)], smoothing=smoothing)
    return energies


def fold_energies(
    gradients: npt.ArrayLike,
    folds: Sequence[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]],
    *,
    smoothing: float = 1e-3,
) -> list[FloatArray]:
    """Held-out energies ``x^T K_tr^-1 x`` of several train/test splits of one gradient matrix.

    Args:
        gradients: ``(N, d)`` raw rows.
        folds: per split ``(test_rows, train_rows)``, row indices (the training side need not be
            the complement: rows left out of both are simply unused).
    Returns:
        Per split, ``(len(test_rows),)`` energies of the raw held-out rows in the smoothed spectrum of
        the training side's unit rows, as a GRACE split whitens. The shared second moments are
        computed once: a split with at least ``d`` training rows downdates ``X^T X`` of all rows, one
        with fewer works in the row space of the shared Gram matrices.
    """
    g = np.asarray(gradients, dtype=np.float64)
    unit = unit_rows(g)
    d = g.shape[1]
    gram_all = unit.T @ unit if any(len(tr) >= d for _, tr in folds) else None  # for downdates
    grams = _Grams(unit @ unit.T, g @ unit.T, g @ g.T, d) if any(len(tr) < d for _, tr in folds) else None
    out: list[FloatArray] = []
    for test, train in folds:
        if len(train) == 0:
            raise InvalidInput("needs training rows", field="folds")
        if len(train) >= d:
            assert gram_all is not None
            unused = unit[np.setdiff1d(np.arange(g.shape[0]), train)]
            # Downdate when fewer rows are left out than kept (a K-fold split), else build afresh.
            kept = gram_all - unused.T @ unused if len(unused) < len(train) else unit[train].T @ unit[train]
            w, vecs = _smoothed_spectrum(kept, smoothing, float(len(train)))
            out.append(np.sum((g[test] @ vecs) ** 2 / w, axis=1))
        else:
            assert grams is not None
            cross, w_keep, w_null = _kernel_coordinates(grams, train, test, np.ones(g.shape[0]), smoothing)
            out.append(_row_energies(cross, np.diag(grams.gg)[test], w_keep, w_null))
    return out


def _whitened_energy(x: FloatArray, w: FloatArray, vecs: FloatArray) -> float:
    """``trace(K_tr^-1 X^T X)`` with the smoothed spectrum; ``x`` is ``(rows, d)``."""
    return float(np.sum((x @ vecs) ** 2 / w))


def grace(
    gradients: npt.ArrayLike,
    n_per_prompt: int,
    *,
    n_splits: int = 10,
    test_fraction: float = 0.1,
    smoothing: float = 1e-3,
    max_workers: int | None = None,
    prompt_weights: npt.ArrayLike | None = None,
    tick: Callable[[], None] | None = None,
) -> GraceResult:
    """GRACE of one candidate, exactly as the released implementation computes it, in float64.

    For split ``s`` the prompts are permuted with ``numpy.random.default_rng(s).permutation(n)``;
    the last ``max(1, int(n * test_fraction))`` are held out with all their responses. Training rows
    are L2-normalized (norms clipped at 1e-12), held-out rows stay raw. ``K_tr`` and ``K_te`` are
    the second moments ``X^T X / rows`` of each side; ``K_tr``'s eigenvalues are clipped at 1e-12,
    smoothed towards their mean with weight ``smoothing`` and clipped again. The split score is
    ``trace(K_tr^-1 K_te)`` and GRACE their mean. Writing ``K_te = mu mu^T + Sigma`` (held-out mean
    and covariance) splits the trace into ``bias = mu^T K_tr^-1 mu`` and ``variance = trace(K_tr^-1 Sigma)``.

    Args:
        gradients: ``(n * n_per_prompt, d)`` projected gradients, prompt-major.
        n_per_prompt: responses per prompt ``m``.
        max_workers: splits computed at once (default: one per CPU); a memory budget lowers it. With
            1 the splits run in the calling thread, with whatever BLAS threading it has set.
        prompt_weights: ``(n,)`` positive multiplicities, for a bootstrap resample in which a prompt
            drawn ``k`` times counts ``k`` times in every second moment and mean, and its copies are
            held out together (so no copy of a held-out prompt is trained on). ``None``: all 1,
            which is the released computation exactly.
        tick: called before each split, from whichever thread runs it: progress, and the place to
            stop (an exception it raises ends the call once running splits finish; queued ones
            raise at once).
    """
    g, n = _as_gradient_matrix(gradients, n_per_prompt)
    if prompt_weights is None:
        weights = np.ones(g.shape[0])
    else:
        weights = np.repeat(np.asarray(prompt_weights, dtype=np.float64), n_per_prompt)
        if weights.shape != (g.shape[0],) or not (weights > 0).all():
            raise InvalidInput(f"must be {n} positive weights, one per prompt", field="prompt_weights")
    if n < 2:
        raise InvalidInput(
            "GRACE needs at least 2 prompts (one held out, one to train on)", field="gradients"
        )
    if n_splits < 1:
        raise InvalidInput("must be at least 1", field="n_splits")
    if not 0.0 < test_fraction < 1.0:
        raise InvalidInput("must be strictly between 0 and 1", field="test_fraction")
    if not 0.0 <= smoothing <= 1.0:
        raise InvalidInput("must be between 0 and 1", field="smoothing")
    n_test = max(1, int(n * test_fraction))
    # Weighted rows: sqrt(w) x enters every second moment, so X^T diag(w) X is a plain Gram matrix
    # (with unit weights the multiplications are exact and nothing changes).
    root_w = np.sqrt(weights)[:, None]
    unit = unit_rows(g) * root_w
    rows_train = (n - n_test) * n_per_prompt
    # With more training rows than dimensions every split's K_tr is a downdate of one shared X^T X;
    # with fewer, every split works in the row space of Gram matrices shared by all splits.
    gram_all = unit.T @ unit if rows_train >= g.shape[1] else None
    grams = None if gram_all is not None else _Grams(unit @ unit.T, g @ unit.T, g @ g.T, g.shape[1])
    weight_all = float(weights.sum())

    def one_split(split: int) -> tuple[float, float, float]:
        if tick is not None:
            tick()
        perm = np.random.default_rng(split).permutation(n)
        test_idx = prompt_rows(perm[-n_test:], n_per_prompt)
        test_weight = float(weights[test_idx].sum())
        x_test = g[test_idx] * root_w[test_idx]
        mean = (weights[test_idx] @ g[test_idx])[None, :] / test_weight
        parts = None
        if grams is not None:
            train_idx = prompt_rows(perm[:-n_test], n_per_prompt)
            parts = _kernel_parts(grams, train_idx, test_idx, weights, smoothing)
        else:
            assert gram_all is not None
            held_out = unit[test_idx]
            k_train = (gram_all - held_out.T @ held_out) / (weight_all - test_weight)
            parts = _cholesky_parts(k_train, x_test, mean, smoothing, test_weight)
        if parts is None:  # rank-deficient K_tr: the eigen path
            w, vecs = _smoothed_train_spectrum(
                unit[prompt_rows(perm[:-n_test], n_per_prompt)], smoothing, weight_all - test_weight
            )
            total = _whitened_energy(x_test, w, vecs)
            bias = _whitened_energy(mean, w, vecs)
            parts = (total, bias, _whitened_energy(x_test - root_w[test_idx] * mean, w, vecs))
        return parts[0] / test_weight, parts[1], parts[2] / test_weight

    # Splits are independent: one per core, each with single-threaded BLAS (two BLAS thread pools
    # per split on mid-sized matrices cost more in synchronisation than they gain).
    workers = max(1, min(n_splits, available_cpus(), max_workers or n_splits))
    if workers == 1:  # the caller runs several of these at once (a bootstrap) and owns the threads
        per_split = [one_split(s) for s in range(n_splits)]
    else:
        with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
            per_split = list(pool.map(one_split, range(n_splits)))
    scores = [s for s, _, _ in per_split]
    biases = [b for _, b, _ in per_split]
    variances = [v for _, _, v in per_split]
    return GraceResult(
        score=float(np.mean(scores)),
        split_scores=scores,
        variance=float(np.mean(variances)),
        bias=float(np.mean(biases)),
        split_variance=variances,
        split_bias=biases,
        n_prompts=n,
        n_per_prompt=n_per_prompt,
        n_test_prompts=n_test,
    )


# Stacked matrices of one grace_subsets chunk stay under this many bytes.
SUBSET_CHUNK_BYTES = 1 << 26


def subset_chunk(b: int, m: int, d: int, test_fraction: float) -> int:
    """Subsets of ``b`` prompts x ``m`` rows at ``d`` that :func:`grace_subsets` solves at once."""
    q = (b - max(1, int(b * test_fraction))) * m
    return max(1, SUBSET_CHUNK_BYTES // (8 * (4 * max(d, q) ** 2 + 3 * b * m * d)))


def grace_subsets(
    gradients: npt.ArrayLike,
    n_per_prompt: int,
    subsets: npt.ArrayLike,
    *,
    n_splits: int = 10,
    test_fraction: float = 0.1,
    smoothing: float = 1e-3,
    tick: Callable[[], None] | None = None,
) -> FloatArray:
    """GRACE of many equal-sized prompt subsets of one gradient matrix at once.

    Entry ``i`` is ``grace(gradients[prompt_rows(subsets[i], m)], m, ...).score``: the same splits
    (a split's permutation depends only on the subset's size) and the same smoothing, computed by
    the eigen-decomposition that defines it (``grace`` takes a Cholesky shortcut where it is exact,
    so the two agree to rounding). The splits of a chunk of subsets are solved as stacks of small
    matrices, which is what makes hundreds of subsamples cheap: one :func:`grace` call per subset
    spends most of its time in Python, not in arithmetic.

    Args:
        gradients: ``(n * m, d)`` prompt-major rows.
        subsets: ``(S, b)`` prompt indices, ``b >= 2`` per subset, each row in the order the subset's
            rows are taken.
        tick: called before each split of each chunk of subsets (as :func:`grace`'s).
    Returns:
        ``(S,)`` GRACE scores.
    """
    g, n = _as_gradient_matrix(gradients, n_per_prompt)
    idx = np.asarray(subsets, dtype=np.int64)
    if idx.ndim != 2 or idx.shape[1] < 2:
        raise InvalidInput("must be a (subsets, prompts) array with at least 2 prompts each", field="subsets")
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise InvalidInput(f"prompt indices must be in [0, {n})", field="subsets")
    m, d = n_per_prompt, g.shape[1]
    b = idx.shape[1]
    n_test = max(1, int(b * test_fraction))
    q, t = (b - n_test) * m, n_test * m
    unit = unit_rows(g)
    chunk = subset_chunk(b, m, d, test_fraction)
    perms = [np.random.default_rng(split).permutation(b) for split in range(n_splits)]

    def rows(prompts: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        flat: npt.NDArray[np.int64] = (prompts[:, :, None] * m + np.arange(m)).reshape(len(prompts), -1)
        return flat

    def one_chunk(sub: npt.NDArray[np.int64]) -> FloatArray:
        total = np.zeros(len(sub))
        gram = None
        if q >= d:  # every split downdates the subset's X^T X
            u_all = unit[rows(sub)]
            gram = np.einsum("crd,cre->cde", u_all, u_all)
        for perm in perms:
            if tick is not None:
                tick()
            test, train = rows(sub[:, perm[-n_test:]]), rows(sub[:, perm[:-n_test]])
            x_test = g[test]  # (C, t, d) raw held-out rows
            if gram is not None:
                u_test = unit[test]
                held_out = np.einsum("ctd,cte->cde", u_test, u_test)
                w, vecs = _smoothed_spectrum(gram - held_out, smoothing, float(q))
                total += np.sum((x_test @ vecs) ** 2 / w[:, None, :], axis=(1, 2)) / t
                continue
            # Fewer training rows than dimensions: the row space, as _kernel_coordinates.
            u_train = unit[train]
            eigvals, vecs = np.linalg.eigh(u_train @ u_train.transpose(0, 2, 1) / q)
            basis, smoothed, w_null = _row_space_whitening(eigvals, vecs, d, float(q), smoothing)
            cross = (x_test @ u_train.transpose(0, 2, 1)) @ basis
            energies = _row_energies(cross, np.sum(x_test**2, axis=2), smoothed[:, None, :], w_null[:, None])
            total += energies.sum(axis=1) / t
        return total / n_splits

    chunks = [idx[i : i + chunk] for i in range(0, len(idx), chunk)]
    workers = max(1, min(len(chunks), available_cpus()))
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
        parts = list(pool.map(one_chunk, chunks))
    return np.concatenate(parts) if parts else np.zeros(0)


# proj_dim "auto" follows the paper: its 512 prompts x 4 responses, 10% held out, train each split on
# PAPER_TRAIN_ROWS = 461 x 4 rows at d = PAPER_DIM, about 3.6 rows per dimension. Smaller samples keep
# that ratio, d = 2^floor(log2(rows x 512 / 1844)) within [AUTO_MIN_DIM, PAPER_DIM]. The ratio is the
# paper's setting, not fitted to any study's outcomes (Study C's rows/4 was, on outcomes that could
# not tell the rules apart, and is withdrawn).
PAPER_DIM = 512
PAPER_TRAIN_ROWS = 1844
AUTO_MIN_DIM = 16


def train_rows(n_prompts: int, n_per_prompt: int, test_fraction: float) -> int:
    """Gradient rows each GRACE split trains on."""
    return (n_prompts - max(1, int(n_prompts * test_fraction))) * n_per_prompt


def auto_proj_dim(n_prompts: int, n_per_prompt: int, test_fraction: float = 0.1) -> int:
    """The projection dimension for a sample of ``n_prompts x n_per_prompt`` (the ``auto`` rule): the
    largest power of two ``d`` with ``d / rows <= PAPER_DIM / PAPER_TRAIN_ROWS`` (the paper's rows per
    dimension), ``rows`` the training rows per split, within ``[AUTO_MIN_DIM, PAPER_DIM]``. The
    paper's 512 x 4 sample gets its d = 512; 24 x 4 gets 16."""
    rows = train_rows(n_prompts, n_per_prompt, test_fraction)
    d = PAPER_DIM
    while d > AUTO_MIN_DIM and d * PAPER_TRAIN_ROWS > rows * PAPER_DIM:  # integers: 512 x 4 is exact
        d //= 2
    return d


def log_length_factor(n_tokens: npt.ArrayLike) -> FloatArray:
    """Per-row factor ``ln(max(len, 2))`` (the paper's text scales gradients by the log of the
    response length; the released code does not). ``max(., 2)`` keeps one-token rows from vanishing."""
    return np.log(np.maximum(np.asarray(n_tokens, dtype=np.float64), 2.0))


# --- teacher accuracy -----------------------------------------------------------------------------

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_ANSWER_IS = re.compile(r"the (?:final )?answer is[:\s]*(.+)", re.IGNORECASE)


def _last_boxed(text: str) -> str | None:
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 0, start + len("\\boxed")
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j]
    return None


def extract_answer(text: str) -> str | None:
    """The final answer a response commits to: the last ``\\boxed{...}``, else what follows
    "the answer is", else the last number in the text; ``None`` when there is none."""
    boxed = _last_boxed(text)
    if boxed is not None:
        return boxed.strip()
    matches = list(_ANSWER_IS.finditer(text))
    if matches:
        tail = matches[-1].group(1).split("\n", 1)[0].strip()
        number = _NUMBER.search(tail)
        return number.group(0) if number else tail.rstrip(".").strip() or None
    numbers = _NUMBER.findall(text)
    return numbers[-1] if numbers else None


def _as_number(answer: str) -> float | None:
    cleaned = answer.replace("\\$", "").replace("$", "").replace("\\!", "").replace(",", "").strip()
    cleaned = cleaned.rstrip(".").strip()
    try:
        return float(cleaned)
    except ValueError:
        numbers = _NUMBER.findall(cleaned)
        return float(numbers[0].replace(",", "")) if len(numbers) == 1 else None


def answers_match(predicted: str | None, reference: str) -> bool:
    """Numeric comparison when both sides are numbers (``"1,000.0" == "1000"``), else
    case- and whitespace-insensitive text comparison."""
    if predicted is None:
        return False
    a, b = _as_number(predicted), _as_number(reference)
    if a is not None and b is not None:
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return "".join(predicted.split()).lower() == "".join(reference.split()).lower()


def response_correct(responses: Sequence[Sequence[str]], answers: Sequence[str | None]) -> FloatArray:
    """Per response, prompt-major: 1.0 when its extracted answer matches the prompt's reference
    answer (GSM8K's ``#### n`` is understood), 0.0 when not, NaN when the prompt carries none."""
    out: list[float] = []
    for texts, answer in zip(responses, answers, strict=True):
        if answer is None:
            out += [math.nan] * len(texts)
            continue
        ref = reference_answer(answer)
        out += [float(answers_match(extract_answer(t), ref)) for t in texts]
    return np.asarray(out, dtype=np.float64)


def teacher_accuracy(responses: Sequence[Sequence[str]], answers: Sequence[str | None]) -> float | None:
    """Share of responses whose answer is right, over the prompts that carry an answer; ``None``
    when none does."""
    correct = response_correct(responses, answers)
    known = correct[~np.isnan(correct)]
    return float(known.mean()) if known.size else None
