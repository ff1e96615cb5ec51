"""Per-response distillation influence (the idea of LGTM, Ren et al. ACL 2023, for generated text).

``influence_i = <grad L_val(theta), grad l_i(theta)>``: the first-order change of the validation
loss when the student takes a gradient step on response ``i`` alone (a step of size ``eta`` changes
``L_val`` by about ``-eta * influence_i``). Positive = training on it helps. ``L_val`` is the mean,
over validation examples (prompt + reference solution), of each example's mean response-token loss.

Methods (one function, :func:`influence`):

* ``exact`` -- full per-response gradients (batch-1 backward) dotted with the exact validation
  gradient. Small models.
* ``projected`` -- the engine's fast projected gradients, one projection for responses and
  validation; rescaled by ``D / d`` so the values are in the same units as ``exact``.
* ``finite_difference`` -- ``[l_i(theta + eps v) - l_i(theta - eps v)] / (2 eps)`` with
  ``v = grad L_val`` and ``eps = 1e-2 / |v|``: one backward for ``v``, then two batched forward
  passes over all responses. Full gradient space only.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import nn

from grace_engine.errors import InvalidInput
from grace_engine.memory import BatchCost, BatchPlan, MemoryBudget, forward_cost, resident_bytes
from grace_engine.models.batches import collate
from grace_engine.models.candidates import Responses
from grace_engine.models.data import (
    Prompt,
    ReferenceExample,
    StudentExample,
    StudentFormat,
    encode_for_student,
    pad_token_id,
)
from grace_engine.progress import ProgressFn, check_cancel, stage_progress
from grace_engine.science.evaluation import batched_losses
from grace_engine.science.gradient_space import GradientSpace
from grace_engine.science.gradients import (
    ExactGradients,
    SpaceLayout,
    compute_gradients,
    describe_space,
    exact_flat_gradients,
    make_gradient_computer,
)

if TYPE_CHECKING:  # mixture reads influence results, so the import runs one way only
    from grace_engine.science.mixture import MixedExample

Method = Literal["exact", "projected", "finite_difference"]
METHODS: tuple[Method, ...] = ("exact", "projected", "finite_difference")
FD_STEP = 1e-2  # eps * |v|: the length of the finite-difference step along the validation gradient


DEFAULT_PROJ_DIM = 2048  # influence is one inner product per response: a larger d only lowers noise


@dataclass(frozen=True)
class ResponseInfluence:
    candidate: str
    prompt_id: str
    index: int
    influence: float
    loss: float


@dataclass(frozen=True)
class CandidateInfluence:
    """Mean influence of a candidate's responses and the share that help."""

    candidate: str
    mean: float
    share_positive: float
    n_responses: int


