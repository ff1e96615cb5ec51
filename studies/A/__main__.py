"""Study A: does GRACE predict distillation outcomes on the tiny models? (protocol.md)

python -m studies.A
"""

from __future__ import annotations

import json
from pathlib import Path

from grace_engine.models.tiny_models import build_tiny_models, gsm8k_records
from studies import candidates as cands
from studies.run import HERE, run_study, write_candidates

WORK = Path(".grace/studies/A")
M = 4


def prepare() -> list[str]:
    """Build the study's inputs (once) and return its ``grace validate`` arguments."""
    tiny = WORK / "tiny-models"
    if not (tiny / "student" / "config.json").is_file():
        build_tiny_models(tiny, seed=0, steps=300)
    prompts = [json.loads(line) for line in (tiny / "prompts.jsonl").read_text("utf-8").splitlines()]
    by_id = {f"gsm8k-{r['idx']}": r for r in gsm8k_records()}
    records = [by_id[p["id"]] for p in prompts]
    models = json.loads((tiny / "candidates.json").read_text("utf-8"))["candidates"]
    supplied = [
        cands.supplied("gold", cands.gold(records, M)),
        cands.supplied("gold-wrong-50", cands.wrong_answers(records, M, rate=0.5)),
        cands.supplied("gold-shuffled", cands.shuffled_steps(records, M)),
        cands.supplied("other-problem", cands.other_problem(records, M)),
    ]
    candidates_file = write_candidates(WORK / "candidates.json", [*models, *supplied])
    return [
        "--student", str(tiny / "student"),
        "--candidates", str(candidates_file),
        "--prompts", str(tiny / "prompts.jsonl"),
        "--eval", str(tiny / "eval.jsonl"),
        "--model-root", str(tiny),
        "--responses-per-prompt", str(M),
        "--proj-dim", "64",
        "--method", "full",
        "--epochs", "3",
        "--lr", "1e-3",
        "--train-seeds", "0", "1", "2",
        "--eval-max-tokens", "64",
        "--quiet",
    ]  # fmt: skip


def main() -> None:
    run_study("A", prepare())
    print(f"results in {HERE / 'A' / 'results.json'}")


if __name__ == "__main__":
    main()
