"""Student formatting and label masking (design.md §2.3), prompt files, batching."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from tokenizers import processors

from grace_engine.errors import InvalidInput
from grace_engine.models.batches import collate
from grace_engine.models.data import (
    DEFAULT_STUDENT_TEMPLATE,
    IGNORE_INDEX,
    StudentFormat,
    encode_for_student,
    length_batches,
    read_prompts,
    reference_answer,
)
from grace_engine.models.loading import ModelPolicy, load_tokenizer, resolve_model
from grace_engine.models.tiny_models import TinyModels, gsm8k_records
from grace_engine.science.gradients import per_example_losses

PROMPT = "Tom has 3 apples and buys 4 more. How many apples does he have?"
RESPONSE = "3 + 4 = 7.\nThe answer is \\boxed{7}."


@pytest.fixture(scope="module")
def tokenizer(tiny: TinyModels) -> Any:
    policy = ModelPolicy.from_paths([tiny.root])
    return load_tokenizer(resolve_model(str(tiny.student), policy, field="student"), policy)


def test_text_labels_and_eos(tokenizer: Any) -> None:
    ex = encode_for_student(tokenizer, PROMPT, RESPONSE, StudentFormat())
    head = DEFAULT_STUDENT_TEMPLATE.format(prompt=PROMPT)
    assert tokenizer.decode(ex.input_ids) == head + RESPONSE + tokenizer.eos_token
    # EOS is the last token, as its id, and it is supervised.
    assert ex.input_ids[-1] == tokenizer.eos_token_id
    assert ex.labels[-1] == tokenizer.eos_token_id
    # Masked exactly on the prompt part: the unmasked tokens spell the response + EOS.
    n_head = sum(1 for label in ex.labels if label == IGNORE_INDEX)
    assert all(label == IGNORE_INDEX for label in ex.labels[:n_head])
    assert ex.labels[n_head:] == ex.input_ids[n_head:]
    assert tokenizer.decode(ex.input_ids[n_head:]) == RESPONSE + tokenizer.eos_token
    assert tokenizer.decode(ex.input_ids[:n_head]) == head
    assert ex.n_response_tokens == len(ex.input_ids) - n_head


def test_no_bos_even_when_the_tokenizer_adds_one(tokenizer: Any) -> None:
    tok = tokenizer.__class__(
        tokenizer_object=tokenizer.backend_tokenizer.__class__.from_str(tokenizer.backend_tokenizer.to_str()),
        eos_token=tokenizer.eos_token,
        pad_token=tokenizer.pad_token,
        bos_token=tokenizer.pad_token,
    )
    bos = tok.bos_token_id
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{tok.bos_token} $A", special_tokens=[(tok.bos_token, bos)]
    )
    assert tok("x")["input_ids"][0] == bos  # this tokenizer would add a BOS by default
    ex = encode_for_student(tok, PROMPT, RESPONSE, StudentFormat())
    assert bos not in ex.input_ids
    assert (
        ex.input_ids
        == tok(
            DEFAULT_STUDENT_TEMPLATE.format(prompt=PROMPT) + RESPONSE + tok.eos_token,
            add_special_tokens=False,
        )["input_ids"]
    )


def test_prompt_tokens_never_contribute_to_the_loss(tokenizer: Any) -> None:
    a = encode_for_student(tokenizer, PROMPT, RESPONSE, StudentFormat())
    b = encode_for_student(tokenizer, "Short one?", "A different reply.", StudentFormat())
    batch = collate([a, b], tokenizer.pad_token_id)
    logits = torch.randn(*batch.input_ids.shape, len(tokenizer), requires_grad=True)
    losses, n_tokens = per_example_losses(logits, batch.labels)
    (grad,) = torch.autograd.grad(losses.sum(), [logits])
    losses = losses.detach()
    for row, ex in enumerate((a, b)):
        first = next(i for i, label in enumerate(ex.labels) if label != IGNORE_INDEX)
        # Positions before first-1 predict prompt tokens; padding predicts nothing.
        assert torch.all(grad[row, : first - 1] == 0)
        assert torch.all(grad[row, len(ex.input_ids) - 1 :] == 0)
        assert torch.all(grad[row, first - 1 : len(ex.input_ids) - 1].abs().sum(-1) > 0)
        logp = torch.log_softmax(logits[row].detach(), -1)
        manual = -torch.stack([logp[t - 1, ex.input_ids[t]] for t in range(first, len(ex.input_ids))]).mean()
        assert losses[row].item() == pytest.approx(manual.item(), rel=1e-6)
        assert int(n_tokens[row]) == ex.n_response_tokens


def test_template_is_configurable_and_checked(tokenizer: Any) -> None:
    fmt = StudentFormat(template="Q: {prompt}\nA: ")
    ex = encode_for_student(tokenizer, PROMPT, RESPONSE, fmt)
    assert tokenizer.decode(ex.input_ids).startswith(f"Q: {PROMPT}\nA: ")
    for bad in ("no placeholder", "{prompt} twice {prompt}", "{prompt!r}", "{prompt[0]}", "{prompt.upper}"):
        with pytest.raises(InvalidInput) as err:
            StudentFormat(template=bad)
        assert err.value.field == "student_template"


@pytest.mark.parametrize(
    "template",
    [
        "\\boxed{{}} {prompt} {other}",
        "{prompt} {prompt!r} {prompt[0]} {0} {} {{",
        "{:>{prompt}}",
        "}{prompt}{",
    ],
)
def test_only_the_literal_placeholder_is_substituted(template: str) -> None:
    """Braces other than the one ``{prompt}`` are text: no str.format spec, conversion or lookup."""
    head = StudentFormat(template=template).head("Q?")
    before, after = template.split("{prompt}", 1)
    assert head == before + "Q?" + after


def test_max_length_errors_or_truncates(tokenizer: Any) -> None:
    full = encode_for_student(tokenizer, PROMPT, RESPONSE, StudentFormat())
    limit = len(full.input_ids) - 3
    with pytest.raises(InvalidInput) as err:
        encode_for_student(
            tokenizer,
            PROMPT,
            RESPONSE,
            StudentFormat(max_length=limit),
            field="candidates[0].responses[p1][2]",
        )
    assert err.value.field == "candidates[0].responses[p1][2]"
    assert f"exceed the limit of {limit}" in err.value.message
    cut = encode_for_student(tokenizer, PROMPT, RESPONSE, StudentFormat(max_length=limit, truncate=True))
    assert cut.truncated
    assert len(cut.input_ids) == limit
    assert cut.input_ids == full.input_ids[:limit]
    assert not full.truncated
    with pytest.raises(InvalidInput, match="no response token"):
        encode_for_student(tokenizer, PROMPT, RESPONSE, StudentFormat(max_length=5, truncate=True))


def test_collate_right_pads_with_masked_labels() -> None:
    from grace_engine.models.data import StudentExample

    batch = collate(
        [StudentExample([5, 6, 7], [-100, 6, 7], False), StudentExample([8], [-100], False)], pad_id=0
    )
    assert batch.input_ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch.attention_mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch.labels.tolist() == [[-100, 6, 7], [-100, -100, -100]]
    assert batch.lengths.tolist() == [3, 1]


def test_length_batches_cover_every_index_within_budget() -> None:
    lengths = [5, 50, 7, 300, 12, 12, 49, 1]
    batches = length_batches(lengths, max_tokens=100, max_batch=3)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= 3
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 100
    assert [3] in batches  # longer than the budget: alone


def _write(path: Path, lines: list[Any]) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def test_read_prompts_understands_gsm8k_lines(tmp_path: Path) -> None:
    lines = [json.dumps(r) for r in gsm8k_records()[:3]]  # verbatim GSM8K test-set lines
    prompts = read_prompts(_write(tmp_path / "p.jsonl", lines))
    assert [p.id for p in prompts] == ["0", "1", "2"]
    assert prompts[0].prompt.startswith("Janet")
    assert prompts[0].answer is not None
    assert reference_answer(prompts[0].answer) == "18"
    mixed = read_prompts(
        _write(tmp_path / "m.jsonl", [{"id": "a", "prompt": "x"}, {"prompt": "y", "answer": 3}])
    )
    assert [(p.id, p.answer) for p in mixed] == [("a", None), ("1", "3")]


@pytest.mark.parametrize(
    ("lines", "field", "needle"),
    [
        ([], "prompts", "empty"),
        ([{"prompt": "only one"}], "prompts", "at least 2"),
        ([{"id": 1, "prompt": "a"}, {"id": 1, "prompt": "b"}], "prompts[1].id", "duplicate"),
        ([{"prompt": "a"}, {"prompt": "  "}], "prompts[1].prompt", "empty"),
        ([{"prompt": "a"}, {"text": "b"}], "prompts[1]", "'prompt'"),
        (["{not json"], "prompts", "not JSON"),
    ],
)
def test_read_prompts_rejects_bad_files(tmp_path: Path, lines: list[Any], field: str, needle: str) -> None:
    with pytest.raises(InvalidInput) as err:
        read_prompts(_write(tmp_path / "bad.jsonl", lines))
    assert err.value.field == field
    assert needle in err.value.message


def test_read_prompts_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no such file"):
        read_prompts(tmp_path / "nope.jsonl")
