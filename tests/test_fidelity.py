"""The fast path's losses and projected gradients against an independent float64 reference.

The reference is this file's own code, not grace_engine's: a float64 copy of the model (RMSNorm
recomputed in float64, as transformers runs it in float32), each example alone and unpadded, the
loss as float64 cross-entropy on its logits, the gradient by autograd -- ``.backward()`` through the
whole model (full), through the output layer alone on its input (output_layer), or into explicit
LoRA adapters hooked onto the copy (lora) -- projected with the same seeded factorised map in
float64. The fast path runs in float32 on one right-padded batch of real GSM8K solutions of
different lengths, so all it may lose is float32 rounding. (Rotary cos/sin stay float32 in both:
transformers computes them so, identically for both models, so they cancel.)
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from grace_engine.models.batches import collate
from grace_engine.models.data import (
    StudentExample,
    StudentFormat,
    clean_solution,
    encode_for_student,
    pad_token_id,
)
from grace_engine.models.loading import ModelPolicy, load_causal_lm, load_tokenizer, resolve_model
from grace_engine.models.tiny_models import TinyModels, gsm8k_records
from grace_engine.science.gradient_space import GradientSpace
from grace_engine.science.gradients import SpaceLayout, describe_space, make_gradient_computer
from grace_engine.science.projection import FactorizedProjector

# Relative, per example. float32 rounding through SmolLM2 measures 2-6e-7 on the loss; the loss bound
# is the tighter one so that it catches float32 F.cross_entropy on a 49k vocabulary, whose log_softmax
# is off by ~5e-6 on these texts. On the gradient, transformers' own float32 backward (batch 1, no
# padding) already loses 0.4-2.4e-5 against float64 on SmolLM2 (transformers 5.25; the shortest row
# most), and the fast path's batching adds under 7e-6: a gradient may be off by TOLERANCE, or by
# FLOOR_FACTOR times what float32 autograd loses on the same example where that is more.
LOSS_TOLERANCE = 2e-6
TOLERANCE = 2e-5
FLOOR_FACTOR = 2.0
D, SEED = 512, 0
# GSM8K test problems 1, 40, 0: 76, 101 and 129 SmolLM2 tokens with their solutions, so the batch
# is padded on two rows out of three.
RECORDS = (1, 40, 0)

Reference = Callable[[torch.nn.Module, SpaceLayout, torch.Tensor, torch.Tensor], tuple[float, torch.Tensor]]


def _float64_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A float64 copy of ``model`` that computes in float64 throughout. transformers' RMSNorm casts
    its input to float32 whatever the model's dtype (worth 2e-6 relative on SmolLM2's gradients),
    so a hook replaces each RMSNorm output by the same formula in float64."""
    model64 = copy.deepcopy(model).double()

    def rms_norm64(module: Any, args: tuple[Any, ...], _out: torch.Tensor) -> torch.Tensor:
        x = args[0]
        return module.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + module.variance_epsilon))

    for module in model64.modules():
        if type(module).__name__.endswith("RMSNorm"):
            module.register_forward_hook(rms_norm64)
    return model64


def _loss64(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean NLL of one example's response tokens, in float64 (float32 logits are upcast, so that the
    float32 floor measures the network alone). Not the model's own ``labels=`` loss: transformers
    computes that on ``logits.float()``, float32 whatever the model."""
    return F.cross_entropy(logits[0, :-1].double(), labels[0, 1:], ignore_index=-100)


def _full(
    model64: torch.nn.Module, _: SpaceLayout, ids: torch.Tensor, labels: torch.Tensor
) -> tuple[float, torch.Tensor]:
    params = [p for _, p in model64.named_parameters()]  # a tied matrix once: the blocks' order
    # Each .grad a view into one flat buffer, which backward accumulates into in place: the flat
    # gradient without a second copy (1 GB in float64 for SmolLM2).
    flat = torch.zeros(sum(p.numel() for p in params), dtype=params[0].dtype)
    offset = 0
    for p in params:
        p.grad = flat[offset : offset + p.numel()].view_as(p)
        offset += p.numel()
    model64.requires_grad_(True)
    try:
        out = model64(input_ids=ids, labels=labels)
        loss = _loss64(out.logits, labels)
        # Hugging Face's own loss pins the label convention (shift, -100) independently of ours. It
        # upcasts the logits to float32 only (not float64), whose log_softmax over SmolLM2's 49k
        # vocabulary is off by ~1e-5, so it is compared at its own precision.
        hf32 = F.cross_entropy(out.logits[0, :-1].float(), labels[0, 1:], ignore_index=-100)
        assert out.loss.item() == pytest.approx(hf32.item(), rel=1e-6)
        loss.backward()
    finally:
        for p in params:
            p.grad = None
        model64.requires_grad_(False)
    return loss.item(), flat


def _output_layer(
    model64: torch.nn.Module, _: SpaceLayout, ids: torch.Tensor, labels: torch.Tensor
) -> tuple[float, torch.Tensor]:
    """Gradient w.r.t. the head's weight (and bias) as a map on its input; for a tied head only
    this use of the shared matrix."""
    head: Any = model64.get_output_embeddings()  # type: ignore[operator]
    inputs: list[torch.Tensor] = []
    handle = head.register_forward_hook(lambda _m, args, _out: inputs.append(args[0]))
    try:
        with torch.no_grad():
            model64(input_ids=ids)
    finally:
        handle.remove()
    leaves = [head.weight.detach().clone().requires_grad_(True)]
    if head.bias is not None:
        leaves.append(head.bias.detach().clone().requires_grad_(True))
    loss = _loss64(F.linear(inputs[0], *leaves), labels)
    grads = torch.autograd.grad(loss, leaves)
    return loss.item(), torch.cat([g.reshape(-1) for g in grads])


def _lora(
    model64: torch.nn.Module, layout: SpaceLayout, ids: torch.Tensor, labels: torch.Tensor
) -> tuple[float, torch.Tensor]:
    """Real adapters ``out + s (x A^T) B^T`` on the model, from the layout's seeded A and B = 0."""
    leaves: list[torch.Tensor] = []
    handles = []
    for ad in layout.adapters:
        dtype = next(model64.parameters()).dtype
        a = ad.a.detach().to(dtype, copy=True).requires_grad_(True)
        b = ad.b.detach().to(dtype, copy=True).requires_grad_(True)
        leaves += [a, b]  # the blocks' order: A then B, adapter by adapter

        def add(
            _m: torch.nn.Module,
            args: tuple[Any, ...],
            out: torch.Tensor,
            a: Any = a,
            b: Any = b,
            s: float = ad.scaling,
        ) -> torch.Tensor:
            return out + s * (args[0] @ a.T) @ b.T

        handles.append(ad.module.register_forward_hook(add))
    try:
        loss = _loss64(model64(input_ids=ids).logits, labels)
        grads = torch.autograd.grad(loss, leaves)
    finally:
        for h in handles:
            h.remove()
    return loss.item(), torch.cat([g.reshape(-1) for g in grads])


