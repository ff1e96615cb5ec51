"""The rates behind the cost model (grace_engine.science.cost), measured on this machine.

Times, on one real model (SmolLM2-135M-Instruct by default), a batched forward and backward pass
(the gradient stage's and distillation's arithmetic) and greedy decoding (generation's and
evaluation's), and reports each as effective FLOP/s by the model's own arithmetic: 6 FLOPs per
parameter per token for a forward and backward pass, 2 for a forward pass or a decoded token. The
constants ``PASS_FLOPS_PER_SECOND`` and ``DECODE_FLOPS_PER_SECOND`` are these figures on the 2-core
reference machine; a faster machine (or a GPU) does more per second, so an operator there raises
``GRACE_MAX_JOB_SECONDS`` and the tenants' compute quota by the ratio this prints.

    python benchmarks/cost.py --model .grace/smollm2
    python benchmarks/cost.py --model .grace/test-cache/smollm2 --batch 8 --tokens 256 --decode 64

The last line printed is one JSON object (also written to --out).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from grace_engine.models.facts import model_facts
from grace_engine.models.loading import ModelPolicy, load_causal_lm, resolve_model
from grace_engine.science import cost


def timed(fn: object, repeats: int) -> float:
    """The median seconds of ``repeats`` calls, after one warm-up call."""
    assert callable(fn)
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=Path(".grace/smollm2"))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=256, help="tokens per row of a training batch")
    parser.add_argument("--decode", type=int, default=64, help="tokens decoded per timing")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/cost.json"))
    args = parser.parse_args()

    source = resolve_model(
        str(args.model.resolve()), ModelPolicy.from_paths([args.model.resolve().parent]), field="model"
    )
    params = model_facts(source).params
    assert params is not None, "the model's parameter count could not be read"
    model: Any = load_causal_lm(source, ModelPolicy.from_paths([args.model.resolve().parent]))
    for p in model.parameters():
        p.requires_grad_(True)
    vocab = model.config.vocab_size
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (args.batch, args.tokens), generator=gen)

    def train_step() -> None:
        model.zero_grad(set_to_none=True)
        model(input_ids=ids, labels=ids).loss.backward()

    pass_s = timed(train_step, args.repeats)
    prompt = torch.randint(0, vocab, (1, 32), generator=gen)

    def decode() -> None:
        with torch.no_grad():
            model.generate(
                prompt,
                max_new_tokens=args.decode,
                min_new_tokens=args.decode,
                do_sample=False,
                pad_token_id=0,
            )

    decode_s = timed(decode, args.repeats)
    pass_rate = 6 * params * args.batch * args.tokens / pass_s
    decode_rate = 2 * params * args.decode / decode_s
    report = {
        "model": str(args.model),
        "params": params,
        "torch_threads": torch.get_num_threads(),
        "train_batch": [args.batch, args.tokens],
        "train_step_seconds": round(pass_s, 3),
        "pass_flops_per_second": float(f"{pass_rate:.3g}"),
        "decode_tokens": args.decode,
        "decode_seconds": round(decode_s, 3),
        "decode_flops_per_second": float(f"{decode_rate:.3g}"),
        "model_constants": {
            "pass_flops_per_second": cost.PASS_FLOPS_PER_SECOND,
            "decode_flops_per_second": cost.DECODE_FLOPS_PER_SECOND,
        },
        "this_machine_vs_constants": {
            "pass": round(pass_rate / cost.PASS_FLOPS_PER_SECOND, 2),
            "decode": round(decode_rate / cost.DECODE_FLOPS_PER_SECOND, 2),
        },
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
