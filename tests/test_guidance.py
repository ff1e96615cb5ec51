"""The paper's three guidances (best temperature per model, best per family, best under a size
limit): the rule against a brute-force reading of the ranking, the model facts against the loaded
models, temperature lists in candidate files, and a ranking that answers all three end to end."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from grace_engine.errors import InvalidInput
from grace_engine.models.candidates import read_candidates
from grace_engine.models.data import read_prompts
from grace_engine.models.facts import ModelFacts, model_facts
from grace_engine.models.loading import ModelCache, ModelPolicy, load_causal_lm, resolve_model
from grace_engine.models.tiny_models import TinyModels
from grace_engine.pipelines.config import ScoringConfig
from grace_engine.pipelines.context import EngineContext, JobInputs
from grace_engine.pipelines.scoring import rank_teachers
from grace_engine.science.guidance import Teacher, guide


def _reference(order: list[str], teachers: dict[str, Teacher | None], max_params: int) -> dict[str, object]:
    """Each answer by scanning every candidate for the group's smallest rank."""
    rank = {name: i + 1 for i, name in enumerate(order)}
    generated = {n: t for n, t in teachers.items() if t is not None}
    temps = {}
    for model in {t.model for t in generated.values()}:
        best = min((n for n, t in generated.items() if t.model == model), key=rank.__getitem__)
        temps[model] = (best, generated[best].temperature)
    families = {}
    for family in {t.family for t in generated.values() if t.family is not None}:
        families[family] = min((n for n, t in generated.items() if t.family == family), key=rank.__getitem__)
    small = [n for n, t in generated.items() if t.params is not None and t.params <= max_params]
    return {
        "temps": temps,
        "families": families,
        "small": min(small, key=rank.__getitem__) if small else None,
        "n_small": len(small),
    }


@pytest.mark.parametrize("seed", range(20))
def test_each_answer_is_the_groups_first_candidate_in_the_order(seed: int) -> None:
    rng = random.Random(seed)
    models = {
        f"m{i}": (rng.choice(["llama", "gpt2", None]), rng.choice([None, *range(1, 10)])) for i in range(5)
    }
    teachers: dict[str, Teacher | None] = {}
    for i in range(rng.randint(1, 14)):
        if rng.random() < 0.2:
            teachers[f"supplied{i}"] = None
            continue
        model = rng.choice(sorted(models))
        family, params = models[model]
        teachers[f"c{i}"] = Teacher(model, rng.choice([0.0, 0.3, 0.7, 1.0]), family, params)
    order = list(teachers)
    rng.shuffle(order)
    limit = rng.randint(1, 9)
    got = guide(order, teachers, max_params=limit)
    want = _reference(order, teachers, limit)
    assert {c.model: (c.candidate, c.temperature) for c in got.best_temperature} == want["temps"]
    assert {c.family: c.candidate for c in got.best_per_family} == want["families"]
    assert got.under_max_params is not None
    assert got.under_max_params.candidate == want["small"]
    assert got.under_max_params.n_within == want["n_small"]
    for choice in got.best_temperature:
        assert choice.rank == order.index(choice.candidate) + 1
        tried = sorted(
            {t.temperature for t in teachers.values() if t is not None and t.model == choice.model}
        )
        assert choice.temperatures == tried
    assert [c.rank for c in got.best_per_family] == sorted(c.rank for c in got.best_per_family)
    assert guide(order, teachers).under_max_params is None


