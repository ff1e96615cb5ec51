"""What a job costs, estimated before any work: a job whose estimate exceeds the operator's bound
is refused at submission, naming the settings that drive it, and a tenant's jobs in flight are
bounded by the sum of their estimates.

**Model passes.** A dense decoder's forward pass costs about 2 FLOPs per parameter per token and a
forward and backward pass about 6 (Kaplan et al., 2020): the gradient stage and distillation are
``6 * params * tokens``, evaluation's likelihoods ``2 * params * tokens``. Generation decodes one
token at a time, so it runs at a lower rate than a batched pass. Token counts come from text
lengths at :data:`CHARS_PER_TOKEN`, or from ``max_tokens`` for text not yet generated (an upper
bound). The rates are fitted on the 2-core reference machine (:data:`PASS_FLOPS_PER_SECOND`).

**Scoring.**

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

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

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


CHARS_PER_TOKEN = 4.0  # English text and code under the usual BPE vocabularies
# Measured on the reference machine by benchmarks/cost.py (SmolLM2-135M, float32, 2 torch
# threads): a forward and backward pass over 8 x 256 tokens took 21.0 s (7.9e10 FLOP/s), and
# greedy decoding of one sequence 64 tokens in 6.6 s (2.6e9). Generation batches several
# sequences, so the decode rate overstates its time: an upper bound, as ``max_tokens`` is.
PASS_FLOPS_PER_SECOND = 7.9e10
DECODE_FLOPS_PER_SECOND = 2.6e9


def text_tokens(chars: float) -> float:
    """Tokens in ``chars`` characters of text."""
    return chars / CHARS_PER_TOKEN


def pass_seconds(params: float, tokens: float, *, backward: bool) -> float:
    """CPU seconds for batched passes of a ``params``-parameter model over ``tokens`` tokens,
    forward only or forward and backward."""
    return (6.0 if backward else 2.0) * params * tokens / PASS_FLOPS_PER_SECOND


def training_steps(examples: int, *, batch_size: int, epochs: float, max_steps: int | None) -> int:
    """Optimizer steps of a distillation: ``max_steps`` when set, else ``epochs`` passes over
    ``examples`` in batches of ``batch_size`` (at least one step)."""
    return max_steps or max(1, math.ceil(epochs * math.ceil(examples / batch_size)))


def decode_seconds(params: float, tokens: float) -> float:
    """CPU seconds to generate ``tokens`` tokens with a ``params``-parameter model."""
    return 2.0 * params * tokens / DECODE_FLOPS_PER_SECOND


@dataclass(frozen=True)
class WorkEstimate:
    """A job's estimated CPU seconds by stage, and the request fields that drive each stage.

    ``unknown`` names the models whose size could not be read without loading them (a hub id, or
    weights not in safetensors): their stages are left out, so the estimate is a lower bound.
    """

    seconds: Mapping[str, float]
    drivers: Mapping[str, tuple[str, ...]]
    unknown: tuple[str, ...] = field(default=())

    @property
    def total(self) -> float:
        return float(sum(self.seconds.values()))

    @property
    def largest(self) -> str:
        """The stage that costs the most."""
        return max(self.seconds, key=lambda stage: self.seconds[stage])

    def describe(self) -> str:
        """``"about 1,234 CPU-seconds (gradients 1,000, scoring 234)"``, largest stage first."""
        parts = ", ".join(
            f"{stage} {seconds:,.0f}"
            for stage, seconds in sorted(self.seconds.items(), key=lambda kv: -kv[1])
        )
        return f"about {self.total:,.0f} CPU-seconds ({parts})"
