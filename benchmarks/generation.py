"""Teacher generation: the transformers and vLLM backends on the same prompts and model.

Greedy decoding (temperature 0) so the two can be compared text for text: reports tokens per
second of each and the share of prompts whose outputs are identical. vLLM needs a CUDA GPU and
the `gpu` extra; without them only transformers runs and the JSON says why.

    python benchmarks/generation.py --model .grace/tiny-models/tutor \\
        --prompts .grace/tiny-models/prompts.jsonl

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from grace_engine.errors import GraceError
from grace_engine.models.data import read_prompts
from grace_engine.models.generation import GenerationSettings, TransformersBackend, VllmBackend
from grace_engine.models.loading import ModelPolicy, load_causal_lm, load_tokenizer, resolve_model


def _tokens(tokenizer: Any, responses: list[list[str]]) -> int:
    return sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for group in responses for t in group)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, type=Path, help="a teacher model directory")
    parser.add_argument("--prompts", required=True, type=Path)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--limit", type=int, default=64, help="prompts used")
    args = parser.parse_args(argv)
    import torch

    policy = ModelPolicy.from_paths([args.model.parent])
    source = resolve_model(str(args.model), policy, field="model")
    prompts = read_prompts(args.prompts)[: args.limit]
    settings = GenerationSettings(m=1, temperature=0.0, top_p=1.0, max_tokens=args.max_tokens, seed=0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_causal_lm(source, policy, device=device)
    tokenizer = load_tokenizer(source, policy)
    results: dict[str, Any] = {"model": source.location, "prompts": len(prompts), "device": device}

    t0 = time.perf_counter()
    hf = TransformersBackend(batch_size=32).generate(model, tokenizer, prompts, settings).texts
    seconds = time.perf_counter() - t0
    results["transformers"] = {"seconds": seconds, "tokens_per_s": _tokens(tokenizer, hf) / seconds}
    print(f"transformers ({device}): {results['transformers']['tokens_per_s']:.0f} tokens/s", flush=True)

    try:
        backend = VllmBackend()
    except GraceError as exc:
        results["vllm"] = None
        results["vllm_unavailable"] = str(exc)
        print(f"vllm: not run ({exc})", flush=True)
    else:
        del model
        torch.cuda.empty_cache()
        backend.engine(source.location)  # engine start-up is not generation time
        t0 = time.perf_counter()
        vl = backend.generate_from(source.location, prompts, settings).texts
        seconds = time.perf_counter() - t0
        same = sum(a[0] == b[0] for a, b in zip(hf, vl, strict=True)) / len(prompts)
        results["vllm"] = {"seconds": seconds, "tokens_per_s": _tokens(tokenizer, vl) / seconds}
        results["greedy_identical_share"] = same
        print(f"vllm: {results['vllm']['tokens_per_s']:.0f} tokens/s | identical greedy outputs {same:.0%}")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