def test_facts_are_read_from_the_files_and_match_the_loaded_model(tiny: TinyModels, tmp_path: Path) -> None:
    policy = ModelPolicy.from_paths([tiny.root, tmp_path])
    for path, family in ((tiny.student, "llama"), (tiny.teachers["tutor"], "gpt2")):
        source = resolve_model(str(path), policy, field="model")
        model = load_causal_lm(source, policy)
        facts = model_facts(source)
        assert facts.family == family
        assert facts.params == sum(p.numel() for p in model.parameters())  # tied weights once
        # Without safetensors the count comes from the config, built on the meta device.
        config_only = tmp_path / f"{family}-config"
        config_only.mkdir()
        (config_only / "config.json").write_bytes((path / "config.json").read_bytes())
        assert model_facts(resolve_model(str(config_only), policy, field="model")) == facts
    hub = resolve_model("someone/absent", ModelPolicy((), ("someone/absent",)), field="model")
    assert model_facts(hub).params is None
    # A corrupt weights file leaves the facts unknown; it never fails the job that asks.
    (tmp_path / "llama-config" / "model.safetensors").write_bytes(
        b"\x08\x00\x00\x00\x00\x00\x00\x00{bad json"
    )
    assert model_facts(resolve_model(str(tmp_path / "llama-config"), policy, field="model")) == ModelFacts(
        None, None
    )


def test_a_candidate_file_expands_temperatures_and_refuses_a_muddled_list(tmp_path: Path) -> None:
    path = tmp_path / "candidates.json"
    path.write_text(json.dumps([{"name": "t", "model": "a", "temperatures": [0.3, 1]}, {"model": "b"}]))
    got = read_candidates(path)
    assert [(c.name, c.temperature) for c in got] == [("t@0.3", 0.3), ("t@1", 1.0), ("b", 0.6)]
    for bad, field in (
        ({"model": "a", "temperatures": []}, "candidates[0].temperatures"),
        ({"model": "a", "temperatures": [0.3, 0.3]}, "candidates[0].temperatures"),
        ({"model": "a", "temperature": 1, "temperatures": [0.3]}, "candidates[0]"),
        ({"name": "x", "responses": {}, "temperatures": [0.3]}, "candidates[0]"),
    ):
        path.write_text(json.dumps([bad]))
        with pytest.raises(InvalidInput) as err:
            read_candidates(path)
        assert err.value.field == field


def test_a_ranking_answers_the_three_guidances(tiny: TinyModels, tmp_path: Path) -> None:
    path = tmp_path / "candidates.json"
    tutor, parrot = str(tiny.teachers["tutor"]), str(tiny.teachers["parrot"])
    path.write_text(
        json.dumps(
            [
                {"name": "tutor", "model": tutor, "temperatures": [0.3, 1.3], "max_tokens": 48},
                {"name": "parrot", "model": parrot, "max_tokens": 48},
            ]
        )
    )
    policy = ModelPolicy.from_paths([tiny.root])
    parrot_params = model_facts(resolve_model(parrot, policy, field="model")).params
    assert parrot_params is not None
    inputs = JobInputs(read_prompts(tiny.prompts_file)[:12], read_candidates(path), str(tiny.student))
    spec = ScoringConfig(proj_dim=16, n_splits=3, bootstrap=0, max_params=parrot_params)
    result = rank_teachers(inputs, spec, EngineContext(policy=policy, models=ModelCache(policy)))
    order = [r.name for r in result.ranking]
    assert sorted(order) == ["parrot", "tutor@0.3", "tutor@1.3"]
    guidance = result.guidance
    (temps_tutor,) = [c for c in guidance.best_temperature if c.model == tutor]
    assert temps_tutor.candidate == min(("tutor@0.3", "tutor@1.3"), key=order.index)
    assert temps_tutor.temperatures == [0.3, 1.3]
    assert {c.family: c.candidate for c in guidance.best_per_family} == {
        "gpt2": temps_tutor.candidate,
        "llama": "parrot",
    }
    # The limit is the parrot's size: the tutor's GPT-2 is bigger, so the parrot is the answer.
    assert result.candidates["tutor@0.3"].teacher is not None
    tutor_params = result.candidates["tutor@0.3"].teacher.params
    assert tutor_params is not None
    assert tutor_params > parrot_params
    assert guidance.under_max_params is not None
    assert guidance.under_max_params.candidate == "parrot"
    assert guidance.under_max_params.n_within == 1
    assert result.to_dict()["guidance"]["under_max_params"]["candidate"] == "parrot"
