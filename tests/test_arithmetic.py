"""The learnable task: seeded, disjoint by construction, and every problem's wording, answer and
reference solutions agree (checked by reading the question back, independently of the generator)."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from grace_engine.errors import InvalidInput
from grace_engine.models.arithmetic import SPLITS, STYLES, Difficulty, generate, split_of
from grace_engine.science.grace import answers_match, extract_answer


def _read_back(question: str) -> int:
    """The answer a reader gets from the question's sentences alone."""
    sentences = re.split(r"(?<=[.?])\s+", question)
    value = int(re.search(r"has (\d+)", sentences[0]).group(1))  # type: ignore[union-attr]
    for sentence in sentences[1:-1]:
        n = int(re.search(r"(\d+)", sentence).group(1))  # type: ignore[union-attr]
        if re.search(r"finds|buys|gets", sentence):
            value += n
        elif re.search(r"gives|loses|uses", sentence):
            value -= n
        elif re.search(r"times as many|-fold", sentence):
            value *= n
        elif re.search(r"equally among|equal groups", sentence):
            assert value % n == 0, sentence
            value //= n
        else:
            raise AssertionError(f"unread sentence: {sentence!r}")
    return value


def test_the_same_seed_gives_the_same_problems_and_another_seed_others() -> None:
    a = generate(40, "score", seed=3)
    assert [p.question for p in a] == [p.question for p in generate(40, "score", seed=3)]
    assert {p.id for p in a} != {p.id for p in generate(40, "score", seed=4)}
    assert len({p.id for p in a}) == 40


def test_splits_are_disjoint_by_construction() -> None:
    problems = {split: generate(150, split, seed=s) for s, split in enumerate(SPLITS)}
    ids = {split: {p.id for p in ps} for split, ps in problems.items()}
    assert not ids["train"] & ids["score"]
    assert not ids["train"] & ids["eval"]
    assert not ids["score"] & ids["eval"]
    for split, ps in problems.items():
        assert all(split_of(p.id) == split == p.split for p in ps)
    # Another seed of another split still never meets these: the split follows from the problem.
    assert not {p.id for p in generate(300, "train", seed=99)} & (ids["score"] | ids["eval"])


@pytest.mark.parametrize(
    "level", [Difficulty(), Difficulty(max_value=30, max_start=15, max_term=9, max_factor=2)]
)
def test_every_question_reads_back_to_its_answer_and_every_value_is_small(level: Difficulty) -> None:
    for problem in generate(300, "train", seed=1, level=level):
        assert _read_back(problem.question) == problem.answer, problem.question
        values = problem.values()
        assert values[-1] == problem.answer
        assert all(0 <= v <= level.max_value for v in values)
        assert problem.start <= level.max_start
        for step in problem.steps:
            bound = level.max_term if step.op in "+-" else level.max_factor
            assert step.operand <= bound
        assert 1 <= len(problem.steps) <= 4


@pytest.mark.parametrize("style", STYLES)
def test_every_reference_solution_states_the_answer_the_engine_extracts(style: str) -> None:
    solutions = set()
    for problem in generate(100, "eval", seed=2):
        text = problem.solution(style)
        assert answers_match(extract_answer(text), str(problem.answer)), text
        solutions.add(text)
    assert len(solutions) == 100


def test_the_styles_differ_and_the_step_mix_follows_the_weights() -> None:
    problem = generate(1, "train", seed=5, level=Difficulty(steps=(3,)))[0]
    assert len({problem.solution(s) for s in STYLES}) == len(STYLES)
    mix = Counter(
        len(p.steps) for p in generate(400, "train", seed=6, level=Difficulty(steps=(1, 4), weights=(3, 1)))
    )
    assert set(mix) == {1, 4}
    assert 0.65 < mix[1] / 400 < 0.85
    with pytest.raises(InvalidInput) as err:
        generate(3, "holdout", seed=0)  # type: ignore[arg-type]
    assert err.value.field == "split"
    with pytest.raises(InvalidInput) as err:
        Difficulty(steps=(1, 2), weights=(1,))
    assert err.value.field == "weights"
