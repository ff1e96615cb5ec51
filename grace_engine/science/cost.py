"""What scoring costs, estimated before any work: a job whose estimate exceeds the operator's bound
is refused at submission, naming the settings that drive it.

One GRACE split fits a ``d x d`` second moment on its training rows and solves it against the
held-out rows: about ``rows * d**2 + d**3`` multiply-adds, plus a fixed overhead. The uncertainty
reruns the splits on each of ``bootstrap`` subsamples of half the prompts, stacked (all subsamples
of a split in one batched solve), which shrinks the overhead per subsample split. So one
candidate's scoring costs ``n_splits * (split(rows, d) + bootstrap * stacked_split(rows / 2, d))``,
and a fanned-out job scores each candidate in its own unit.

The constants are fitted to measurements on the 2-core reference machine (issue 29): a split at
16 prompts x 4 responses, d = 64, takes 1.2 ms (overhead-bound); one at 512 x 16, d = 2048, 1.57 s
(arithmetic-bound); 2 candidates x 1,000 splits x (1 + 2,000 subsamples) at 16 x 4, d = 64, took
614 s, which leaves 0.15 ms per stacked subsample split. The estimate tells a minute from a day;
it does not time a job.
"""

from __future__ import annotations

SPLIT_OVERHEAD_SECONDS = 1.2e-3
STACKED_OVERHEAD_SECONDS = 0.15e-3
SECONDS_PER_MULTIPLY_ADD = 1.57 / (512 * 16 * 2048**2 + 2048**3)


def split_seconds(rows: float, d: int, *, stacked: bool = False) -> float:
    """One GRACE split over ``rows`` gradient rows at projection dimension ``d`` (``stacked``: one
    of a batch of subsample splits)."""
    overhead = STACKED_OVERHEAD_SECONDS if stacked else SPLIT_OVERHEAD_SECONDS
    return overhead + SECONDS_PER_MULTIPLY_ADD * (rows * d * d + d**3)


def candidate_scoring_seconds(*, prompts: int, m: int, d: int, n_splits: int, bootstrap: int) -> float:
    """CPU seconds to score one candidate of ``m`` responses on ``prompts`` prompts at ``d``:
    GRACE's ``n_splits`` splits, and again on each of ``bootstrap`` half-size subsamples."""
    rows = prompts * m
    return n_splits * (split_seconds(rows, d) + bootstrap * split_seconds(rows / 2, d, stacked=True))
