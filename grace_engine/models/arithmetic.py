"""A learnable task shipped with the project: seeded multi-step arithmetic word problems.

GSM8K is out of reach of models this machine can train (they solve ~0% of it), so the studies
need a world where a tiny student can learn from its teachers and where teachers can differ in
how well they solve it. A problem here is 1–4 steps over small whole numbers, told with one of
several surface templates about one of several people and things:

    Mia has 7 marbles. She finds 5 more. Then she gives 3 to a friend. How many marbles does Mia
    have now?

Each problem carries its verifiable final answer and reference solutions in three styles that a
student could learn from (:data:`STYLES`): ``verbose`` (a sentence per step), ``equations`` (one
equation per line) and ``answer_first`` (the answer stated, then the steps). Every style ends in
``\\boxed{answer}``, so the engine's answer extraction
(:func:`~grace_engine.science.grace.extract_answer`) checks any of them.

Splits are disjoint by construction: a problem's split follows from a hash of its canonical form
(the numbers and operations, not the wording), so the same problem can never be in two splits,
whatever the seed or the template.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from grace_engine.errors import InvalidInput
from grace_engine.models.data import Prompt

Split = Literal["train", "score", "eval"]
SPLITS: tuple[Split, ...] = ("train", "score", "eval")
# A problem's split by its canonical hash, in percent: most are for training the zoo and the
# students, the rest scored (the GRACE prompts) or held out for evaluation.
SPLIT_SHARES: dict[Split, int] = {"train": 80, "score": 10, "eval": 10}
STYLES: tuple[str, ...] = ("verbose", "equations", "answer_first")

NAMES = ("Mia", "Tom", "Ana", "Leo", "Sara", "Ben", "Ivy", "Omar", "Nina", "Raj", "Lena", "Max")
THINGS = ("apples", "marbles", "coins", "stickers", "books", "shells", "pencils", "cards")
PRONOUN = {name: "She" if name in {"Mia", "Ana", "Sara", "Ivy", "Nina", "Lena"} else "He" for name in NAMES}

Op = Literal["+", "-", "*", "/"]

# How each operation is told, several ways; {n} is the operand, {t} the things, {p} the pronoun.
PHRASES: dict[Op, tuple[str, ...]] = {
    "+": ("{p} finds {n} more.", "{p} buys {n} more {t}.", "{p} gets {n} more {t} from a friend."),
    "-": ("{p} gives {n} to a friend.", "{p} loses {n} of them.", "{p} uses {n} {t}."),
    "*": ("{p} ends up with {n} times as many {t}.", "The number of {t} grows {n}-fold."),
    "/": (
        "{p} shares them equally among {n} friends and keeps one share.",
        "{p} splits them into {n} equal groups and keeps one group.",
    ),
}
VERBS: dict[Op, str] = {"+": "adds", "-": "takes away", "*": "multiplies by", "/": "divides by"}


@dataclass(frozen=True)
class Difficulty:
    """How hard the world is, fixed on the pilot: every quantity stays in ``0..max_value``; a
    problem starts at ``2..max_start``, adds or takes away ``1..max_term``, multiplies or divides
    by ``2..max_factor``; a problem has one of ``steps`` step counts, drawn with ``weights``."""

    steps: tuple[int, ...] = (1, 2, 3, 4)
    weights: tuple[float, ...] | None = None
    max_value: int = 99
    max_start: int = 30
    max_term: int = 20
    max_factor: int = 5

    def __post_init__(self) -> None:
        if not self.steps or min(self.steps) < 1:
            raise InvalidInput("step counts must be 1 or more", field="steps")
        if self.weights is not None and len(self.weights) != len(self.steps):
            raise InvalidInput("one weight per step count", field="weights")
        if not 2 <= self.max_start <= self.max_value or self.max_term < 1 or self.max_factor < 2:
            raise InvalidInput(
                "needs 2 <= max_start <= max_value, max_term >= 1, max_factor >= 2", field="difficulty"
            )


@dataclass(frozen=True)
class Step:
    op: Op
    operand: int


@dataclass(frozen=True)
class Problem:
    """One word problem: ``start`` and its ``steps`` (the canonical form), the wording, and the
    answer. ``id`` is the canonical hash: the same numbers and operations, the same id."""

    id: str
    split: Split
    start: int
    steps: tuple[Step, ...]
    name: str
    thing: str
    question: str
    answer: int

    def values(self) -> list[int]:
        """The quantity before the first step and after each one."""
        out = [self.start]
        for step in self.steps:
            out.append(_apply(out[-1], step))
        return out

    def solution(self, style: str) -> str:
        """The reference solution in ``style`` (one of :data:`STYLES`), ending in ``\\boxed{answer}``."""
        values = self.values()
        lines = [
            f"{a} {s.op} {s.operand} = {b}" for a, s, b in zip(values, self.steps, values[1:], strict=False)
        ]
        if style == "verbose":
            said = [f"{self.name} starts with {self.start} {self.thing}."]
            for a, s, b in zip(values, self.steps, values[1:], strict=False):
                said.append(f"{PRONOUN[self.name]} {VERBS[s.op]} {s.operand}: {a} {s.op} {s.operand} = {b}.")
            said.append(
                f"So {self.name} has {self.answer} {self.thing}. The answer is \\boxed{{{self.answer}}}."
            )
            return " ".join(said)
        if style == "equations":
            return "\n".join([*lines, f"\\boxed{{{self.answer}}}"])
        if style == "answer_first":
            return f"\\boxed{{{self.answer}}} {self.thing}, because " + ", then ".join(lines) + "."
        raise InvalidInput(f"unknown style {style!r}; choose from {', '.join(STYLES)}", field="style")

    def prompt(self) -> Prompt:
        return Prompt(self.id, self.question, str(self.answer))


def _apply(value: int, step: Step) -> int:
    if step.op == "+":
        return value + step.operand
    if step.op == "-":
        return value - step.operand
    if step.op == "*":
        return value * step.operand
    return value // step.operand


def canonical_id(start: int, steps: Sequence[Step]) -> str:
    """A problem's identity: a hash of its numbers and operations (not its wording)."""
    text = f"{start}|" + "|".join(f"{s.op}{s.operand}" for s in steps)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def split_of(problem_id: str) -> Split:
    """The split a canonical id belongs to (:data:`SPLIT_SHARES` of the hash space)."""
    bucket = int(problem_id[:8], 16) % 100
    edge = 0
    for split in SPLITS:
        edge += SPLIT_SHARES[split]
        if bucket < edge:
            return split
    raise AssertionError("split shares sum to 100")