REFERENCES: dict[str, Reference] = {"full": _full, "output_layer": _output_layer, "lora": _lora}


def _relative_errors(
    model: torch.nn.Module, tok: Any, kind: str
) -> tuple[list[float], list[float], list[float]]:
    """Per example: ``|loss_fast - loss_ref| / |loss_ref|``, ``||g_fast - g_ref|| / ||g_ref||``, and the
    same gradient error of the reference's own autograd run on the float32 model (the rounding floor:
    what transformers in float32 loses on that example before any fast path)."""
    records = gsm8k_records()
    examples: list[StudentExample] = [
        encode_for_student(tok, records[i]["question"], clean_solution(records[i]["answer"]), StudentFormat())
        for i in RECORDS
    ]
    assert len({len(e.input_ids) for e in examples}) == len(examples)
    space = GradientSpace(kind)  # type: ignore[arg-type]
    computer = make_gradient_computer(model, space=space, d=D, seed=SEED, path="fast")
    projected, losses, *_ = computer(collate(examples, pad_token_id(tok)))

    model64 = _float64_copy(model)
    layout, layout32 = describe_space(model64, space, seed=SEED), describe_space(model, space, seed=SEED)
    projector = FactorizedProjector(layout.blocks, D, SEED, dtype=torch.float64)
    loss_errors, grad_errors, floors = [], [], []
    for row, ex in enumerate(examples):
        ids, labels = torch.tensor([ex.input_ids]), torch.tensor([ex.labels])
        loss_ref, flat = REFERENCES[kind](model64, layout, ids, labels)
        g_ref = projector.project_flat(flat[None])[0]
        del flat  # not beside the next example's gradient
        _, flat32 = REFERENCES[kind](model, layout32, ids, labels)
        g_32 = projector.project_flat(flat32.double()[None])[0]
        del flat32
        assert float(g_ref.norm()) > 0
        loss_errors.append(abs(float(losses[row]) - loss_ref) / abs(loss_ref))
        grad_errors.append(float((projected[row].double() - g_ref).norm() / g_ref.norm()))
        floors.append(float((g_32 - g_ref).norm() / g_ref.norm()))
    return loss_errors, grad_errors, floors


def _check(name: str, model: torch.nn.Module, tok: Any, kind: str) -> None:
    started = time.perf_counter()
    loss_errors, grad_errors, floors = _relative_errors(model, tok, kind)
    print(
        f"{name}/{kind}: loss rel. error {', '.join(f'{e:.1e}' for e in loss_errors)}; "
        f"gradient {', '.join(f'{e:.1e}' for e in grad_errors)} "
        f"(float32 autograd: {', '.join(f'{e:.1e}' for e in floors)}; {time.perf_counter() - started:.1f} s)"
    )
    assert max(loss_errors) < LOSS_TOLERANCE, f"losses: {loss_errors}"
    for error, floor in zip(grad_errors, floors, strict=True):
        assert error < max(TOLERANCE, FLOOR_FACTOR * floor), f"gradients: {grad_errors}, floor {floors}"


def _load(path: Path) -> tuple[torch.nn.Module, Any]:
    policy = ModelPolicy.from_paths([path.parent])
    source = resolve_model(str(path), policy, field="student")
    return load_causal_lm(source, policy), load_tokenizer(source, policy)


@pytest.mark.parametrize("kind", ["full", "output_layer", "lora"])
@pytest.mark.parametrize("name", ["student", "tutor"])  # Llama untied; GPT-2 tied, Conv1D, LayerNorm
def test_tiny_models_match_the_float64_reference(tiny: TinyModels, name: str, kind: str) -> None:
    path = tiny.student if name == "student" else tiny.teachers[name]
    _check(name, *_load(path), kind)


@pytest.mark.slow
def test_smollm2_matches_the_float64_reference(smollm2_dir: Path) -> None:
    """134.5M parameters, tied embeddings, RMSNorm, grouped-query attention, a 49k vocabulary."""
    _check("SmolLM2-135M", *_load(smollm2_dir), "full")
