"""One memory budget for every stage of a job (design §2.9).

The budget is the peak resident memory (RSS) the process may reach, in bytes. Each stage sizes its
batches from it: what is already resident (the runtime and the loaded models' weights) is set
aside, and the rest is divided by what one batch costs. Costs come from two places:

* gradient stages (fast and exact paths): a **probe** on the loaded model. Three tiny batches run
  the real step under :func:`torch.autograd.graph.saved_tensors_hooks`, which sees every tensor
  the backward will need; their bytes (parameters excluded, shared storage counted once), fitted
  over three lengths, give the saved bytes per token and per token pair (attention
  implementations that keep ``T x T`` probabilities). The backward's transient buffers come on top:
  about as much again as is saved in the trunk, or a few vocabulary-sized buffers per token at the
  output layer, whichever is larger (see the constants below; measured on SmolLM2-135M, a 30M
  Llama and a GPT-2, fast and exact paths, every gradient space).
* forward-only stages (losses, finite differences) and generation: estimated from the model's
  config (vocabulary, hidden size, KV-cache geometry).

Batching never changes a result: every per-example quantity is computed per row, so a budget only
decides how many rows share a batch (tests check scores at two budgets agree to 1e-6).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from grace_engine.errors import InvalidInput

if TYPE_CHECKING:  # budgets and CPU counts serve the API too, which never loads torch
    import torch
    from torch import nn

GB = 10**9  # budgets are decimal gigabytes, as /usr/bin/time and most dashboards report them

# Python, torch, tokenizers, the allocator's and oneDNN's workspaces: measured 0.55-0.6 GB beside
# SmolLM2's weights on this 2-core machine; rounded up.
RUNTIME_BYTES = int(0.8 * GB)
# Only this share of the budget is planned for: allocator fragmentation and short-lived copies
# that no probe sees take the rest.
PLANNED_SHARE = 0.9
# Backward transients beside the saved tensors, per token. In the trunk they track what is saved
# (measured 0.9-1.2x), at the head they are a few vocabulary-sized float buffers (gradient of the
# log-softmax, of the logits, the nll scatter; measured 3.2-5.2 of them).
TRANSIENT_PER_SAVED = 1.3
TRANSIENT_LOGIT_BUFFERS = 5.5
# Forward without a graph: the logits and the log-softmax of the loss, plus a few hidden-sized
# temporaries per layer (measured 1.06 vocabulary buffers per token on SmolLM2).
FORWARD_LOGIT_BUFFERS = 2.0
FORWARD_HIDDEN_BUFFERS = 16.0
# Sampling keeps a few vocabulary-sized rows per sequence (logits, probabilities, top-p sort).
GENERATION_LOGIT_BUFFERS = 6.0
PROBE_LENGTHS = (16, 32, 64)


def release_memory() -> None:
    """Collect garbage and hand the allocator's free heap back to the OS (glibc ``malloc_trim``).

    After a training run, glibc keeps several GB of freed small and mid-sized blocks in its arenas;
    the next stage's large tensors cannot reuse them, so RSS would grow past the budget by what
    the previous stage left behind (measured: 5.8 GB resident after a LoRA run on SmolLM2, 2.4 GB
    after the trim)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def freeze_imports() -> None:
    """Exempt every object alive now from the cyclic garbage collector (``gc.freeze``).

    Call once a process has imported its libraries and before it loads a model. torch,
    transformers and scipy leave about half a million module-level objects that live as long as the
    process, and every full collection in :func:`release_memory` walks them all: 0.26 s a call on
    2 cores, 37 calls in one ``grace validate`` (13% of its time), and about 0 s once frozen.
    Reference counting still frees frozen objects; only a frozen cycle is never collected, and
    module state is never garbage anyway. Objects made later (models, tensors) are collected as
    before."""
    gc.collect()
    gc.freeze()


def available_cpus() -> int:
    """CPUs this process may use: sched_getaffinity respects cgroup/taskset limits (Linux only)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_budget_gb() -> float:
    """Half of the machine's physical memory, at most 8 GB: safe beside a database and a browser."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 8.0
    return min(8.0, total / 2 / GB)


def _gb(n_bytes: float) -> str:
    return f"{n_bytes / GB:.2f} GB"


