"""Shared fixtures: the offline tiny models (built once per session) and small random models."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM
from transformers.utils import logging as hf_logging

from grace_engine.data import StudentBatch, StudentExample, collate
from grace_engine.tiny_models import TinyModels, build_tiny_models

hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()
torch.set_num_threads(2)

VOCAB = 97


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    """The tiny student, teachers, candidate and prompt files, built once into a temp dir."""
    built = build_tiny_models(tmp_path_factory.mktemp("tiny-models"))
    print(f"\ntiny models built in {built.seconds:.1f} s")
    return built


def make_random_lm(arch: str, *, tied: bool, seed: int = 0) -> torch.nn.Module:
    """A randomly initialised ~20k-parameter Llama or GPT-2, eval mode, parameters frozen."""
    torch.manual_seed(seed)
    model: torch.nn.Module
    if arch == "llama":
        model = LlamaForCausalLM(
            LlamaConfig(
                vocab_size=VOCAB,
                hidden_size=32,
                intermediate_size=48,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                max_position_embeddings=64,
                tie_word_embeddings=tied,
                bos_token_id=None,
                eos_token_id=1,
                pad_token_id=0,
            )
        )
    else:
        model = GPT2LMHeadModel(
            GPT2Config(
                vocab_size=VOCAB,
                n_embd=32,
                n_layer=2,
                n_head=4,
                n_positions=64,
                tie_word_embeddings=tied,
                bos_token_id=1,
                eos_token_id=1,
                pad_token_id=0,
            )
        )
    model.eval()
    model.requires_grad_(False)
    return model


@pytest.fixture
def random_lm() -> Callable[..., torch.nn.Module]:
    return make_random_lm


def make_examples(specs: list[tuple[int, int]], *, seed: int = 1) -> list[StudentExample]:
    """Random examples of ``(length, prompt_tokens)``: labels -100 on the prompt part."""
    gen = torch.Generator().manual_seed(seed)
    examples = []
    for length, n_prompt in specs:
        ids = torch.randint(2, VOCAB, (length,), generator=gen).tolist()
        examples.append(StudentExample(ids, [-100] * n_prompt + ids[n_prompt:], truncated=False))
    return examples


@pytest.fixture
def mixed_batch() -> StudentBatch:
    """Four examples of different lengths in one right-padded batch."""
    return collate(make_examples([(12, 4), (20, 7), (7, 3), (16, 5)]), pad_id=0)


@pytest.fixture(scope="session")
def shared_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shared")