def _steps(rng: random.Random, start: int, n_steps: int, level: Difficulty) -> tuple[Step, ...] | None:
    """``n_steps`` operations that keep every value a whole number in ``0..level.max_value`` (None:
    this draw could not)."""
    value, steps = start, []
    top = level.max_value
    for _ in range(n_steps):
        options: list[Step] = []
        if value < top:
            options.append(Step("+", rng.randint(1, min(level.max_term, top - value))))
        if value > 1:
            options.append(Step("-", rng.randint(1, min(level.max_term, value - 1))))
        if 0 < value <= top // 2:
            options.append(Step("*", rng.randint(2, min(level.max_factor, top // value))))
        divisors = [d for d in range(2, level.max_factor + 1) if value % d == 0 and value // d > 0]
        if divisors:
            options.append(Step("/", rng.choice(divisors)))
        if not options:
            return None
        step = rng.choice(options)
        steps.append(step)
        value = _apply(value, step)
    return tuple(steps)


def _question(rng: random.Random, name: str, thing: str, start: int, steps: Sequence[Step]) -> str:
    pronoun = PRONOUN[name]
    told = [f"{name} has {start} {thing}."]
    for i, step in enumerate(steps):
        phrase = rng.choice(PHRASES[step.op]).format(n=step.operand, t=thing, p=pronoun)
        told.append(("Then " + phrase[0].lower() + phrase[1:]) if i and rng.random() < 0.5 else phrase)
    told.append(f"How many {thing} does {name} have now?")
    return " ".join(told)


def generate(
    n: int,
    split: Split,
    *,
    seed: int = 0,
    level: Difficulty = Difficulty(),
) -> list[Problem]:
    """``n`` distinct problems of ``split`` at ``level``, seeded. The same arguments give the same
    problems."""
    if split not in SPLITS:
        raise InvalidInput(f"unknown split {split!r}; choose from {', '.join(SPLITS)}", field="split")
    if n < 0:
        raise InvalidInput("must be 0 or more", field="n")
    rng = random.Random(f"arithmetic/{seed}/{split}")
    found: dict[str, Problem] = {}
    tries = 0
    while len(found) < n:
        tries += 1
        if tries > 200 * n + 1000:
            raise InvalidInput(f"cannot find {n} distinct {split} problems with these step counts", field="n")
        n_steps = rng.choices(level.steps, weights=level.weights)[0]
        start = rng.randint(2, level.max_start)
        drawn = _steps(rng, start, n_steps, level)
        if drawn is None:
            continue
        problem_id = canonical_id(start, drawn)
        if split_of(problem_id) != split or problem_id in found:
            continue
        name, thing = rng.choice(NAMES), rng.choice(THINGS)
        answer = start
        for step in drawn:
            answer = _apply(answer, step)
        found[problem_id] = Problem(
            problem_id, split, start, drawn, name, thing, _question(rng, name, thing, start, drawn), answer
        )
    return list(found.values())
