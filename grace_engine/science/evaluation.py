"""How good a (distilled) student is on held-out problems with reference solutions (design §2.8).

* ``eval_nll``: the mean NLL per response token of the reference solutions, in the student's view
  of design §2.3 (template, solution, EOS; prompt part masked), token-weighted over all examples.
* ``accuracy``: the share of problems whose greedy decode (continuing the student template, up to
  ``max_new_tokens``) ends in the reference answer, when every example carries one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from grace_engine.memory import BatchPlan, MemoryBudget, forward_cost, resident_bytes
from grace_engine.models.batches import collate
from grace_engine.models.data import (
    Prompt,
    ReferenceExample,
    StudentExample,
    StudentFormat,
    encode_for_student,
    length_batches,
    pad_token_id,
    reference_answer,
)
from grace_engine.models.generation import GenerationSettings, TransformersBackend
from grace_engine.progress import check_cancel
from grace_engine.science.grace import answers_match, extract_answer
from grace_engine.science.gradients import per_example_losses

DEFAULT_MAX_NEW_TOKENS = 256


@dataclass(frozen=True)
class Outcome:
    """A student's quality on the eval set: ``eval_nll`` in nats per reference token (lower is
    better) over ``n_eval_tokens`` tokens of ``n_eval`` examples; ``accuracy`` in [0, 1] (higher is
    better), None without answers or when not asked for."""

    eval_nll: float
    accuracy: float | None
    n_eval: int
    n_eval_tokens: int


def batched_losses(
    model: nn.Module,
    examples: Sequence[StudentExample],
    pad_id: int,
    plan: BatchPlan,
    progress: Callable[[int, int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> torch.Tensor:
    """Per-example mean losses ``(N,)`` in input order, batched by length within ``plan``, no graph;
    ``progress(done, N)`` after each batch, ``should_cancel()`` before each (raising
    :class:`~grace_engine.errors.Cancelled`)."""
    out = torch.zeros(len(examples), dtype=torch.float64)
    lengths = [len(e.input_ids) for e in examples]
    device = next(model.parameters()).device
    done = 0
    with torch.no_grad():
        for idx in length_batches(lengths, max_batch=64, fits=plan.fits):
            check_cancel(should_cancel)
            batch = collate([examples[i] for i in idx], pad_id).to(device)
            logits = model(
                input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False
            ).logits
            losses, _ = per_example_losses(logits, batch.labels)
            out[idx] = losses.double().cpu()
            done += len(idx)
            if progress is not None:
                progress(done, len(examples))
    return out


def eval_examples(
    tokenizer: Any, examples: Sequence[ReferenceExample], fmt: StudentFormat
) -> list[StudentExample]:
    """The reference solutions in the student's view."""
    return [
        encode_for_student(tokenizer, e.prompt, e.solution, fmt, field=f"eval[{i}].solution")
        for i, e in enumerate(examples)
    ]


def evaluate(
    model: nn.Module,
    tokenizer: Any,
    examples: Sequence[ReferenceExample],
    fmt: StudentFormat,
    *,
    accuracy: bool = True,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    budget: MemoryBudget | None = None,
    resident: float | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> Outcome:
    """``model``'s outcome on ``examples``; ``resident`` is what is taken besides the batches
    (default: the runtime and this model)."""
    budget = budget or MemoryBudget()
    taken = resident if resident is not None else resident_bytes([model])
    encoded = eval_examples(tokenizer, examples, fmt)
    plan = budget.plan(taken, forward_cost(model), stage="evaluation")
    plan.require(max(len(e.input_ids) for e in encoded))
    losses = batched_losses(model, encoded, pad_token_id(tokenizer), plan, should_cancel=should_cancel)
    tokens = torch.tensor([e.n_response_tokens for e in encoded], dtype=torch.float64)
    nll = float((losses * tokens).sum() / tokens.sum())
    acc = None
    if accuracy and all(e.answer is not None for e in examples):
        acc = greedy_accuracy(
            model,
            tokenizer,
            examples,
            fmt,
            max_new_tokens=max_new_tokens,
            budget=budget,
            resident=taken,
            should_cancel=should_cancel,
        )
    return Outcome(eval_nll=nll, accuracy=acc, n_eval=len(encoded), n_eval_tokens=int(tokens.sum()))


def greedy_accuracy(
    model: nn.Module,
    tokenizer: Any,
    examples: Sequence[ReferenceExample],
    fmt: StudentFormat,
    *,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    budget: MemoryBudget | None = None,
    resident: float | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> float:
    """Share of ``examples`` whose greedy continuation of the student template ends in the
    reference answer (the answer a response commits to, as teacher accuracy reads it)."""
    prompts = [Prompt(str(i), e.prompt, e.answer) for i, e in enumerate(examples)]
    settings = GenerationSettings(m=1, temperature=0.0, top_p=1.0, max_tokens=max_new_tokens, seed=0)
    decoded = TransformersBackend().generate(
        model,
        tokenizer,
        prompts,
        settings,
        budget=budget,
        resident=resident,
        should_cancel=should_cancel,
        field="eval_max_tokens",
        model_input=fmt.head,
    )
    hits = [
        answers_match(extract_answer(texts[0]), reference_answer(e.answer or ""))
        for texts, e in zip(decoded.texts, examples, strict=True)
    ]
    return sum(hits) / len(hits)
