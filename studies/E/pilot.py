"""Study E's pilot (issue 27, item 7): how fast a tiny model learns the arithmetic world.

Sizes the world, never the predictors: one pilot teacher (a GPT-2 with a byte-level BPE tokenizer)
trained on problems with their ``verbose`` solutions, and its held-out greedy exact match at a few
step counts, with the wall time of each stage. Nothing here scores a candidate.

    python -m studies.E.pilot [--steps 250 500 1000] [--hidden 128] [--layers 4]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from grace_engine.models.arithmetic import generate
from grace_engine.models.data import ReferenceExample, StudentFormat
from grace_engine.models.tiny_models import EOS, tiny_gpt2, train_lm, train_tokenizer
from grace_engine.science.evaluation import greedy_accuracy

OUT = Path(__file__).resolve().parent / "pilot.json"
FMT = StudentFormat()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, nargs="+", default=[250, 500, 1000])
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--train", type=int, default=4000, help="training problems")
    parser.add_argument("--eval", type=int, default=200, help="held-out problems")
    parser.add_argument(
        "--max-steps-per-problem", type=int, default=2, help="problem difficulty: 1..this many steps"
    )
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(2)
    started = time.perf_counter()
    mix = tuple(range(1, args.max_steps_per_problem + 1))
    train = generate(args.train, "train", seed=0, steps=mix)
    held_out = generate(args.eval, "eval", seed=0, steps=mix)
    texts = [FMT.head(p.question) + p.solution("verbose") for p in train]
    tokenizer = train_tokenizer(texts, 512, chat=False)
    model = tiny_gpt2(
        len(tokenizer),
        eos_id=tokenizer.convert_tokens_to_ids(EOS),
        pad_id=tokenizer.pad_token_id,
        hidden=args.hidden,
        layers=args.layers,
    )
    params = sum(p.numel() for p in model.parameters())
    examples = [ReferenceExample(p.question, p.solution("verbose"), str(p.answer)) for p in held_out]
    record: dict[str, object] = {
        "model": {"family": "gpt2", "hidden": args.hidden, "layers": args.layers, "params": params},
        "train_problems": len(train),
        "eval_problems": len(held_out),
        "steps_per_problem": list(mix),
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
        print(json.dumps(checkpoints[-1]), flush=True)
    record["checkpoints"] = checkpoints
    record["seconds"] = time.perf_counter() - started
    OUT.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