@dataclass(frozen=True)
class BatchCost:
    """Peak bytes one batch of ``size`` rows padded to ``width`` tokens adds to what is resident.

    ``per_token * size * width + per_token_pair * size * width**2 + per_example * size + fixed``;
    with ``sequential`` (the exact path) only one row's activations are alive at a time, so the
    token terms count one row.
    """

    per_token: float
    per_token_pair: float = 0.0
    per_example: float = 0.0
    fixed: float = 0.0
    sequential: bool = False

    def bytes(self, size: int, width: int) -> float:
        rows = 1 if self.sequential else size
        tokens = rows * (self.per_token * width + self.per_token_pair * width * width)
        return tokens + self.per_example * size + self.fixed


@dataclass(frozen=True)
class MemoryBudget:
    """The peak RSS a job may reach. ``MemoryBudget.from_gb(6)``; ``MemoryBudget()`` is the default."""

    total_bytes: int = field(default_factory=lambda: int(default_budget_gb() * GB))

    def __post_init__(self) -> None:
        if self.total_bytes <= 0:
            raise InvalidInput("must be positive", field="memory_budget")

    @classmethod
    def from_gb(cls, gb: float | None) -> MemoryBudget:
        if gb is None:
            return cls()
        if not (math.isfinite(gb) and gb > 0):
            raise InvalidInput("must be a positive number of GB", field="memory_budget")
        return cls(int(gb * GB))

    @property
    def gb(self) -> float:
        return self.total_bytes / GB

    def plan(self, resident_bytes: float, cost: BatchCost, *, stage: str) -> BatchPlan:
        return BatchPlan(self, resident_bytes, cost, stage)


@dataclass(frozen=True)
class BatchPlan:
    """What one stage may put in a batch, under ``budget`` with ``resident_bytes`` already taken."""

    budget: MemoryBudget
    resident_bytes: float
    cost: BatchCost
    stage: str

    @property
    def available_bytes(self) -> float:
        return self.budget.total_bytes * PLANNED_SHARE - self.resident_bytes

    def fits(self, size: int, width: int) -> bool:
        """Whether ``size`` rows of ``width`` tokens fit (one row always may: see :meth:`require`)."""
        return size <= 1 or self.cost.bytes(size, width) <= self.available_bytes

    def minimum_bytes(self, width: int) -> float:
        """The smallest budget that holds what is resident and one row of ``width`` tokens."""
        return (self.resident_bytes + self.cost.bytes(1, width)) / PLANNED_SHARE

    def require(self, width: int, *, what: str = "the longest example") -> None:
        """Refuse, before any work, a budget that cannot hold one row of ``width`` tokens."""
        need = self.minimum_bytes(width)
        if need > self.budget.total_bytes:
            raise InvalidInput(
                f"a memory budget of {_gb(self.budget.total_bytes)} cannot hold the {self.stage} stage: "
                f"{_gb(self.resident_bytes)} resident (runtime and model weights) plus "
                f"{_gb(self.cost.bytes(1, width))} for {what} ({width} tokens) needs at least "
                f"{_gb(need)}; raise the budget (--memory-budget / GRACE_MEMORY_BUDGET_GB) to "
                f"{math.ceil(need / GB * 10) / 10:g} or more, or shorten the examples "
                "(max_tokens, max_length with truncate)",
                field="memory_budget",
            )

    def rows(self, width: int, *, limit: int) -> int:
        """How many rows of ``width`` tokens fit, between 1 and ``limit``."""
        size = 1
        while size < limit and self.fits(size + 1, width):
            size += 1
        return size


# --- what is resident ------------------------------------------------------------------------------


def module_bytes(model: nn.Module) -> int:
    """Bytes of a model's parameters and buffers, shared (tied) storage counted once."""
    seen: dict[int, int] = {}
    for t in [*model.parameters(), *model.buffers()]:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


def resident_bytes(models: list[nn.Module]) -> int:
    """The runtime plus every loaded model: what a stage cannot use for its batches."""
    unique = {id(m): m for m in models}
    return RUNTIME_BYTES + sum(module_bytes(m) for m in unique.values())


# --- costs ---------------------------------------------------------------------------------------


def _float_bytes(model: nn.Module) -> int:
    dtype = next(model.parameters()).dtype
    return max(4, dtype.itemsize)  # losses and logits are computed in at least float32


def _config_int(model: nn.Module, *names: str, default: int = 0) -> int:
    config = getattr(model, "config", None)
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return default


def vocab_size(model: nn.Module) -> int:
    head = model.get_output_embeddings()  # type: ignore[operator]
    weight = getattr(head, "weight", None)
    if weight is not None:
        return int(weight.shape[0])
    return _config_int(model, "vocab_size", default=1)


