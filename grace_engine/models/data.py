"""Prompt and response records, JSONL IO, and the student's view of a response.

The student sees ``template`` (its ``{prompt}`` replaced) ``+ response + eos_token`` tokenized with its own
tokenizer and no added special tokens (no BOS). Labels are ``-100`` on the prompt part and the input
ids on the response part, EOS included, so the loss of an example is the mean cross-entropy over
its response tokens exactly as Hugging Face computes it with ``labels``.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, get_args

from grace_engine.errors import InvalidInput

IGNORE_INDEX = -100
PROMPT_PLACEHOLDER = "{prompt}"  # the only placeholder a student template has, substituted literally
# The teacher's user turn before the prompt (the paper's released code).
DEFAULT_INSTRUCTION = "Please reason step by step and put your final answer within \\boxed{}.\n\n"
DEFAULT_STUDENT_TEMPLATE = "### Problem:\n{prompt}\n\n### Solution:\n"
# The two dataset formats a training set is exported in (grace_engine.science.mixture.sft_jsonl).
SftForm = Literal["chat", "prompt_completion"]
SFT_FORMS: tuple[SftForm, ...] = get_args(SftForm)


# Writing systems that one name may mix (Japanese and Korean names do); any other mix of scripts
# among a name's letters is how a look-alike (Cyrillic "о" in "tutоr") passes for another name.
_EAST_ASIAN = {"CJK", "HIRAGANA", "KATAKANA", "HANGUL"}


def candidate_name(name: str) -> str:
    """``name`` in NFC, the form names are compared in, or :class:`InvalidInput` (field
    ``name``; callers prefix their place) when it could pass for another: blank or padded with
    whitespace, holding an invisible, control or bidirectional-override character, or mixing
    scripts among its letters."""
    name = unicodedata.normalize("NFC", name)
    if not name.strip():
        raise InvalidInput("needs a non-empty name", field="name")
    if name != name.strip():
        raise InvalidInput("must not start or end with whitespace", field="name")
    for ch in name:
        if unicodedata.category(ch) in ("Cc", "Cf", "Co", "Cn", "Zl", "Zp") or (ch.isspace() and ch != " "):
            raise InvalidInput(
                f"holds an invisible or control character (U+{ord(ch):04X}); names must read as they compare",
                field="name",
            )
    scripts = {
        "CJK" if script in _EAST_ASIAN else script
        for script in (unicodedata.name(ch, "?").split()[0] for ch in name if ch.isalpha())
    }
    if len(scripts) > 1:
        raise InvalidInput(
            f"mixes scripts ({', '.join(sorted(scripts))}), as a look-alike of another name would",
            field="name",
        )
    return name


def at_temperature(name: str, temperature: float) -> str:
    """The name of the candidate that model candidate ``name`` becomes at one of the several
    ``temperatures`` it lists (``tutor`` at 0.3: ``tutor@0.3``)."""
    return f"{name}@{temperature:g}"


@dataclass(frozen=True)
class Prompt:
    """One problem. ``answer`` is optional; when present it enables teacher accuracy."""

    id: str
    prompt: str
    answer: str | None = None


@dataclass(frozen=True)
class Response:
    """The ``index``-th response of ``candidate`` to prompt ``prompt_id``."""

    prompt_id: str
    candidate: str
    index: int
    text: str


def _prompt_from_record(record: Any, line_no: int) -> Prompt:
    field = f"prompts[{line_no}]"
    if not isinstance(record, dict):
        raise InvalidInput("each line must be a JSON object", field=field)
    text = record.get("prompt", record.get("question"))
    if not isinstance(text, str):
        raise InvalidInput("needs a string 'prompt' (or GSM8K's 'question')", field=field)
    raw_id = record.get("id", record.get("idx", line_no))
    answer = record.get("answer")
    if answer is not None and not isinstance(answer, str | int | float):
        raise InvalidInput("'answer' must be a string or a number", field=f"{field}.answer")
    return Prompt(id=str(raw_id), prompt=text, answer=None if answer is None else str(answer))


def read_prompts(path: str | Path) -> list[Prompt]:
    """Read prompts from JSONL: ``{id?, prompt | question, answer?}`` per line (GSM8K lines work as is)."""
    prompts: list[Prompt] = []
    for line_no, record in enumerate(_read_jsonl(path, field="prompts")):
        prompts.append(_prompt_from_record(record, line_no))
    return check_prompts(prompts)


def _read_jsonl(path: str | Path, *, field: str) -> Iterator[Any]:
    p = Path(path)
    if not p.is_file():
        raise InvalidInput(f"no such file: {p}", field=field)
    with p.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidInput(f"line {line_no + 1} is not JSON: {exc.msg}", field=field) from exc


@dataclass(frozen=True)
class ReferenceExample:
    """A held-out problem and its reference solution, as the student should write it; ``answer``
    (optional) is the final answer greedy decodes are checked against."""

    prompt: str
    solution: str
    answer: str | None = None


def read_references(path: str | Path, *, field: str = "validation") -> list[ReferenceExample]:
    """Read held-out problems from JSONL: ``{prompt | question, solution | answer}`` per line.

    A GSM8K line (``answer`` ending in ``#### n``, no ``solution``) is taken as it is: the solution
    is its worked answer as a teacher writes it (:func:`clean_solution`) and ``n`` is the answer.
    With ``solution`` given, ``answer`` is optional.
    """
    out: list[ReferenceExample] = []
    for i, record in enumerate(_read_jsonl(path, field=field)):
        where = f"{field}[{i}]"
        if not isinstance(record, dict):
            raise InvalidInput("each line must be a JSON object", field=where)
        prompt = record.get("prompt", record.get("question"))
        solution = record.get("solution", record.get("answer"))
        answer = record.get("answer") if "solution" in record else None
        if not isinstance(prompt, str) or not isinstance(solution, str) or not solution.strip():
            raise InvalidInput("needs 'prompt' (or 'question') and 'solution' (or 'answer')", field=where)
        if answer is not None and not isinstance(answer, str | int | float):
            raise InvalidInput("'answer' must be a string or a number", field=f"{where}.answer")
        if "solution" not in record and "####" in solution:
            answer, solution = reference_answer(solution), clean_solution(solution)
        out.append(ReferenceExample(prompt, solution, None if answer is None else str(answer)))
    if not out:
        raise InvalidInput("no examples in the file", field=field)
    return out


def clean_solution(answer: str) -> str:
    """GSM8K solution -> teacher-style text: calculator annotations dropped, ``#### n`` boxed."""
    body, _, final = answer.rpartition("####")
    body = re.sub(r"<<[^>]*>>", "", body).strip()
    return f"{body}\nThe answer is \\boxed{{{final.strip()}}}."


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> None:
    with Path(path).open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")


def check_prompts(prompts: Sequence[Prompt]) -> list[Prompt]:
    """GRACE cross-validates over prompts, so it needs at least two, with unique ids and text."""
    if len(prompts) == 0:
        raise InvalidInput("the prompt list is empty", field="prompts")
    if len(prompts) < 2:
        raise InvalidInput(
            "GRACE holds out prompts for cross-validation and needs at least 2 prompts", field="prompts"
        )
    seen: set[str] = set()
    for i, p in enumerate(prompts):
        if not p.prompt.strip():
            raise InvalidInput("prompt text is empty", field=f"prompts[{i}].prompt")
        if p.id in seen:
            raise InvalidInput(f"duplicate prompt id {p.id!r}", field=f"prompts[{i}].id")
        seen.add(p.id)
    return list(prompts)


def reference_answer(answer: str) -> str:
    """The final answer of a reference solution: the text after GSM8K's ``####``, else the whole string."""
    _, sep, tail = answer.rpartition("####")
    return tail.strip() if sep else answer.strip()


# --- student formatting -------------------------------------------------------------------------


@dataclass(frozen=True)
class StudentFormat:
    """How responses are shown to the student.

    ``max_length`` bounds the token count of prompt part + response + EOS; a longer example is an
    error unless ``truncate`` is set, in which case its tail is cut (the EOS is then lost) and the
    example is counted as truncated.
    """

    template: str = DEFAULT_STUDENT_TEMPLATE
    max_length: int | None = None
    truncate: bool = False

    def __post_init__(self) -> None:
        if self.template.count(PROMPT_PLACEHOLDER) != 1:
            raise InvalidInput("must contain '{prompt}' exactly once", field="student_template")
        if self.max_length is not None and self.max_length < 2:
            raise InvalidInput("must be at least 2 tokens", field="max_length")

    def head(self, prompt: str) -> str:
        """The text before the response: the template with its one ``{prompt}`` replaced by
        ``prompt``. Literal substitution, never ``str.format``: every other brace is text, and
        no format spec, conversion or field lookup (``{prompt!r}``, ``{prompt[0]}``) runs."""
        before, _, after = self.template.partition(PROMPT_PLACEHOLDER)
        return before + prompt + after

    def within(self, context: int | None) -> StudentFormat:
        """This format with ``max_length`` lowered to a model's context length where needed."""
        if context is None or (self.max_length is not None and self.max_length <= context):
            return self
        return replace(self, max_length=context)


@dataclass(frozen=True)
class StudentExample:
    """One tokenized example. ``labels[t]`` is the target of position ``t`` before HF's shift."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool

    @property
    def n_response_tokens(self) -> int:
        """Tokens that carry loss: all labels except the first position, which nothing predicts."""
        return sum(1 for label in self.labels[1:] if label != IGNORE_INDEX)


def encode_for_student(
    tokenizer: Any,
    prompt: str,
    response: str,
    fmt: StudentFormat,
    *,
    field: str = "response",
) -> StudentExample:
    """Tokenize one (prompt, response) pair for the student, masking the prompt part.

    The full text is tokenized in one piece (so merges are those the student sees in training) and
    a token belongs to the response when it starts at or after the end of the prompt part; a token
    straddling the boundary is masked.
    """
    eos_token = getattr(tokenizer, "eos_token", None)
    eos_id = getattr(tokenizer, "eos_token_id", None)
    if not eos_token or eos_id is None:
        raise InvalidInput("the student tokenizer has no EOS token", field="student")
    if not getattr(tokenizer, "is_fast", False):
        raise InvalidInput("a fast (Rust) tokenizer is required for the student", field="student")
    head = fmt.head(prompt)
    enc = tokenizer(head + response + eos_token, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = list(enc["input_ids"])
    offsets: list[tuple[int, int]] = list(enc["offset_mapping"])
    if not ids or ids[-1] != eos_id:
        raise InvalidInput(
            f"the student tokenizer does not turn {eos_token!r} into its EOS id {eos_id}", field="student"
        )
    boundary = len(head)
    labels = [
        tok if start >= boundary else IGNORE_INDEX for tok, (start, _end) in zip(ids, offsets, strict=True)
    ]
    truncated = False
    if fmt.max_length is not None and len(ids) > fmt.max_length:
        if not fmt.truncate:
            raise InvalidInput(
                f"{len(ids)} tokens (prompt part + response + EOS) exceed the limit of {fmt.max_length} "
                "(max_length, or the student's context if smaller); shorten it or enable truncation",
                field=field,
            )
        ids, labels, truncated = ids[: fmt.max_length], labels[: fmt.max_length], True
    example = StudentExample(input_ids=ids, labels=labels, truncated=truncated)
    if example.n_response_tokens == 0:
        raise InvalidInput(
            f"no response token is left after the prompt part (max_length={fmt.max_length})", field=field
        )
    return example


def student_examples(
    tokenizer: Any,
    prompts: Sequence[Prompt],
    responses: Sequence[Sequence[str]],
    fmt: StudentFormat,
    index: int,
) -> list[StudentExample]:
    """Candidate ``index``'s responses in the student's view, prompt by prompt."""
    examples = []
    for p, group in zip(prompts, responses, strict=True):
        for j, text in enumerate(group):
            field_name = f"candidates[{index}].responses[{p.id}][{j}]"
            examples.append(encode_for_student(tokenizer, p.prompt, text, fmt, field=field_name))
    return examples


def pad_token_id(tokenizer: Any) -> int:
    """The id to pad with: the tokenizer's pad token, else its EOS (pads are masked either way)."""
    pad = tokenizer.pad_token_id
    return int(pad if pad is not None else tokenizer.eos_token_id)


def length_batches(
    lengths: Sequence[int],
    *,
    max_batch: int,
    max_tokens: int | None = None,
    fits: Callable[[int, int], bool] | None = None,
) -> list[list[int]]:
    """Group example indices into batches of similar length to limit padding.

    Indices are sorted by length (longest first, so an out-of-memory shows on the first batch) and
    cut whenever one more row would break a limit: ``max_batch`` rows, ``batch_size * longest >
    max_tokens``, or ``fits(batch_size, longest)`` false (a memory plan). Every index appears in
    exactly one batch; a row that fits no limit alone still gets a batch of its own.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        longest = lengths[current[0]] if current else lengths[i]
        size = len(current) + 1
        if current and (
            size > max_batch
            or (max_tokens is not None and size * longest > max_tokens)
            or (fits is not None and not fits(size, longest))
        ):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches
