"""The mixed-teacher dataset: per-prompt GRACE contributions, routing, and its export in both of
TRL's dataset formats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer

from grace_engine.models.data import (
    DEFAULT_INSTRUCTION,
    IGNORE_INDEX,
    SFT_FORMS,
    Prompt,
    SftForm,
    StudentFormat,
    encode_for_student,
)
from grace_engine.models.tiny_models import TinyModels
from grace_engine.science.grace import grace, held_out_energies
from grace_engine.science.influence import InfluenceResult, ResponseInfluence
from grace_engine.science.mixture import (
    MixedExample,
    per_prompt_grace,
    route_by_grace,
    route_by_influence,
    sft_jsonl,
)
from grace_engine.science.predictors import Evidence


def _evidence(g: np.ndarray, m: int) -> Evidence:
    rows = g.shape[0]
    ones = np.ones(rows)
    return Evidence(g, ones, ones, ones, np.full(rows, np.nan), m)


@pytest.mark.parametrize(("n", "m", "d"), [(30, 2, 8), (12, 2, 64)])
def test_a_splits_held_out_energies_average_to_its_grace_score(n: int, m: int, d: int) -> None:
    """The contribution GRACE averages, prompt by prompt, both when rows >= d and when rows < d."""
    g = np.random.default_rng(d).normal(size=(n * m, d))
    result = grace(g, m, n_splits=3)
    n_test = max(1, int(n * 0.1))
    for split in range(3):
        test = np.sort(np.random.default_rng(split).permutation(n)[-n_test:])
        energies = held_out_energies(g, m, test)
        assert energies.shape == (n_test * m,)
        assert energies.mean() == pytest.approx(result.split_scores[split], rel=1e-8)


def test_each_prompt_goes_to_the_candidate_whose_gradients_generalise_there() -> None:
    """a's held-out gradients are small on prompts 0-9, b's on 10-19: the route follows."""
    rng = np.random.default_rng(0)
    n, m, d = 20, 2, 6
    scale_a = np.repeat(np.where(np.arange(n) < 10, 0.2, 2.0), m)[:, None]
    evidence = {
        "a": _evidence(rng.normal(size=(n * m, d)) * scale_a, m),
        "b": _evidence(rng.normal(size=(n * m, d)) * scale_a[::-1], m),
    }
    prompts = [Prompt(f"p{i}", f"problem {i}") for i in range(n)]
    texts = {c: [[f"{c} answer {i}.{j}" for j in range(m)] for i in range(n)] for c in evidence}
    rows = route_by_grace(evidence, prompts, texts)
    assert [r.prompt_id for r in rows] == [p.id for p in prompts]
    assert [r.teacher for r in rows] == ["a"] * 10 + ["b"] * 10
    energies = per_prompt_grace(evidence["a"]).reshape(n, m)
    for r in rows[:10]:
        i = int(r.prompt_id[1:])
        assert r.response_index == int(np.argmin(energies[i]))
        assert r.response == f"a answer {i}.{r.response_index}"
        assert r.score == pytest.approx(float(energies[i].mean()))


def test_influence_routes_to_the_most_helpful_teacher() -> None:
    prompts = [Prompt("x", "first"), Prompt("y", "second")]
    texts = {"a": [["a-x0", "a-x1"], ["a-y0", "a-y1"]], "b": [["b-x0", "b-x1"], ["b-y0", "b-y1"]]}
    influences = {
        ("a", "x"): (0.5, 0.1),
        ("b", "x"): (-0.2, 0.9),
        ("a", "y"): (-1.0, 0.0),
        ("b", "y"): (0.3, 0.2),
    }
    result = InfluenceResult(
        "exact",
        1.0,
        [
            ResponseInfluence(c, p, j, v, 1.0)
            for (c, p), pair in influences.items()
            for j, v in enumerate(pair)
        ],
    )
    rows = route_by_influence(result, prompts, texts)
    assert [(r.prompt_id, r.teacher, r.response) for r in rows] == [("x", "b", "b-x1"), ("y", "b", "b-y0")]


TEMPLATE = StudentFormat("Q: {prompt}\nA: ")


@pytest.mark.parametrize("form", SFT_FORMS)
def test_the_export_loads_with_datasets_as_one_example_per_prompt(tmp_path: Path, form: SftForm) -> None:
    datasets = pytest.importorskip("datasets")
    rng = np.random.default_rng(1)
    evidence = {c: _evidence(rng.normal(size=(16, 4)), 2) for c in ("a", "b")}
    prompts = [Prompt(f"p{i}", f"What is {i} + {i}? Ünïcode ok") for i in range(8)]
    texts = {c: [[f"{c} says {2 * i}", f"{c} thinks {2 * i}"] for i in range(8)] for c in evidence}
    path = tmp_path / "mixed.jsonl"
    rows = route_by_grace(evidence, prompts, texts)
    path.write_text(sft_jsonl(rows, form, student_format=TEMPLATE, instruction="Solve.\n"), "utf-8")
    loaded = datasets.load_dataset("json", data_files=str(path), split="train")
    assert len(loaded) == len(prompts)
    first = loaded[0]
    if form == "chat":  # the teacher's conversation: its instruction, then the prompt
        assert [m["role"] for m in first["messages"]] == ["user", "assistant"]
        assert first["messages"][0]["content"] == "Solve.\n" + prompts[0].prompt
        reply = first["messages"][1]["content"]
    else:  # the student's scored text: its template around the prompt
        assert first["prompt"] == f"Q: {prompts[0].prompt}\nA: "
        reply = first["completion"]
    assert first["teacher"] in ("a", "b")
    assert reply == rows[0].response
    assert reply.startswith(first["teacher"])
    assert json.loads(path.read_text("utf-8").splitlines()[3])["prompt_id"] == "p3"


def test_prompt_and_completion_are_the_very_tokens_the_student_was_scored_on(tiny: TinyModels) -> None:
    """The student's template (the tiny models' default one), its prompt part masked: prompt +
    completion + EOS tokenizes to the scored example's ids, and the completion to its labelled part."""
    tok = AutoTokenizer.from_pretrained(tiny.student)
    fmt = StudentFormat()
    prompt = "Tom has 3 apples and buys 4 more. How many?"
    row = MixedExample("p", prompt, "a", 0, "7 apples.", 0.5, "grace")
    text = sft_jsonl([row], "prompt_completion", student_format=fmt, instruction=DEFAULT_INSTRUCTION)
    line = json.loads(text)
    scored = encode_for_student(tok, prompt, "7 apples.", fmt)
    ids = tok(line["prompt"] + line["completion"] + tok.eos_token, add_special_tokens=False)["input_ids"]
    assert ids == scored.input_ids
    completion = tok(line["completion"] + tok.eos_token, add_special_tokens=False)["input_ids"]
    assert [t for t in scored.labels if t != IGNORE_INDEX] == completion


