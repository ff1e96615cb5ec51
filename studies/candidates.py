"""Supplied-response candidates whose quality is known by construction, for the validation studies.

Every builder maps GSM8K records (``question``, ``answer`` ending in ``#### n``) to
``{prompt_id: [m responses]}``; randomness is seeded per (prompt, response) so a study reruns
exactly.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from grace_engine.models.data import clean_solution, reference_answer

Records = Sequence[dict[str, Any]]


def prompt_id(record: dict[str, Any]) -> str:
    return f"gsm8k-{record['idx']}"


def _final_sentences(answer: str) -> list[str]:
    """The worked steps (lines) of a cleaned solution, without its final answer line."""
    lines = clean_solution(answer).split("\n")
    return [line for line in lines[:-1] if line.strip()]


def gold(records: Records, m: int) -> dict[str, list[str]]:
    """The reference solutions, written as a teacher would (``The answer is \\boxed{n}.``); the
    j-th copy varies only the final sentence's wording."""
    endings = ["The answer is", "So the final answer is", "Therefore, the answer is", "The result is"]
    return {
        prompt_id(r): [
            clean_solution(r["answer"]).replace("The answer is", endings[j % len(endings)]) for j in range(m)
        ]
        for r in records
    }


def terse(records: Records, m: int) -> dict[str, list[str]]:
    """Only the final answer: right, but no worked solution to learn from."""
    return {prompt_id(r): [f"The answer is \\boxed{{{reference_answer(r['answer'])}}}."] * m for r in records}


def shuffled_steps(records: Records, m: int, *, seed: int = 0) -> dict[str, list[str]]:
    """The reference steps in a random order other than their own (the final answer line stays
    last); a one-step solution stays as it is."""
    out = {}
    for r in records:
        steps = _final_sentences(r["answer"])
        final = clean_solution(r["answer"]).split("\n")[-1]
        group = []
        for j in range(m):
            rng = random.Random(f"{seed}/shuffle/{r['idx']}/{j}")
            order = steps[:]
            rng.shuffle(order)
            if order == steps and len(steps) > 1:  # never the reference order itself
                order = steps[1:] + steps[:1]
            group.append("\n".join([*order, final]))
        out[prompt_id(r)] = group
    return out


def wrong_answers(records: Records, m: int, *, rate: float, seed: int = 0) -> dict[str, list[str]]:
    """The reference solutions with the final answer replaced by a wrong number in a ``rate`` share
    of responses (chosen by a seeded coin per response): fluent, and wrong where it matters."""
    out = {}
    for r in records:
        ref = reference_answer(r["answer"])
        group = []
        for j, text in enumerate(gold([r], m)[prompt_id(r)]):
            rng = random.Random(f"{seed}/wrong/{r['idx']}/{j}")
            if rng.random() < rate:
                wrong = _wrong_number(ref, rng)
                text = text.replace(f"\\boxed{{{ref}}}", f"\\boxed{{{wrong}}}")
            group.append(text)
        out[prompt_id(r)] = group
    return out


def _wrong_number(ref: str, rng: random.Random) -> str:
    try:
        value = float(ref.replace(",", ""))
    except ValueError:
        return ref + "0"
    delta = rng.choice([-3, -2, -1, 1, 2, 3, 10])
    wrong = value + delta if value + delta != value else value + 1
    return str(int(wrong)) if float(wrong).is_integer() else f"{wrong:g}"


def other_problem(records: Records, m: int) -> dict[str, list[str]]:
    """Fluent worked solutions of *other* problems: right form, wrong content."""
    n = len(records)
    return {
        prompt_id(r): [clean_solution(records[(k + 1 + j) % n]["answer"]) for j in range(m)]
        for k, r in enumerate(records)
    }


def supplied(name: str, responses: dict[str, list[str]]) -> dict[str, Any]:
    """A candidate entry of a candidates file."""
    return {"name": name, "responses": responses}
