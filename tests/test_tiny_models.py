"""The offline tiny models: built from nothing, loaded through from_pretrained, distinct teachers."""

from __future__ import annotations

import json
import string

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from grace_engine.models.candidates import read_candidates
from grace_engine.models.data import read_prompts
from grace_engine.models.generation import GenerationSettings, TransformersBackend
from grace_engine.models.tiny_models import N_DEMO_PROMPTS, TinyModels, gsm8k_records


def _load(path: object) -> tuple[object, object]:
    kwargs = {"local_files_only": True, "trust_remote_code": False}
    return AutoModelForCausalLM.from_pretrained(str(path), **kwargs), AutoTokenizer.from_pretrained(
        str(path), **kwargs
    )


def test_models_round_trip_through_from_pretrained(tiny: TinyModels) -> None:
    arches, vocabs = {}, {}
    for name, path in {"student": tiny.student, **tiny.teachers}.items():
        model, tok = _load(path)
        spec = json.loads((path / "tokenizer.json").read_text())
        assert spec["model"]["type"] == "BPE"
        assert spec["pre_tokenizer"]["type"] == "ByteLevel"
        assert tok.eos_token_id is not None
        assert tok.pad_token_id is not None
        assert model.config.vocab_size == len(tok)
        arches[name] = type(model).__name__
        vocabs[name] = set(tok.get_vocab())
    assert arches["student"] == "LlamaForCausalLM"
    assert arches["tutor"] == "GPT2LMHeadModel"
    assert len({frozenset(v) for v in vocabs.values()}) == len(
        vocabs
    )  # every tokenizer trained on its own text
    assert tiny.train_loss["tutor"] < 4.0
    assert tiny.train_loss["student"] < 4.5


def test_files_describe_the_demo_and_hold_out_its_prompts(tiny: TinyModels) -> None:
    prompts = read_prompts(tiny.prompts_file)
    assert len(prompts) == N_DEMO_PROMPTS
    assert all(p.answer for p in prompts)
    held_out = {r["idx"] for r in gsm8k_records()[:N_DEMO_PROMPTS]}
    assert {int(p.id.removeprefix("gsm8k-")) for p in prompts} == held_out
    candidates = read_candidates(tiny.candidates_file)
    assert {c.model for c in candidates} == {str(p.resolve()) for p in tiny.teachers.values()}
    assert len({(c.model, c.temperature) for c in candidates}) == len(candidates) >= 4


def _printable_share(texts: list[str]) -> float:
    allowed = set(string.printable)
    joined = "".join(texts)
    return sum(ch in allowed for ch in joined) / max(1, len(joined))


@pytest.mark.parametrize("name", ["tutor", "parrot"])
def test_trained_teachers_write_text_and_noise_writes_random_tokens(tiny: TinyModels, name: str) -> None:
    prompts = read_prompts(tiny.prompts_file)[:6]
    settings = GenerationSettings(m=2, temperature=1.0, top_p=1.0, max_tokens=48, seed=0)
    backend = TransformersBackend()
    model, tok = _load(tiny.teachers[name])
    trained = [t for g in backend.generate(model, tok, prompts, settings).texts for t in g]
    noise_model, noise_tok = _load(tiny.teachers["noise"])
    noise = [t for g in backend.generate(noise_model, noise_tok, prompts, settings).texts for t in g]
    assert len(trained) == len(noise) == 12
    assert _printable_share(trained) > 0.97
    assert _printable_share(noise) < 0.9