def test_a_blank_response_is_never_exported() -> None:
    """A generated response may be blank (a teacher that stopped at once): routing by GRACE and by
    influence picks the candidate's best non-blank response, and skips a candidate with none."""
    rng = np.random.default_rng(3)
    n, m, d = 6, 2, 4
    evidence = {c: _evidence(rng.normal(size=(n * m, d)), m) for c in ("a", "b")}
    prompts = [Prompt(f"p{i}", f"problem {i}") for i in range(n)]
    texts = {c: [[f"{c} {i}.{j}" for j in range(m)] for i in range(n)] for c in evidence}
    free = route_by_grace(evidence, prompts, texts)
    for r in free:  # blank out every chosen response, and all of b's on prompt 0
        texts[r.teacher][int(r.prompt_id[1:])][r.response_index] = " "
    texts["b"][0] = ["", "\n"]
    rows = route_by_grace(evidence, prompts, texts)
    assert len(rows) == n
    assert all(r.response.strip() for r in rows)
    assert rows[0].teacher == "a"
    influences = [
        ResponseInfluence(c, p.id, j, 1.0 if j == 0 else 0.5, 1.0)
        for c in "ab"
        for p in prompts
        for j in range(m)
    ]
    for r in route_by_influence(InfluenceResult("exact", 1.0, influences), prompts, texts):
        assert r.response.strip(), r
