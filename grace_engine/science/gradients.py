"""Per-example projected student gradients.

The loss of an example is the mean cross-entropy over its response tokens (HF's shifted-label
loss), the student in eval mode. Gradient spaces (:class:`GradientSpace`):

* ``full`` -- every parameter of the student (a tied embedding/output matrix counts once);
* ``output_layer`` -- the output projection (``lm_head``) seen as a linear map on the final hidden
  states; for tied weights only the output-side use is differentiated. Needs no backward through the
  network;
* ``lora`` -- rank-``r`` adapters ``W + (alpha/r) B A`` on every linear layer of the decoder (not the
  output layer), PEFT's initialisation: ``A`` seeded Kaiming-uniform, ``B = 0``. With ``B = 0`` the
  gradient w.r.t. ``A`` is exactly zero and the one w.r.t. ``B`` is ``(alpha/r) sum_t delta_t (A x_t)^T``.

Two paths compute them:

* :class:`ExactGradients` (reference) -- for each example alone, unpadded: a batch-1 backward,
  the flattened gradient, then :class:`~grace_engine.science.projection.DenseProjector`. Slow; tests and
  small models.
* :class:`FastGradients` (default) -- one batched forward and backward per batch; forward hooks keep
  each layer's input already multiplied by its column factor, tensor hooks on the layer outputs
  receive the per-example output-gradients and multiply them by the row factor, and the two are
  contracted over tokens into a ``(k_r, k_c)`` block per example
  (:class:`~grace_engine.science.projection.FactorizedProjector`). No per-example full gradient ever exists
  and parameters never receive ``.grad`` (the backward computes activation gradients only).
  How each kind of parameter is handled:

  - ``nn.Linear`` ``W`` (out x in): ``sum_t (P_r delta_t)(P_c x_t)^T``; bias: ``sum_t delta_t``.
  - GPT-2 ``Conv1D`` (weight stored in x out): the same with the roles of input and output swapped.
  - ``nn.Embedding`` (num x dim), token and position tables: row ``i`` of the gradient is the sum
    of output-gradients at positions holding index ``i``, so ``sum_t P_r[:, id_t] (P_c delta_t)^T``
    (a column lookup instead of a one-hot product). Position ids are passed per row so a
    position table's gradient is never summed over the batch.
  - ``nn.LayerNorm``: weight ``sum_t delta_t * xhat_t`` with ``xhat`` recomputed from the layer
    input, bias ``sum_t delta_t``; ``*RMSNorm`` (weight only): ``sum_t delta_t * x_t / rms(x_t)``.
  - Tied input/output embeddings: both uses add into the same block with the same factors, as the
    gradient of the shared matrix is the sum of both.

  Padding contributes nothing: inputs are right-padded with attention masked, pad labels are -100,
  and the projected activations are multiplied by the attention mask. Any other module that owns
  parameters makes the fast path refuse the model (:class:`~grace_engine.errors.UnsupportedModel`);
  the exact path still works.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Literal, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn

from grace_engine.errors import Cancelled, InvalidInput, UnsupportedModel
from grace_engine.memory import BatchCost, BatchPlan, forward_cost, gradient_cost, vocab_size
from grace_engine.models.batches import StudentBatch, collate
from grace_engine.models.data import IGNORE_INDEX, StudentExample, length_batches
from grace_engine.science.gradient_space import PATH_KINDS, GradientSpace, PathKind
from grace_engine.science.projection import (
    Block,
    DenseProjector,
    FactorizedProjector,
    ProjectionIdentity,
    stream_seed,
)

RANK_CLIP = 100  # the released RSR code's r
RANK_CHUNK = 256  # tokens per rank comparison: 256 x 49k vocabulary x 4 bytes = 50 MB


def _at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """Half-precision logits are upcast for the loss; float64 stays float64."""
    return x if x.dtype == torch.float64 else x.float()


def per_example_losses(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean response-token cross-entropy of each row, HF's shifted-label convention.

    The targets are shifted, not the logits, so ``logits`` keeps its contiguous ``(B*T, V)`` layout
    (no copy of the largest tensor of the step). Each token's loss is ``logsumexp(row) - row[target]``:
    in float32 on a 49k vocabulary this stays within 1e-7 of float64, where ``F.cross_entropy``
    (log-softmax, then NLL) is 5e-6 low on SmolLM2 and 1e-4 when reduced along a strided dimension.

    Args:
        logits: ``(B, T, V)``; labels: ``(B, T)`` with -100 where no loss is taken.
    Returns:
        ``(losses (B,) nats/token in float32, or float64 for a float64 model; n_tokens (B,) int64)``.
    """
    size, width, vocab = logits.shape
    targets = F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX).reshape(-1)  # position t predicts t + 1
    rows = _at_least_fp32(logits).reshape(size * width, vocab)
    keep = targets != IGNORE_INDEX
    picked = rows.gather(1, targets.clamp(min=0)[:, None]).squeeze(1)
    token_nll = torch.where(keep, torch.logsumexp(rows, dim=1) - picked, 0.0).view(size, width)
    n_tokens = keep.view(size, width).sum(dim=1)
    return token_nll.sum(dim=1) / n_tokens.clamp(min=1), n_tokens


