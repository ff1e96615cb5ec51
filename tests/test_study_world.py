"""Study E's pipeline in miniature (issue 27): a world of a few hundred problems, a teacher trained
to solve them and one barely trained, a student pretrained without solutions; distilled on the
good teacher's answers the student beats the one distilled on the bad teacher's on held-out
problems (NLL of their references, exact match no worse). The full study runs the same code
(``python -m studies.E``) at its own sizes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from grace_engine.models.arithmetic import Difficulty
from studies.E.study import Distillation, distil_one
from studies.E.world import ModelSpec, Sizes, build

# One- and two-step problems over small numbers: a tiny teacher learns them in a few hundred steps.
LEVEL = Difficulty(steps=(1, 2), weights=(2, 1), max_value=20, max_start=10, max_term=5, max_factor=2)
SIZES = Sizes(teacher_train=600, distill=200, score=12, eval=40)
GOOD = ModelSpec("good", "llama", 64, 2, 320, 400, 1, "equations", batch=16)
BAD = ModelSpec("bad", "gpt2", 32, 1, 320, 30, 2, "equations", batch=16)
STUDENT = ModelSpec("student", "llama", 48, 2, 320, 40, 3, batch=16)


# 150 steps: at 60 the student distilled on the bad teacher was still emitting stray numbers, whose
# last one matched the small answers by chance (10% of 40 problems against 7.5%).
def _distil(world: Path, candidate: str) -> dict[str, Any]:
    return distil_one(Distillation(world, STUDENT, candidate, seed=0, steps=150, lr=2e-3, batch=16))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("world")
    build(root, sizes=SIZES, level=LEVEL, zoo=[GOOD, BAD], students=[STUDENT], jobs=1, log=lambda _line: None)
    return root


def test_the_world_is_built_once_with_teachers_far_apart(world: Path) -> None:
    record = json.loads((world / "world.json").read_text())
    models = record["models"]
    # A few hundred steps teach a tiny teacher the format and some arithmetic, not all of it.
    assert models["good"]["accuracy"]["0.0"] > models["bad"]["accuracy"]["0.0"]
    assert {m["family"] for m in models.values()} == {"llama", "gpt2"}
    # The sets are disjoint and written once; the candidates expand each model's temperatures.
    ids = {
        name: {json.loads(line)["id"] for line in (world / f"{name}.jsonl").read_text().splitlines()}
        for name in ("teacher_train", "distill", "score", "eval")
    }
    assert sum(len(v) for v in ids.values()) == len(set[str]().union(*ids.values()))
    candidates = json.loads((world / "candidates.json").read_text())["candidates"]
    assert [c["name"] for c in candidates] == ["good", "bad"]
    # A second build finds every model trained: nothing is trained again.
    stamp = (world / "zoo" / "good" / "trained.json").stat().st_mtime_ns
    build(
        world, sizes=SIZES, level=LEVEL, zoo=[GOOD, BAD], students=[STUDENT], jobs=1, log=lambda _line: None
    )
    assert (world / "zoo" / "good" / "trained.json").stat().st_mtime_ns == stamp


def test_distillation_on_the_good_teacher_beats_the_bad_one(world: Path) -> None:
    good, bad = _distil(world, "good@0.3"), _distil(world, "bad@0.3")
    # At this size the good teacher's student learns the solutions' form and a little arithmetic:
    # its NLL on the references (every style) is far lower, its exact match no worse.
    assert good["mean_nll"] < bad["mean_nll"] - 0.5
    assert good["accuracy"] >= bad["accuracy"]
    assert set(good["nll"]) == {"verbose", "equations", "answer_first"}
    # Cached: asking again reads the stored outcome.
    assert _distil(world, "good@0.3") == good
