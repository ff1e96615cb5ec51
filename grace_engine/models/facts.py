"""What a teacher is, read from its files without loading it: family and parameter count.

The paper's guidances ask for the best teacher within a family and under a parameter-count limit,
so every model candidate needs both, cheaply enough for an API request and for candidates whose
responses come from the cache (their model is never loaded):

* ``family``: the config's ``model_type`` (``llama``, ``gpt2``, ``gpt_neox``, ...);
* ``params``: the number of parameters as stored, summed over the safetensors headers (the
  tensors are memory-mapped, never read; tied weights are stored once, so counted once). A model
  stored without safetensors is built on the ``meta`` device from its config, which allocates
  nothing.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from grace_engine.models.loading import ModelSource


@dataclass(frozen=True)
class ModelFacts:
    """``family`` (the config's ``model_type``) and ``params`` (parameter count); None where the
    files do not say (a hub id outside the local cache, a config without ``model_type``)."""

    family: str | None
    params: int | None


def _local_dir(source: ModelSource) -> Path | None:
    if not source.is_hub:
        return Path(source.location)
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(source.location, "config.json")
    return Path(found).parent if isinstance(found, str) else None


def _stored_params(directory: Path) -> int | None:
    """Parameters in the directory's safetensors files (a sharded model's index names them)."""
    from safetensors import safe_open

    index = directory / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text("utf-8"))["weight_map"].values()))
    elif (directory / "model.safetensors").is_file():
        shards = ["model.safetensors"]
    else:
        return None
    total = 0
    for shard in shards:
        with safe_open(str(directory / shard), framework="numpy") as f:
            total += sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())  # noqa: SIM118
    return total


def _built_params(directory: Path) -> int | None:
    """Parameters of the model the config describes, built on the meta device (no memory)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(directory, trust_remote_code=False, local_files_only=True)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=False)
    except (OSError, ValueError, KeyError):
        return None
    return int(sum(p.numel() for p in model.parameters()))


def model_facts(source: ModelSource) -> ModelFacts:
    """``source``'s family and parameter count, from its config and stored tensors' shapes."""
    directory = _local_dir(source)
    if directory is None:
        return ModelFacts(None, None)
    from safetensors import SafetensorError

    try:
        config = json.loads((directory / "config.json").read_text("utf-8"))
        params = _stored_params(directory)
    except (OSError, ValueError, KeyError, SafetensorError):  # unreadable: unknown, never a failed job
        return ModelFacts(None, None)
    family = config.get("model_type") if isinstance(config, dict) else None
    if params is None:
        params = _built_params(directory)
    return ModelFacts(family if isinstance(family, str) and family else None, params)