def per_example_rank_sums(
    logits: torch.Tensor, labels: torch.Tensor, *, clip: int = RANK_CLIP
) -> torch.Tensor:
    """Sum over each row's response tokens of the student's rank of the target token, clipped at
    ``clip`` (the Rank-Surprisal Ratio's numerator, Yang et al. 2026).

    The rank is 1 + the number of vocabulary entries with a strictly larger logit (1 = the student's
    top choice), compared in at least float32 as the released code does. Tokens are taken
    :data:`RANK_CHUNK` at a time so the comparison never holds a second ``(B*T, V)`` tensor.

    Args:
        logits: ``(B, T, V)``; labels: ``(B, T)`` with -100 where no loss is taken.
    Returns:
        ``(B,)`` float64 rank sums.
    """
    size, width, vocab = logits.shape
    targets = F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX).reshape(-1)
    rows = logits.detach().reshape(size * width, vocab)
    positions = (targets != IGNORE_INDEX).nonzero().squeeze(1)
    ranks = torch.empty(positions.shape[0], dtype=torch.float64, device=logits.device)
    for start in range(0, positions.shape[0], RANK_CHUNK):
        at = positions[start : start + RANK_CHUNK]
        chunk = _at_least_fp32(rows[at])
        picked = chunk.gather(1, targets[at, None])
        ranks[start : start + RANK_CHUNK] = (chunk > picked).sum(dim=1).add(1).clamp(max=clip).double()
    sums = torch.zeros(size * width, dtype=torch.float64, device=logits.device)
    return sums.index_add_(0, positions, ranks).view(size, width).sum(dim=1)


class BatchOutput(NamedTuple):
    """What a gradient computer returns for a batch, all on the model's device: ``gradients``
    ``(B, d)`` (projected; ``(B, D)`` flat from :func:`exact_flat_gradients`; ``(B, 0)`` from a
    forward-only computer), ``losses (B,)`` mean NLL in nats/token, ``n_tokens (B,)`` response
    tokens, ``rank_sums (B,)`` summed clipped target ranks (:func:`per_example_rank_sums`)."""

    gradients: torch.Tensor
    losses: torch.Tensor
    n_tokens: torch.Tensor
    rank_sums: torch.Tensor


def rank_buffer_bytes(model: nn.Module) -> float:
    """What :func:`per_example_rank_sums` holds at once: a float32 chunk of logits, its comparison."""
    return float(RANK_CHUNK * vocab_size(model) * 5)


