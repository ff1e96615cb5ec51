"""Study B: does GRACE predict distillation outcomes for a real student, SmolLM2-135M? (protocol.md)

python -m studies.B
"""

from __future__ import annotations

import json
from pathlib import Path

from grace_cli.main import main as grace
from grace_engine.models.data import write_jsonl
from grace_engine.models.tiny_models import gsm8k_records
from studies import candidates as cands
from studies.run import HERE, run_study, write_candidates

WORK = Path(".grace/studies/B")
N_TRAIN, N_EVAL, M = 96, 48, 1


def prepare() -> list[str]:
    """Build the study's inputs (once) and return its ``grace validate`` arguments."""
    student = WORK / "smollm2"
    if grace(["models", "smollm2", str(student)]) != 0:
        raise SystemExit("could not convert SmolLM2 (see the error above)")
    train = gsm8k_records()[:N_TRAIN]  # GSM8K test problems 0-95
    held_out = gsm8k_records("gsm8k_eval.jsonl")[:N_EVAL]  # problems 1200-1247
    assert not {r["idx"] for r in train} & {r["idx"] for r in held_out}
    prompts = WORK / "prompts.jsonl"
    write_jsonl(
        prompts, ({"id": cands.prompt_id(r), "prompt": r["question"], "answer": r["answer"]} for r in train)
    )
    eval_file = WORK / "eval.jsonl"
    write_jsonl(eval_file, ({"question": r["question"], "answer": r["answer"]} for r in held_out))
    generated = [
        {"name": f"smollm2-t{t}", "model": str(student), "temperature": t, "max_tokens": 256}
        for t in (0.7, 1.2)
    ]
    supplied = [
        cands.supplied("gold", cands.gold(train, M)),
        cands.supplied("gold-wrong-50", cands.wrong_answers(train, M, rate=0.5)),
        cands.supplied("gold-shuffled", cands.shuffled_steps(train, M)),
        cands.supplied("terse", cands.terse(train, M)),
        cands.supplied("other-problem", cands.other_problem(train, M)),
    ]
    candidates_file = write_candidates(WORK / "candidates.json", [*generated, *supplied])
    return [
        "--student", str(student),
        "--candidates", str(candidates_file),
        "--prompts", str(prompts),
        "--eval", str(eval_file),
        "--model-root", str(WORK),
        "--responses-per-prompt", str(M),
        "--proj-dim", "64",
        "--method", "lora",
        "--epochs", "2",
        "--lr", "1e-3",
        "--train-seeds", "0",
        "--no-accuracy",
        "--response-cache", str(WORK / "responses"),
    ]  # fmt: skip


def main() -> None:
    run_study("B", prepare())
    print(f"results in {HERE / 'B' / 'results.json'}")
    print(
        json.dumps(
            {
                k: v["spearman"]
                for k, v in json.loads((HERE / "B" / "results.json").read_text())["correlations"].items()
            }
        )
    )


if __name__ == "__main__":
    main()