@dataclass(frozen=True)
class InfluenceResult:
    method: str
    validation_loss: float
    responses: list[ResponseInfluence]
    # The mixed-teacher dataset routed by influence (filled in by the job, which has the texts).
    mixed: list[MixedExample] = field(default_factory=list, repr=False)

    def per_candidate(self) -> list[CandidateInfluence]:
        """Candidates by mean influence, most helpful first."""
        groups: dict[str, list[float]] = defaultdict(list)
        for r in self.responses:
            groups[r.candidate].append(r.influence)
        out = [
            CandidateInfluence(name, float(np.mean(v)), float(np.mean(np.asarray(v) > 0)), len(v))
            for name, v in groups.items()
        ]
        return sorted(out, key=lambda c: -c.mean)

    def best_per_prompt(self) -> dict[str, dict[str, int]]:
        """``{candidate: {prompt_id: index of its most helpful response}}`` (best of n)."""
        best: dict[str, dict[str, ResponseInfluence]] = defaultdict(dict)
        for r in self.responses:
            current = best[r.candidate].get(r.prompt_id)
            if current is None or r.influence > current.influence:
                best[r.candidate][r.prompt_id] = r
        return {c: {p: r.index for p, r in by_prompt.items()} for c, by_prompt in best.items()}

    def select(
        self, *, keep_fraction: float | None = None, drop_negative: bool = True
    ) -> list[ResponseInfluence]:
        """The responses to keep for distillation: without harmful ones (``drop_negative``) and/or
        the most helpful ``keep_fraction`` of all, most helpful first."""
        if keep_fraction is not None and not 0 < keep_fraction <= 1:
            raise InvalidInput("must be in (0, 1]", field="keep_fraction")
        ranked = sorted(self.responses, key=lambda r: -r.influence)
        if keep_fraction is not None:
            ranked = ranked[: max(1, round(keep_fraction * len(ranked)))]
        return [r for r in ranked if r.influence > 0] if drop_negative else ranked

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "validation_loss": self.validation_loss,
            "per_candidate": [asdict(c) for c in self.per_candidate()],
            "best_per_prompt": self.best_per_prompt(),
            "responses": [asdict(r) for r in self.responses],
            "mixed": [asdict(r) for r in self.mixed],
        }


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def influence(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[Prompt],
    responses: dict[str, Responses],
    validation: Sequence[ReferenceExample],
    *,
    method: Method = "projected",
    space: GradientSpace | None = None,
    proj_dim: int = DEFAULT_PROJ_DIM,
    seed: int = 0,
    fmt: StudentFormat | None = None,
    budget: MemoryBudget | None = None,
    resident: float | None = None,
    cost: BatchCost | None = None,
    progress: ProgressFn | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> InfluenceResult:
    """Influence of every response on the student's validation loss. ``progress`` hears the job's
    two long stages: ``validation`` (the validation examples' gradient, in examples) and
    ``gradients`` (the responses', in responses; with ``finite_difference``, in rows of its three
    forward passes).

    Args:
        responses: ``{candidate: [prompt][index] -> text}``, aligned with ``prompts``.
        validation: reference solutions defining ``L_val``.
        budget: peak memory the batches are sized from; ``resident`` what is already taken
            (default: the runtime and this model); ``cost`` the gradient stage's
            :func:`influence_cost` when the caller has probed it already.
    """
    if method not in METHODS:
        raise InvalidInput(f"must be one of {', '.join(METHODS)}", field="method")
    if not validation:
        raise InvalidInput("needs at least one validation example", field="validation")
    space = space or GradientSpace()
    fmt = fmt or StudentFormat()
    if method == "finite_difference" and space.kind != "full":
        raise InvalidInput(
            "finite_difference perturbs all parameters; use gradient_space 'full'", field="method"
        )
    pad_id = pad_token_id(tokenizer)
    val_examples = [
        encode_for_student(tokenizer, v.prompt, v.solution, fmt, field=f"validation[{i}].solution")
        for i, v in enumerate(validation)
    ]
    keys: list[tuple[str, str, int]] = []
    examples: list[StudentExample] = []
    for name, groups in responses.items():
        if len(groups) != len(prompts):
            raise InvalidInput(
                f"{len(groups)} response groups for {len(prompts)} prompts", field=f"responses[{name}]"
            )
        for p, group in zip(prompts, groups, strict=True):
            for j, text in enumerate(group):
                keys.append((name, p.id, j))
                examples.append(
                    encode_for_student(
                        tokenizer, p.prompt, text, fmt, field=f"responses[{name}][{p.id}][{j}]"
                    )
                )
    if not examples:
        raise InvalidInput("no responses to score", field="responses")
    check_cancel(should_cancel)
    report: ProgressFn = progress or (lambda _event: None)
    on_validation = stage_progress(report, "validation")
    on_responses = stage_progress(report, "gradients")
    budget = budget or MemoryBudget()
    taken = resident if resident is not None else resident_bytes([model])
    longest = max(len(e.input_ids) for e in [*val_examples, *examples])
    forward = budget.plan(taken, forward_cost(model), stage="influence forward")

    if method == "projected":
        computer = make_gradient_computer(model, space=space, d=proj_dim, seed=seed, path="fast")
        plan = budget.plan(taken, cost or computer.cost(), stage="influence gradient")
        plan.require(longest)
        val = compute_gradients(
            model,
            computer,
            val_examples,
            pad_id=pad_id,
            plan=plan,
            progress=on_validation,
            should_cancel=should_cancel,
        )
        resp = compute_gradients(
            model,
            computer,
            examples,
            pad_id=pad_id,
            plan=plan,
            progress=on_responses,
            should_cancel=should_cancel,
        )
        v = val.gradients.astype(np.float64).mean(axis=0)
        scores = resp.gradients.astype(np.float64) @ v * (computer.grad_dim / proj_dim)
        losses, val_loss = resp.losses, float(np.mean(val.losses))
    else:
        layout = describe_space(model, space, seed=seed)
        exact = cost or _exact_cost(model, layout, seed)
        budget.plan(taken, exact, stage="influence gradient").require(longest)
        # One row at a time: each exact flat gradient is as large as the model.
        v_flat: torch.Tensor | None = None
        for done, e in enumerate(val_examples, start=1):
            check_cancel(should_cancel)
            flat = _row_gradient(model, layout, e, pad_id)[0].double()
            if v_flat is None:
                v_flat = flat
            else:
                v_flat += flat  # in place: a second model-sized vector per row would double the peak
            on_validation(done, len(val_examples))
        assert v_flat is not None  # validation was checked non-empty above
        v_flat /= len(val_examples)
        val_loss = float(batched_losses(model, val_examples, pad_id, forward).mean())
        if method == "exact":
            out, loss_list = [], []
            for done, e in enumerate(examples, start=1):
                check_cancel(should_cancel)
                flat, row_loss = _row_gradient(model, layout, e, pad_id)
                out.append(float(flat.double() @ v_flat))
                loss_list.append(row_loss)
                on_responses(done, len(examples))
            scores, losses = np.asarray(out), np.asarray(loss_list)
        else:
            scores, losses = _finite_difference(
                model, layout.parameters, v_flat, examples, pad_id, forward, on_responses, should_cancel
            )
    return InfluenceResult(
        method=method,
        validation_loss=val_loss,
        responses=[
            ResponseInfluence(c, p, j, float(s), float(loss))
            for (c, p, j), s, loss in zip(keys, scores, losses, strict=True)
        ],
    )


def _row_gradient(
    model: nn.Module, layout: SpaceLayout, example: StudentExample, pad_id: int
) -> tuple[torch.Tensor, float]:
    """The exact flat gradient ``(D,)`` of one example and its loss."""
    flat, loss, _, _ = exact_flat_gradients(model, layout, collate([example], pad_id).to(_device(model)))
    return flat[0], float(loss[0])


def _exact_cost(model: nn.Module, layout: SpaceLayout, seed: int) -> BatchCost:
    return ExactGradients(model, layout, d=1, seed=seed).cost()


def influence_cost(
    model: nn.Module, *, method: Method, space: GradientSpace, proj_dim: int, seed: int
) -> BatchCost:
    """What one row of :func:`influence`'s gradient stage costs on ``model`` (a probe)."""
    if method == "projected":
        return make_gradient_computer(model, space=space, d=proj_dim, seed=seed, path="fast").cost()
    return _exact_cost(model, describe_space(model, space, seed=seed), seed)


def _finite_difference(
    model: nn.Module,
    params: Sequence[nn.Parameter],
    v_flat: torch.Tensor,
    examples: Sequence[StudentExample],
    pad_id: int,
    plan: BatchPlan,
    progress: Callable[[int, int], None],
    should_cancel: Callable[[], bool] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Central differences along ``v_flat``: three forward passes over ``examples`` (plus, minus,
    base), reported to ``progress`` as one stage of ``3 N`` rows."""
    eps = FD_STEP / float(v_flat.norm())
    original = [p.detach().clone() for p in params]
    pieces = torch.split(v_flat.to(original[0].dtype), [p.numel() for p in params])
    n = len(examples)

    def forward_pass(k: int) -> torch.Tensor:
        check_cancel(should_cancel)
        return batched_losses(model, examples, pad_id, plan, lambda done, _n: progress(k * n + done, 3 * n))

    try:
        with torch.no_grad():
            for p, d in zip(params, pieces, strict=True):
                p.add_(eps * d.view_as(p))
        plus = forward_pass(0)
        with torch.no_grad():
            for p, p0, d in zip(params, original, pieces, strict=True):
                p.copy_(p0 - eps * d.view_as(p))
        minus = forward_pass(1)
    finally:
        with torch.no_grad():
            for p, p0 in zip(params, original, strict=True):
                p.copy_(p0)
    base = forward_pass(2)
    return ((plus - minus) / (2 * eps)).numpy(), base.numpy()
