"""Study E's pilot (issue 27, item 7): how fast a tiny model learns the arithmetic world.

Sizes the world, never the predictors: one pilot teacher trained on problems with their reference
solutions in one style, and its held-out greedy exact match at a few step counts, with the wall
time of each stage. Nothing here scores a candidate. Each run is appended to ``pilot.json`` under
its ``--name``.

    python -m studies.E.pilot --name small [--steps 500 1000] [--max-value 50] [--family llama]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from grace_engine.models.arithmetic import Difficulty, generate
from grace_engine.models.data import ReferenceExample, StudentFormat
from grace_engine.models.tiny_models import EOS, tiny_gpt2, tiny_llama, train_lm, train_tokenizer
from grace_engine.science.evaluation import greedy_accuracy

OUT = Path(__file__).resolve().parent / "pilot.json"
FMT = StudentFormat()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--name", required=True)
    parser.add_argument("--steps", type=int, nargs="+", default=[250, 500, 1000])
    parser.add_argument("--family", choices=["gpt2", "llama"], default="gpt2")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4, help="GPT-2 only")
    parser.add_argument("--style", default="verbose")
    parser.add_argument("--train", type=int, default=4000, help="training problems")
    parser.add_argument("--eval", type=int, default=200, help="held-out problems")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--step-counts", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--weights", type=float, nargs="+")
    parser.add_argument("--max-value", type=int, default=99)
    parser.add_argument("--max-start", type=int, default=30)
    parser.add_argument("--max-term", type=int, default=20)
    parser.add_argument("--max-factor", type=int, default=5)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    level = Difficulty(
        steps=tuple(args.step_counts),
        weights=tuple(args.weights) if args.weights else None,
        max_value=args.max_value,
        max_start=args.max_start,
        max_term=args.max_term,
        max_factor=args.max_factor,
    )
    train = generate(args.train, "train", seed=0, level=level)
    held_out = generate(args.eval, "eval", seed=0, level=level)
    texts = [FMT.head(p.question) + p.solution(args.style) for p in train]
    tokenizer = train_tokenizer(texts, 512, chat=False)
    ids = {"eos_id": tokenizer.convert_tokens_to_ids(EOS), "pad_id": tokenizer.pad_token_id}
    if args.family == "gpt2":
        model = tiny_gpt2(len(tokenizer), hidden=args.hidden, layers=args.layers, **ids)
    else:
        model = tiny_llama(len(tokenizer), hidden=args.hidden, **ids)
    params = sum(p.numel() for p in model.parameters())
    examples = [ReferenceExample(p.question, p.solution(args.style), str(p.answer)) for p in held_out]
    record: dict[str, object] = {
        "model": {"family": args.family, "hidden": args.hidden, "layers": args.layers, "params": params},
        "difficulty": {k: v for k, v in vars(level).items()},
        "style": args.style,
        "threads": args.threads,
        "train_problems": len(train),
        "eval_problems": len(held_out),
        "untrained_accuracy": greedy_accuracy(model, tokenizer, examples, FMT, max_new_tokens=96),
    }
    checkpoints: list[dict[str, float]] = []
    done = 0
    for target in sorted(args.steps):
        t0 = time.perf_counter()
        loss = train_lm(model, tokenizer, texts, steps=target - done, seed=target, batch_size=32)
        trained = time.perf_counter() - t0
        done = target
        t0 = time.perf_counter()
        accuracy = greedy_accuracy(model, tokenizer, examples, FMT, max_new_tokens=96)
        checkpoints.append(
            {
                "steps": target,
                "loss": loss,
                "accuracy": accuracy,
                "train_seconds": trained,
                "eval_seconds": time.perf_counter() - t0,
            }
        )
        print(args.name, json.dumps(checkpoints[-1]), flush=True)
    record["checkpoints"] = checkpoints
    record["seconds"] = time.perf_counter() - started
    runs = json.loads(OUT.read_text()) if OUT.exists() else {}
    if "model" in runs:  # the first pilot's record, written before runs were named
        runs = {"first": runs}
    runs[args.name] = record
    OUT.write_text(json.dumps(runs, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