def _forward_stats(
    logits: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    losses, n_tokens = per_example_losses(logits, labels)
    return losses, n_tokens, per_example_rank_sums(logits, labels)


# --- the parameters of a gradient space ----------------------------------------------------------


def _conv1d_type() -> type | None:
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover - transformers always ships it today
        return None
    return Conv1D  # type: ignore[no-any-return]


def _is_rmsnorm(module: nn.Module) -> bool:
    weight = getattr(module, "weight", None)
    eps = getattr(module, "variance_epsilon", getattr(module, "eps", None))
    return (
        type(module).__name__.endswith("RMSNorm")
        and isinstance(weight, nn.Parameter)
        and weight.dim() == 1
        and isinstance(eps, float)
        and getattr(module, "bias", None) is None
    )


@dataclass
class LoraAdapter:
    """One adapter pair on ``module``: ``a`` (r, in), ``b`` (out, r), output += scaling * x A^T B^T."""

    module: nn.Module
    a: torch.Tensor
    b: torch.Tensor
    scaling: float
    a_name: str
    b_name: str


@dataclass
class Tap:
    """A module the fast path hooks, and the blocks it feeds."""

    module: nn.Module
    kind: Literal["linear", "conv1d", "embedding", "layernorm", "rmsnorm", "lora", "output"]
    weight: str | None = None
    bias: str | None = None
    adapter: LoraAdapter | None = None


@dataclass
class SpaceLayout:
    """The blocks of a gradient space on one model, and what computes each of them.

    ``blocks`` fixes the flattened order used by the exact path and the projections;
    ``parameters`` (full space) are the tensors behind them; ``taps`` drive the fast path;
    ``unsupported`` lists modules owning parameters the fast path cannot handle.
    """

    space: GradientSpace
    blocks: list[Block]
    taps: list[Tap]
    parameters: list[nn.Parameter] = field(default_factory=list)
    adapters: list[LoraAdapter] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)

    @property
    def grad_dim(self) -> int:
        return sum(b.numel for b in self.blocks)


def _output_layer(model: nn.Module) -> nn.Module | None:
    head: nn.Module | None = model.get_output_embeddings()  # type: ignore[operator]
    return head


def _is_conv1d(module: nn.Module) -> bool:
    conv1d = _conv1d_type()
    return conv1d is not None and type(module) is conv1d


