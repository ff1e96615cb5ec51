"""Teacher backends without a GPU: selection, the vLLM sampling mapping, and the lazy import."""

from __future__ import annotations

import subprocess
import sys

import pytest

from grace_engine.errors import InvalidInput
from grace_engine.models.generation import (
    GenerationSettings,
    TransformersBackend,
    VllmBackend,
    select_backend,
    vllm_installed,
    vllm_sampling_kwargs,
)
from grace_engine.models.loading import ModelPolicy
from grace_engine.pipelines.context import EngineContext


@pytest.mark.parametrize(
    ("requested", "installed", "gpu", "expected"),
    [
        ("auto", True, True, "vllm"),
        ("auto", True, False, "transformers"),
        ("auto", False, True, "transformers"),
        ("auto", False, False, "transformers"),
        ("transformers", True, True, "transformers"),
        ("vllm", True, True, "vllm"),
    ],
)
def test_backend_selection(requested: str, installed: bool, gpu: bool, expected: str) -> None:
    assert select_backend(requested, installed=installed, gpu_visible=gpu) == expected


@pytest.mark.parametrize(
    ("installed", "gpu", "needle"), [(False, True, "not installed"), (True, False, "needs a CUDA GPU")]
)
def test_asking_for_vllm_where_it_cannot_run_is_a_configuration_error(
    installed: bool, gpu: bool, needle: str
) -> None:
    with pytest.raises(InvalidInput, match=needle) as err:
        select_backend("vllm", installed=installed, gpu_visible=gpu)
    assert err.value.field == "generation_backend"
    with pytest.raises(InvalidInput) as err:
        select_backend("tensorrt")
    assert err.value.field == "generation_backend"


def test_vllm_backend_refuses_to_build_without_vllm_or_gpu() -> None:
    if vllm_installed():
        pytest.skip("vLLM is installed here; this checks CPU-only installs")
    with pytest.raises(InvalidInput, match="not installed") as err:
        VllmBackend()
    assert err.value.field == "generation_backend"
    with pytest.raises(InvalidInput):
        EngineContext(policy=ModelPolicy.from_paths([])).backend("vllm")
    assert isinstance(EngineContext(policy=ModelPolicy.from_paths([])).backend("auto"), TransformersBackend)


def test_sampling_parameter_mapping() -> None:
    sampled = GenerationSettings(m=4, temperature=0.6, top_p=0.95, max_tokens=512, seed=7)
    assert vllm_sampling_kwargs(sampled) == {
        "n": 4,
        "temperature": 0.6,
        "top_p": 0.95,
        "max_tokens": 512,
        "seed": 7,
    }
    greedy = GenerationSettings(m=4, temperature=0.0, top_p=0.5, max_tokens=64, seed=1)
    assert vllm_sampling_kwargs(greedy) == {
        "n": 1,
        "temperature": 0.0,
        "top_p": 1.0,
        "max_tokens": 64,
        "seed": 1,
    }


def test_vllm_is_imported_lazily() -> None:
    modules = (
        "grace_engine.models.generation, grace_engine.pipelines.scoring, app.main, workers.runner, "
        "grace_cli.main"
    )
    code = f"import sys, {modules}\nprint('vllm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