def hidden_size(model: nn.Module) -> int:
    embed = model.get_input_embeddings()  # type: ignore[operator]
    weight = getattr(embed, "weight", None)
    if weight is not None:
        return int(weight.shape[1])
    return _config_int(model, "hidden_size", default=1)


def saved_bytes(model: nn.Module, step: Callable[[], object]) -> int:
    """Bytes of the tensors autograd keeps for the backward while ``step()`` runs (parameters
    excluded, a storage shared by several saved tensors counted once)."""
    import torch

    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return sum(seen.values())


def fit_token_terms(lengths: tuple[int, int, int], values: tuple[float, float, float]) -> tuple[float, float]:
    """``(a, b)`` of ``v(T) = c + a T + b T^2`` through three points, each clipped at zero."""
    (t1, t2, t3), (v1, v2, v3) = lengths, values
    s12, s23 = (v2 - v1) / (t2 - t1), (v3 - v2) / (t3 - t2)
    b = max(0.0, (s23 - s12) / (t3 - t1))
    a = max(0.0, s23 - b * (t3 + t2))
    return a, b


def gradient_cost(
    model: nn.Module,
    run: Callable[[list[int], list[int]], object],
    *,
    per_example: float = 0.0,
    fixed: float = 0.0,
    sequential: bool = False,
) -> BatchCost:
    """The cost of a gradient step, probed on the loaded model.

    ``run(input_ids, labels)`` performs the step on one unpadded row. Rows of
    :data:`PROBE_LENGTHS` tokens are probed; the fitted saved bytes get the backward's transients
    on top (module docstring).
    """
    vocab = vocab_size(model)

    def probe(length: int) -> float:
        ids = [i % vocab for i in range(length)]
        return float(saved_bytes(model, lambda: run(ids, [-100, *ids[1:]])))

    a, b = fit_token_terms(
        PROBE_LENGTHS, (probe(PROBE_LENGTHS[0]), probe(PROBE_LENGTHS[1]), probe(PROBE_LENGTHS[2]))
    )
    head = TRANSIENT_LOGIT_BUFFERS * vocab * _float_bytes(model)
    return BatchCost(
        per_token=a + max(TRANSIENT_PER_SAVED * a, head),
        per_token_pair=b * (1 + TRANSIENT_PER_SAVED),
        per_example=per_example,
        fixed=fixed,
        sequential=sequential,
    )


def forward_cost(model: nn.Module) -> BatchCost:
    """A forward pass without a graph that keeps the logits for a loss."""
    size = _float_bytes(model)
    return BatchCost(
        per_token=size
        * (FORWARD_LOGIT_BUFFERS * vocab_size(model) + FORWARD_HIDDEN_BUFFERS * hidden_size(model))
    )


def kv_bytes_per_token(model: nn.Module) -> int:
    """Key and value cache bytes per token of one sequence, from the model's config."""
    layers = _config_int(model, "num_hidden_layers", "n_layer", default=1)
    heads = _config_int(model, "num_attention_heads", "n_head", default=1)
    kv_heads = _config_int(model, "num_key_value_heads", default=heads)
    head_dim = _config_int(model, "head_dim", default=max(1, hidden_size(model) // heads))
    dtype_bytes = next(model.parameters()).dtype.itemsize
    return 2 * layers * kv_heads * head_dim * dtype_bytes


def generation_cost(model: nn.Module) -> BatchCost:
    """One sequence of ``width`` tokens (prompt + new tokens) in ``generate``: its KV cache, the
    prefill's hidden-sized temporaries, and the sampling rows."""
    size = _float_bytes(model)
    return BatchCost(
        per_token=kv_bytes_per_token(model) + FORWARD_HIDDEN_BUFFERS * hidden_size(model) * size,
        per_example=GENERATION_LOGIT_BUFFERS * vocab_size(model) * size,
    )


def grace_split_bytes(rows: int, d: int) -> float:
    """One GRACE split in flight: the training rows and three ``d x d`` float64 matrices."""
    return 8.0 * (rows * d + 3 * d * d)


def grace_shared_bytes(rows: int, d: int) -> float:
    """What every split shares: the gradients, their normalised copy and one ``d x d`` Gram matrix."""
    return 8.0 * (2 * rows * d + d * d)


def grace_workers(budget: MemoryBudget, resident: float, shape: tuple[int, ...]) -> int:
    """How many GRACE splits of a ``(rows, d)`` gradient matrix run at once (at least one)."""
    rows, d = shape
    spare = budget.total_bytes * PLANNED_SHARE - resident - grace_shared_bytes(rows, d)
    return max(1, int(spare // grace_split_bytes(rows, d)))