def _decoder_linears(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    head = _output_layer(model)
    for name, module in model.named_modules():
        if module is not head and (type(module) is nn.Linear or _is_conv1d(module)):
            yield name, module


def _io_dims(module: nn.Module) -> tuple[int, int]:
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    return (
        (weight.shape[1], weight.shape[0])
        if type(module) is nn.Linear
        else (weight.shape[0], weight.shape[1])
    )


def describe_space(model: nn.Module, space: GradientSpace, *, seed: int = 0) -> SpaceLayout:
    """Lay out ``space`` on ``model``: deterministic block order, fast-path taps, LoRA adapters."""
    if space.kind == "output_layer":
        head = _output_layer(model)
        if type(head) is not nn.Linear:
            raise UnsupportedModel(
                f"the output layer is {type(head).__name__}, not nn.Linear", field="student"
            )
        blocks = [Block("output.weight", tuple(head.weight.shape))]
        bias = "output.bias" if head.bias is not None else None
        if bias:
            blocks.append(Block(bias, tuple(head.bias.shape)))
        return SpaceLayout(space, blocks, [Tap(head, "output", "output.weight", bias)])
    if space.kind == "lora":
        return _lora_layout(model, space, seed)
    return _full_layout(model, space)


def _lora_layout(model: nn.Module, space: GradientSpace, seed: int) -> SpaceLayout:
    blocks: list[Block] = []
    taps: list[Tap] = []
    adapters: list[LoraAdapter] = []
    device = next(model.parameters()).device
    r = space.lora_rank
    for name, module in _decoder_linears(model):
        fan_in, fan_out = _io_dims(module)
        gen = torch.Generator().manual_seed(stream_seed(seed, f"lora/{name}"))
        bound = 1.0 / math.sqrt(fan_in)  # kaiming_uniform_(a=sqrt(5)), PEFT's default for A
        a = (torch.rand(r, fan_in, generator=gen) * 2 - 1).mul_(bound).to(device)
        b = torch.zeros(fan_out, r, device=device)
        adapter = LoraAdapter(module, a, b, space.lora_alpha / r, f"lora.{name}.A", f"lora.{name}.B")
        adapters.append(adapter)
        blocks += [Block(adapter.a_name, (r, fan_in)), Block(adapter.b_name, (fan_out, r))]
        taps.append(Tap(module, "lora", adapter=adapter))
    if not adapters:
        raise UnsupportedModel("no linear layer to attach LoRA adapters to", field="student")
    return SpaceLayout(space, blocks, taps, adapters=adapters)


def _full_layout(model: nn.Module, space: GradientSpace) -> SpaceLayout:
    names = {id(p): n for n, p in model.named_parameters()}  # first name of a tied parameter
    parameters = [p for _, p in model.named_parameters()]
    blocks = [Block(n, tuple(p.shape)) for n, p in model.named_parameters()]
    head = _output_layer(model)
    taps: list[Tap] = []
    unsupported: list[str] = []
    for mod_name, module in model.named_modules():
        own = dict(module.named_parameters(recurse=False))
        if not own:
            continue
        weight = names.get(id(own["weight"])) if "weight" in own else None
        bias = names.get(id(own["bias"])) if "bias" in own else None
        kind: Any = None
        if type(module) is nn.Linear:
            kind = "output" if module is head else "linear"
        elif _is_conv1d(module):
            kind = "conv1d"
        elif type(module) is nn.Embedding:
            kind = "embedding"
        elif type(module) is nn.LayerNorm:
            kind = "layernorm"
        elif _is_rmsnorm(module):
            kind = "rmsnorm"
        if kind is None or set(own) - {"weight", "bias"}:
            unsupported.append(f"{mod_name} ({type(module).__name__})")
            continue
        taps.append(Tap(module, kind, weight, bias))
    return SpaceLayout(space, blocks, taps, parameters=parameters, unsupported=unsupported)


# --- exact reference path --------------------------------------------------------------------------


class GradientComputer(Protocol):
    """``batch ->`` :class:`BatchOutput` (projected ``(B, d)`` float32 and the forward's statistics).

    ``cost()`` probes what one batch of this computation costs in memory on its model.
    """

    d: int
    grad_dim: int

    def __call__(self, batch: StudentBatch) -> BatchOutput: ...

    def cost(self) -> BatchCost: ...

    def identity(self) -> ProjectionIdentity | None:
        """The projection's identity (None without one: the forward-only computer)."""


def _one_row(ids: list[int], labels: list[int], device: torch.device) -> StudentBatch:
    return collate([StudentExample(ids, labels, truncated=False)], pad_id=0).to(device)


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@contextmanager
def _exact_parameters(model: nn.Module, layout: SpaceLayout) -> Iterator[list[torch.Tensor]]:
    """Tensors to differentiate, in block order, for the duration of the context."""
    kind = layout.space.kind
    handles: list[Any] = []
    was_trainable = [p.requires_grad for p in layout.parameters]
    try:
        if kind == "full":
            for p in layout.parameters:
                p.requires_grad_(True)
            yield list(layout.parameters)
        elif kind == "output_layer":
            head = layout.taps[0].module
            assert isinstance(head, nn.Linear)
            w = head.weight.detach().clone().requires_grad_(True)
            b = None if head.bias is None else head.bias.detach().clone().requires_grad_(True)

            def head_forward(module: nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> torch.Tensor:
                return F.linear(args[0].detach(), w, b)

            handles.append(head.register_forward_hook(head_forward))
            yield [w] if b is None else [w, b]
        else:
            tensors: list[torch.Tensor] = []
            for ad in layout.adapters:
                a, b = ad.a.clone().requires_grad_(True), ad.b.clone().requires_grad_(True)
                tensors += [a, b]

                def add_adapter(
                    module: nn.Module,
                    args: tuple[Any, ...],
                    out: torch.Tensor,
                    a: torch.Tensor = a,
                    b: torch.Tensor = b,
                    s: float = ad.scaling,
                ) -> torch.Tensor:
                    return out + s * F.linear(F.linear(args[0], a), b)

                handles.append(ad.module.register_forward_hook(add_adapter))
            yield tensors
    finally:
        for h in handles:
            h.remove()
        for p, trainable in zip(layout.parameters, was_trainable, strict=True):
            p.requires_grad_(trainable)


def exact_flat_gradients(model: nn.Module, layout: SpaceLayout, batch: StudentBatch) -> BatchOutput:
    """Unprojected per-example gradients ``(B, grad_dim)`` (at least float32), one unpadded batch-1
    backward each."""
    grads, losses, counts, ranks = [], [], [], []
    lengths = batch.lengths.tolist()
    with _exact_parameters(model, layout) as tensors:
        for row, length in enumerate(lengths):
            ids = batch.input_ids[row : row + 1, :length]
            labels = batch.labels[row : row + 1, :length]
            with torch.enable_grad():
                logits = model(input_ids=ids, use_cache=False).logits
                loss, n_tok, rank_sum = _forward_stats(logits, labels)
                del logits
                parts = torch.autograd.grad(loss.sum(), tensors, allow_unused=True)
            grads.append(
                torch.cat(
                    [
                        (torch.zeros_like(t) if g is None else g).reshape(-1)
                        for g, t in zip(parts, tensors, strict=True)
                    ]
                )
            )
            losses.append(loss.detach())
            counts.append(n_tok)
            ranks.append(rank_sum)
    return BatchOutput(
        _at_least_fp32(torch.stack(grads)), torch.cat(losses), torch.cat(counts), torch.cat(ranks)
    )


class ExactGradients:
    """Reference path: exact per-example gradients times a dense seeded Rademacher map / sqrt(D)."""

    def __init__(self, model: nn.Module, layout: SpaceLayout, *, d: int, seed: int) -> None:
        self.model, self.layout, self.d, self.grad_dim = model, layout, d, layout.grad_dim
        self.projector = DenseProjector(layout.grad_dim, d, seed)

    def identity(self) -> ProjectionIdentity:
        return self.projector.identity()

    def __call__(self, batch: StudentBatch) -> BatchOutput:
        out = exact_flat_gradients(self.model, self.layout, batch)
        return out._replace(gradients=self.projector.project(out.gradients))

    def cost(self) -> BatchCost:
        """Rows run one at a time; each keeps its flat gradient until the batch is projected (and
        ``torch.stack`` copies them once), and the current row holds its parts and their concatenation."""
        device = _model_device(self.model)
        float64 = next(self.model.parameters()).dtype == torch.float64
        flat = self.grad_dim * (8 if float64 else 4)
        return gradient_cost(
            self.model,
            lambda ids, labels: exact_flat_gradients(self.model, self.layout, _one_row(ids, labels, device)),
            per_example=2 * flat,
            fixed=2 * flat + rank_buffer_bytes(self.model),
            sequential=True,
        )


# --- fast path ---------------------------------------------------------------------------------------


def _token_rows(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(B, T, ..., n) -> (B, N, n)``, zeroing pad positions when the layout is batch x token."""
    if x.dim() >= 3 and x.shape[:2] == mask.shape:
        x = x * mask.view(*mask.shape, *([1] * (x.dim() - 2))).to(x.dtype)
    return x.reshape(x.shape[0], -1, x.shape[-1])


def _apply(factor: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    return x if factor is None else x @ factor.T


ForwardHook = Callable[[nn.Module, tuple[Any, ...], torch.Tensor], torch.Tensor]


def _when_grad(tensor: torch.Tensor, fn: Callable[[torch.Tensor], None]) -> None:
    """Call ``fn`` with the gradient w.r.t. ``tensor`` when the backward pass reaches it."""
    tensor.register_hook(fn)  # type: ignore[no-untyped-call]


class FastGradients:
    """Batched per-example projected gradients from layer hooks (see the module docstring)."""

    def __init__(self, model: nn.Module, layout: SpaceLayout, projector: FactorizedProjector) -> None:
        if layout.unsupported:
            raise UnsupportedModel(
                "the fast gradient path cannot handle the parameters of "
                + ", ".join(layout.unsupported[:5])
                + "; use path='exact' or gradient_space='lora'/'output_layer'",
                field="student",
            )
        self.model, self.layout, self.projector = model, layout, projector
        self.d, self.grad_dim = projector.d, layout.grad_dim
        self._acc: dict[str, torch.Tensor] = {}
        self._roots: list[torch.Tensor] = []
        self._mask = torch.ones(0)
        self._lookup: dict[str, torch.Tensor] = {}  # (num, k_r) transposed embedding row factors

    # Each forward hook projects what it needs from the layer input now and registers a tensor hook
    # that receives the output-gradient later; the pair is contracted over tokens right there.

    def _add(self, name: str, value: torch.Tensor) -> None:
        self._acc[name] = self._acc[name] + value if name in self._acc else value

    def _outer(self, name: str, rows: torch.Tensor, cols: torch.Tensor) -> None:
        """Accumulate ``sum_n rows[b, n, :]^T cols[b, n, :]`` for every example ``b``."""
        self._add(name, torch.bmm(rows.transpose(1, 2), cols))

    def _start_graph(self, out: torch.Tensor) -> torch.Tensor:
        if not out.requires_grad:
            out.requires_grad_(True)
            self._roots.append(out)
        return out

    def _rows(self, x: torch.Tensor) -> torch.Tensor:
        """Token rows in the projector's precision (at least float32, whatever the model's)."""
        return _token_rows(x, self._mask).to(self.projector.dtype)

    def _grad_rows(self, g: torch.Tensor) -> torch.Tensor:
        """Output-gradient token rows, unmasked: with right padding and a causal mask no real
        position reads a pad, and pads carry no loss, so their gradients are exactly zero already.
        Masking them would copy the largest tensor of the backward (``(B, T, vocab)`` at the head)."""
        return g.reshape(g.shape[0], -1, g.shape[-1]).to(self.projector.dtype)

    def _linear_hook(self, tap: Tap) -> ForwardHook:
        """Linear, Conv1D, output layer and LoRA taps: contract (row side, column side) over tokens."""
        proj = self.projector

        def hook(module: nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> torch.Tensor:
            x = self._rows(args[0].detach())
            if tap.kind == "output" and self.layout.space.kind == "output_layer":
                out = out.detach().requires_grad_(True)  # the trunk needs no graph for this space
                self._roots.append(out)
            if tap.adapter is not None:
                ad = tap.adapter
                ax = _apply(proj.col_factor(ad.b_name), x @ ad.a.T.to(x.dtype))

                def on_grad(g: torch.Tensor) -> None:
                    rows = _apply(proj.row_factor(ad.b_name), self._grad_rows(g)) * ad.scaling
                    self._outer(ad.b_name, rows, ax)

            else:
                w, bias = tap.weight, tap.bias
                assert w is not None
                # Conv1D stores its weight (in, out): the input indexes rows, Linear's indexes columns.
                x_side = _apply(proj.row_factor(w) if tap.kind == "conv1d" else proj.col_factor(w), x)

                def on_grad(g: torch.Tensor) -> None:
                    gd = self._grad_rows(g)
                    if tap.kind == "conv1d":
                        self._outer(w, x_side, _apply(proj.col_factor(w), gd))
                    else:
                        self._outer(w, _apply(proj.row_factor(w), gd), x_side)
                    if bias:
                        self._add(bias, _apply(proj.row_factor(bias), gd.sum(1)))

            _when_grad(out, on_grad)
            return out

        return hook

    def _embedding_hook(self, tap: Tap) -> ForwardHook:
        """Row ``i`` of an embedding gradient sums the output-gradients at positions holding ``i``."""
        w = tap.weight
        assert w is not None
        proj = self.projector

        def hook(module: nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> torch.Tensor:
            assert isinstance(module, nn.Embedding)
            ids = args[0]
            if ids.shape != self._mask.shape:
                raise UnsupportedModel(f"embedding {w} is called with indices of shape {tuple(ids.shape)}")
            if w not in self._lookup:
                factor = proj.row_factor(w)
                self._lookup[w] = (
                    torch.eye(module.num_embeddings, device=ids.device, dtype=proj.dtype)
                    if factor is None
                    else factor.T.contiguous()
                )
            rows = _token_rows(self._lookup[w][ids], self._mask)
            out = self._start_graph(out)
            _when_grad(out, lambda g: self._outer(w, rows, _apply(proj.col_factor(w), self._grad_rows(g))))
            return out

        return hook

    def _norm_hook(self, tap: Tap) -> ForwardHook:
        """LayerNorm / RMSNorm: weight gradient ``sum_t delta_t * xhat_t``, bias ``sum_t delta_t``."""
        proj = self.projector

        def hook(module: nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> torch.Tensor:
            x = args[0].detach().to(proj.dtype)
            eps = float(getattr(module, "variance_epsilon", getattr(module, "eps", 0.0)))
            if tap.kind == "layernorm":
                xhat = (x - x.mean(-1, keepdim=True)) * torch.rsqrt(
                    x.var(-1, unbiased=False, keepdim=True) + eps
                )
            else:
                xhat = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
            xhat = self._rows(xhat)

            def on_grad(g: torch.Tensor) -> None:
                gd = self._grad_rows(g)
                if tap.weight:
                    self._add(tap.weight, _apply(proj.row_factor(tap.weight), (gd * xhat).sum(1)))
                if tap.bias:
                    self._add(tap.bias, _apply(proj.row_factor(tap.bias), gd.sum(1)))

            _when_grad(out, on_grad)
            return out

        return hook

    def _hook(self, tap: Tap) -> ForwardHook:
        if tap.kind == "embedding":
            return self._embedding_hook(tap)
        if tap.kind in ("layernorm", "rmsnorm"):
            return self._norm_hook(tap)
        return self._linear_hook(tap)

    @contextmanager
    def _hooks(self) -> Iterator[None]:
        # Frozen parameters: the backward then computes activation gradients only, no weight grads.
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        for p in trainable:
            p.requires_grad_(False)
        handles = [tap.module.register_forward_hook(self._hook(tap)) for tap in self.layout.taps]
        if self.layout.space.kind == "lora":
            embed = self.model.get_input_embeddings()  # type: ignore[operator]
            handles.append(embed.register_forward_hook(lambda _m, _a, out: self._start_graph(out)))
        try:
            yield
        finally:
            for h in handles:
                h.remove()
            for p in trainable:
                p.requires_grad_(True)
            self._acc, self._roots = {}, []

    def identity(self) -> ProjectionIdentity:
        return self.projector.identity()

    def __call__(self, batch: StudentBatch) -> BatchOutput:
        self._mask = batch.attention_mask
        size = batch.input_ids.shape[0]
        with self._hooks(), torch.enable_grad():
            logits = _logits(self.model, batch)
            losses, n_tokens, rank_sums = _forward_stats(logits, batch.labels)
            del logits  # no reference may outlive the loss: it would stay alive through the backward
            # Summing per-example means keeps every example's output-gradient its own.
            torch.autograd.grad(losses.sum(), self._roots)
            projected = self.projector.combine(self._acc, size)
        return BatchOutput(projected, losses.detach(), n_tokens, rank_sums)

    def cost(self) -> BatchCost:
        device = _model_device(self.model)
        return gradient_cost(
            self.model,
            lambda ids, labels: self(_one_row(ids, labels, device)),
            fixed=rank_buffer_bytes(self.model),
        )


def _logits(model: nn.Module, batch: StudentBatch) -> torch.Tensor:
    """Logits of a right-padded batch, position ids given per row (so a position table's gradient
    is never summed over the batch)."""
    size, width = batch.input_ids.shape
    positions = torch.arange(width, device=batch.input_ids.device).expand(size, width)
    logits: torch.Tensor = model(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        position_ids=positions,
        use_cache=False,
    ).logits
    return logits


class ForwardStatistics:
    """The forward-only computer: no backward, no projection (``d = 0``); what the student's
    forward pass gives (losses, response tokens, target ranks) for the predictors that need no
    gradients (student NLL, RSR, response length)."""

    d = 0
    grad_dim = 0

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def identity(self) -> None:
        return None

    def __call__(self, batch: StudentBatch) -> BatchOutput:
        with torch.no_grad():
            logits = _logits(self.model, batch)
            losses, n_tokens, rank_sums = _forward_stats(logits, batch.labels)
        empty = torch.zeros(batch.input_ids.shape[0], 0, device=batch.input_ids.device)
        return BatchOutput(empty, losses, n_tokens, rank_sums)

    def cost(self) -> BatchCost:
        return replace(forward_cost(self.model), fixed=rank_buffer_bytes(self.model))


# --- driver ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GradientResult:
    """Per-example results in input order: ``gradients (N, d) float32`` (``d = 0`` from a
    forward-only computer), ``losses (N,)`` mean NLL in nats/token, ``n_tokens (N,)`` response tokens
    carrying loss, ``rank_sums (N,)`` their summed clipped target ranks."""

    gradients: npt.NDArray[np.float32]
    losses: npt.NDArray[np.float64]
    n_tokens: npt.NDArray[np.int64]
    rank_sums: npt.NDArray[np.float64]


def make_gradient_computer(
    model: nn.Module,
    *,
    space: GradientSpace,
    d: int = 512,
    seed: int = 0,
    path: PathKind = "fast",
    factor_dim: int = 64,
) -> GradientComputer:
    """The projected-gradient function for ``model``; build it once per job so every candidate gets
    the same projection."""
    if d < 1:
        raise InvalidInput("must be at least 1", field="proj_dim")
    if path not in PATH_KINDS:
        raise InvalidInput(f"must be one of {', '.join(PATH_KINDS)}", field="path")
    layout = describe_space(model, space, seed=seed)
    if path == "exact":
        return ExactGradients(model, layout, d=d, seed=seed)
    # Projections run in at least float32 (a bf16 student still gets float32 sketches).
    weights_dtype = next(model.parameters()).dtype
    projector = FactorizedProjector(
        layout.blocks,
        d,
        seed,
        factor_dim=factor_dim,
        device=_model_device(model),
        dtype=torch.float64 if weights_dtype == torch.float64 else torch.float32,
    )
    return FastGradients(model, layout, projector)


def compute_gradients(
    model: nn.Module,
    computer: GradientComputer,
    examples: Sequence[StudentExample],
    *,
    pad_id: int,
    plan: BatchPlan | None = None,
    max_tokens: int | None = None,
    max_batch: int = 64,
    progress: Callable[[int, int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> GradientResult:
    """Projected gradients of ``examples`` in length-sorted batches; results in input order.

    Batches are as large as ``plan`` (a memory budget's plan for this computer) allows, within
    ``max_batch`` rows and ``max_tokens`` padded tokens when given. ``progress(done, total)`` is
    called after every batch; ``should_cancel()`` before every batch, raising
    :class:`~grace_engine.errors.Cancelled` when it returns true.
    """
    total = len(examples)
    out = np.zeros((total, computer.d), dtype=np.float32)
    losses = np.zeros(total, dtype=np.float64)
    n_tokens = np.zeros(total, dtype=np.int64)
    rank_sums = np.zeros(total, dtype=np.float64)
    device = _model_device(model)
    done = 0
    for indices in length_batches(
        [len(e.input_ids) for e in examples],
        max_batch=max_batch,
        max_tokens=max_tokens,
        fits=None if plan is None else plan.fits,
    ):
        if should_cancel is not None and should_cancel():
            raise Cancelled()
        batch = collate([examples[i] for i in indices], pad_id).to(device)
        result = computer(batch)
        out[indices] = result.gradients.cpu().numpy()
        losses[indices] = result.losses.double().cpu().numpy()
        n_tokens[indices] = result.n_tokens.cpu().numpy()
        rank_sums[indices] = result.rank_sums.cpu().numpy()
        done += len(indices)
        if progress is not None:
            progress(done, total)
    return GradientResult(out, losses, n_tokens, rank_sums)
