"""Per-example gradients: the exact path against independent autograd, the fast path against the
exact path.

The fast path is checked two ways. Exactly: its output must equal the factorized map
(``FactorizedProjector.project_flat``) applied to the exact per-example gradients, for every
architecture, gradient space and factor size -- this pins down every hook. Statistically: the Gram
matrix of its projections must approximate the Gram matrix of the exact gradients within JL error.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import pytest
import torch

from grace_engine.errors import Cancelled, InvalidInput, UnsupportedModel
from grace_engine.models.batches import StudentBatch, collate
from grace_engine.models.data import StudentFormat, clean_solution, encode_for_student
from grace_engine.models.loading import ModelPolicy, load_causal_lm, load_tokenizer, resolve_model
from grace_engine.models.tiny_models import TinyModels, gsm8k_records
from grace_engine.science.gradient_space import GradientSpace
from grace_engine.science.gradients import (
    FastGradients,
    compute_gradients,
    describe_space,
    exact_flat_gradients,
    make_gradient_computer,
)
from tests.conftest import make_examples

ARCHS = [("llama", False), ("llama", True), ("gpt2", False), ("gpt2", True)]


def _single_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean NLL of the response tokens of one unbatched example, written out by hand."""
    logp = torch.log_softmax(logits[:-1].double(), dim=-1)
    target = labels[1:]
    keep = target != -100
    return -logp[keep].gather(1, target[keep][:, None]).mean()


def _rows(batch: StudentBatch) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(batch.input_ids[i, :n], batch.labels[i, :n]) for i, n in enumerate(batch.lengths.tolist())]


def _full_autograd(
    model: torch.nn.Module, ids: torch.Tensor, labels: torch.Tensor
) -> tuple[list[torch.Tensor], float]:
    params = [p for _, p in model.named_parameters()]
    for p in params:
        p.requires_grad_(True)
    try:
        loss = _single_loss(model(input_ids=ids[None]).logits[0], labels)
        grads = torch.autograd.grad(loss, params)
    finally:
        for p in params:
            p.requires_grad_(False)
    return list(grads), loss.item()


@pytest.mark.parametrize(("arch", "tied"), ARCHS)
def test_exact_full_gradients_equal_single_example_autograd(
    random_lm: Callable[..., torch.nn.Module], mixed_batch: StudentBatch, arch: str, tied: bool
) -> None:
    model = random_lm(arch, tied=tied)
    layout = describe_space(model, GradientSpace("full"))
    flat, losses, n_tokens, _ = exact_flat_gradients(model, layout, mixed_batch)
    assert flat.shape == (4, sum(p.numel() for p in model.parameters()))
    for i, (ids, labels) in enumerate(_rows(mixed_batch)):
        grads, loss = _full_autograd(model, ids, labels)
        torch.testing.assert_close(
            flat[i], torch.cat([g.reshape(-1) for g in grads]).float(), atol=1e-6, rtol=0
        )
        assert float(losses[i]) == pytest.approx(loss, rel=1e-5)
        assert int(n_tokens[i]) == int((labels[1:] != -100).sum())


@pytest.mark.parametrize(("arch", "tied"), ARCHS)
def test_exact_output_layer_gradients_equal_autograd_on_the_head(
    random_lm: Callable[..., torch.nn.Module], mixed_batch: StudentBatch, arch: str, tied: bool
) -> None:
    model = random_lm(arch, tied=tied)
    head = model.get_output_embeddings()
    flat, *_ = exact_flat_gradients(model, describe_space(model, GradientSpace("output_layer")), mixed_batch)
    for i, (ids, labels) in enumerate(_rows(mixed_batch)):
        out = model(input_ids=ids[None], output_hidden_states=True)
        hidden = out.hidden_states[-1][0]
        torch.testing.assert_close(hidden @ head.weight.T, out.logits[0])  # the head's input, post-norm
        w = head.weight.detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(_single_loss(hidden @ w.T, labels), [w])
        torch.testing.assert_close(flat[i], grad.reshape(-1).float(), atol=1e-6, rtol=0)


