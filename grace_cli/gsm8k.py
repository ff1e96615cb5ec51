"""``grace gsm8k DIR``: GSM8K prompts and supplied-response candidates for a first real-student ranking.

Three candidates whose quality is known without any model, so a ranking of them is a sanity check a
newcomer can read: ``reference`` (the worked solutions, as a teacher would write them), ``terse``
(only the final answer) and ``shuffled`` (fluent worked solutions of *other* problems). Each gives
one or two responses per prompt (``-m``; the second is a rephrasing of the first).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from grace_engine.errors import InvalidInput


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "gsm8k",
        help="write GSM8K prompts and three supplied-response candidates (reference, terse, shuffled)",
    )
    p.add_argument("dir", type=Path, metavar="DIR")
    p.add_argument("--prompts", "-n", type=int, default=16, help="how many problems (default 16)")
    p.add_argument(
        "--source",
        type=Path,
        help="GSM8K JSONL ({question, answer}); default: the subset shipped with the package",
    )
    p.add_argument("--offset", type=int, default=0, help="skip this many problems first")
    p.add_argument("-m", type=int, choices=[1, 2], default=2, help="responses per prompt (default 2)")


def _records(source: Path | None) -> list[dict[str, Any]]:
    from grace_engine.models.tiny_models import gsm8k_records

    if source is None:
        return gsm8k_records()
    if not source.is_file():
        raise InvalidInput(f"no such file: {source}", field="source")
    return [json.loads(line) for line in source.read_text("utf-8").splitlines() if line.strip()]


def build(out: Path, *, n: int, source: Path | None = None, offset: int = 0, m: int = 2) -> tuple[Path, Path]:
    """Write ``prompts.jsonl`` and ``candidates.json`` under ``out``; returns their paths."""
    from grace_engine.models.data import (  # torch: not for --help
        clean_solution,
        reference_answer,
        write_jsonl,
    )

    records = _records(source)[offset : offset + n]
    if n < 2 or len(records) < n:
        raise InvalidInput(f"needs between 2 and {len(records)} problems, got {n}", field="prompts")
    ids = [f"gsm8k-{r.get('idx', offset + i)}" for i, r in enumerate(records)]
    solutions = [clean_solution(r["answer"]) for r in records]
    answers = [reference_answer(r["answer"]) for r in records]

    candidates: list[dict[str, Any]] = [
        {
            "name": "reference",
            "responses": {
                i: [s, s.replace("The answer is", "So the final answer is")]
                for i, s in zip(ids, solutions, strict=True)
            },
        },
        {
            "name": "terse",
            "responses": {
                i: [f"The answer is \\boxed{{{a}}}.", f"\\boxed{{{a}}}"]
                for i, a in zip(ids, answers, strict=True)
            },
        },
        {
            "name": "shuffled",
            "responses": {i: [solutions[(k + 1) % n], solutions[(k + 2) % n]] for k, i in enumerate(ids)},
        },
    ]
    out.mkdir(parents=True, exist_ok=True)
    prompts_file, candidates_file = out / "prompts.jsonl", out / "candidates.json"
    write_jsonl(
        prompts_file,
        (
            {"id": i, "prompt": r["question"], "answer": r["answer"]}
            for i, r in zip(ids, records, strict=True)
        ),
    )
    for c in candidates:
        c["responses"] = {i: texts[:m] for i, texts in c["responses"].items()}
    candidates_file.write_text(json.dumps({"candidates": candidates}, indent=1, ensure_ascii=False) + "\n")
    return prompts_file, candidates_file


def cmd_gsm8k(args: argparse.Namespace) -> int:
    prompts, candidates = build(args.dir, n=args.prompts, source=args.source, offset=args.offset, m=args.m)
    print(f"prompts     {prompts}  ({args.prompts} GSM8K problems, MIT licence)")
    print(f"candidates  {candidates}  (reference, terse, shuffled; {args.m} per prompt)")
    return 0