@pytest.mark.parametrize(("arch", "tied"), ARCHS)
def test_exact_lora_gradients_follow_from_the_weight_gradient(
    random_lm: Callable[..., torch.nn.Module], mixed_batch: StudentBatch, arch: str, tied: bool
) -> None:
    """With B = 0, d loss / dB = s * dW_eff A^T (Linear; Conv1D stores W transposed) and d loss / dA = 0."""
    model = random_lm(arch, tied=tied)
    layout = describe_space(model, GradientSpace("lora", lora_rank=4, lora_alpha=8.0), seed=5)
    flat, *_ = exact_flat_gradients(model, layout, mixed_batch)
    names = {id(p): n for n, p in model.named_parameters()}
    order = [n for n, _ in model.named_parameters()]
    for i, (ids, labels) in enumerate(_rows(mixed_batch)):
        grads, _ = _full_autograd(model, ids, labels)
        by_name = dict(zip(order, grads, strict=True))
        pieces = []
        for ad in layout.adapters:
            gw = by_name[names[id(ad.module.weight)]].double()
            if isinstance(ad.module, torch.nn.Linear):
                grad_b = ad.scaling * gw @ ad.a.double().T
            else:
                grad_b = ad.scaling * gw.T @ ad.a.double().T
            pieces += [torch.zeros(ad.a.numel(), dtype=torch.float64), grad_b.reshape(-1)]
        torch.testing.assert_close(flat[i], torch.cat(pieces).float(), atol=1e-6, rtol=0)


@pytest.mark.parametrize(("arch", "tied"), ARCHS)
@pytest.mark.parametrize("space", ["full", "output_layer", "lora"])
@pytest.mark.parametrize("factor_dim", [4, 1024])
def test_fast_path_is_the_factorized_map_of_the_exact_gradients(
    random_lm: Callable[..., torch.nn.Module],
    mixed_batch: StudentBatch,
    arch: str,
    tied: bool,
    space: str,
    factor_dim: int,
) -> None:
    """factor_dim 4 compresses every side (Kronecker stage active); 1024 keeps every block exact."""
    model = random_lm(arch, tied=tied)
    computer = make_gradient_computer(model, space=GradientSpace(space), d=64, seed=3, factor_dim=factor_dim)  # type: ignore[arg-type]
    assert isinstance(computer, FastGradients)
    projected, losses, *_ = computer(mixed_batch)
    flat, exact_losses, *_ = exact_flat_gradients(model, computer.layout, mixed_batch)
    expected = computer.projector.project_flat(flat)
    scale = float(expected.abs().max())
    assert scale > 0
    torch.testing.assert_close(projected, expected, rtol=1e-4, atol=1e-5 * scale)
    torch.testing.assert_close(losses, exact_losses, rtol=1e-5, atol=1e-6)
    assert all(not p.requires_grad and p.grad is None for p in model.parameters())


@pytest.mark.parametrize(("arch", "tied"), [("llama", False), ("gpt2", True)])
def test_padding_contributes_nothing_to_fast_gradients(
    random_lm: Callable[..., torch.nn.Module], arch: str, tied: bool
) -> None:
    model = random_lm(arch, tied=tied)
    examples = make_examples([(6, 2), (30, 9), (11, 4)], seed=4)
    computer = make_gradient_computer(model, space=GradientSpace("full"), d=32, seed=0, factor_dim=8)
    together, *_ = computer(collate(examples, pad_id=0))
    for i, ex in enumerate(examples):
        alone, *_ = computer(collate([ex], pad_id=0))
        torch.testing.assert_close(together[i], alone[0], rtol=1e-4, atol=1e-6 * float(alone.abs().max()))


def _real_text_batch(tiny: TinyModels) -> tuple[torch.nn.Module, StudentBatch]:
    policy = ModelPolicy.from_paths([tiny.root])
    source = resolve_model(str(tiny.student), policy, field="student")
    model, tok = load_causal_lm(source, policy), load_tokenizer(source, policy)
    records = gsm8k_records()[:16]
    examples = [
        encode_for_student(tok, r["question"], clean_solution(r["answer"]), StudentFormat()) for r in records
    ]
    return model, collate(examples, tok.pad_token_id)


@pytest.mark.parametrize(
    ("space", "path"), [("full", "fast"), ("full", "exact"), ("output_layer", "fast"), ("lora", "fast")]
)
def test_projected_gram_is_within_jl_error_of_the_exact_gram(tiny: TinyModels, space: str, path: str) -> None:
    """Bound tested: with s = sqrt(2/d), the per-pair standard deviation of a dense Rademacher JL
    estimate of <g_i, g_j> / (|g_i| |g_j|), every normalized entry error is below 5 s and their RMS
    below 1.5 s, on 16 real GSM8K solutions under the tiny student, d = 512 (s = 0.0625)."""
    model, batch = _real_text_batch(tiny)
    d, seed = 512, 11
    gspace = GradientSpace(space)  # type: ignore[arg-type]
    flat, *_ = exact_flat_gradients(model, describe_space(model, gspace, seed=seed), batch)
    exact_gram = (flat.double() @ flat.double().T).numpy()
    norms = np.sqrt(np.diag(exact_gram))
    projected, *_ = make_gradient_computer(model, space=gspace, d=d, seed=seed, path=path)(batch)  # type: ignore[arg-type]
    y = projected.double().numpy() * math.sqrt(flat.shape[1] / d)  # undo the shared sqrt(d / D) scale
    err = (y @ y.T - exact_gram) / np.outer(norms, norms)
    s = math.sqrt(2 / d)
    print(
        f"{space}/{path}: max |err| {np.abs(err).max():.3f}, rms {np.sqrt((err**2).mean()):.3f}, s = {s:.4f}"
    )
    assert np.abs(err).max() < 5 * s
    assert np.sqrt((err**2).mean()) < 1.5 * s


def test_fast_path_refuses_modules_it_cannot_differentiate(
    random_lm: Callable[..., torch.nn.Module], mixed_batch: StudentBatch
) -> None:
    model = random_lm("llama", tied=False)
    model.model.layers[0].extra = torch.nn.PReLU()  # owns a parameter no tap handles
    with pytest.raises(UnsupportedModel, match=r"model\.layers\.0\.extra \(PReLU\)"):
        make_gradient_computer(model, space=GradientSpace("full"), d=16)
    exact = make_gradient_computer(model, space=GradientSpace("full"), d=16, path="exact")
    assert exact(mixed_batch)[0].shape == (4, 16)


def test_bad_gradient_settings_name_the_field(random_lm: Callable[..., torch.nn.Module]) -> None:
    with pytest.raises(InvalidInput) as err:
        GradientSpace("everything")  # type: ignore[arg-type]
    assert err.value.field == "gradient_space"
    with pytest.raises(InvalidInput) as err:
        make_gradient_computer(random_lm("llama", tied=False), space=GradientSpace(), d=0)
    assert err.value.field == "proj_dim"


def test_compute_gradients_keeps_input_order_reports_progress_and_cancels(
    random_lm: Callable[..., torch.nn.Module],
) -> None:
    model = random_lm("gpt2", tied=True)
    examples = make_examples([(5 + 3 * i, 2) for i in range(10)], seed=9)
    computer = make_gradient_computer(model, space=GradientSpace("full"), d=24, seed=2)
    seen: list[tuple[int, int]] = []
    result = compute_gradients(
        model, computer, examples, pad_id=0, max_tokens=60, max_batch=4, progress=lambda *a: seen.append(a)
    )
    assert len(seen) > 2
    assert seen[-1] == (10, 10)
    assert all(a[0] < b[0] for a, b in itertools.pairwise(seen))
    for i in (0, 7, 9):
        alone, loss, n_tok, _ = computer(collate([examples[i]], pad_id=0))
        np.testing.assert_allclose(
            result.gradients[i], alone[0].numpy(), rtol=1e-4, atol=1e-6 * float(alone.abs().max())
        )
        assert result.losses[i] == pytest.approx(float(loss[0]), rel=1e-5)
        assert result.n_tokens[i] == int(n_tok[0])
    calls = iter([False, False, True])
    with pytest.raises(Cancelled):
        compute_gradients(
            model, computer, examples, pad_id=0, max_tokens=60, max_batch=4, should_cancel=lambda: next(calls)
        )
