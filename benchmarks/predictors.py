"""What the forward-only predictors (RSR, student NLL, length) cost against GRACE's gradient pass.

    .venv/bin/python benchmarks/predictors.py [--responses 48]

SmolLM2-135M-Instruct as the student (converted into .grace/benchmarks/smollm2 when absent), the
GSM8K reference solutions of the first N shipped problems as supplied responses, one memory budget.
Both passes go through ``compute_gradients`` with the same batching; the forward-only one uses
:class:`~grace_engine.science.gradients.ForwardStatistics` (no backward, no projection). Reports seconds per
response and the peak resident memory of each pass (VmHWM, reset between passes).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from grace_cli.main import main as grace
from grace_engine.memory import MemoryBudget, resident_bytes
from grace_engine.models.data import StudentFormat, clean_solution, encode_for_student, pad_token_id
from grace_engine.models.loading import ModelCache, ModelPolicy, resolve_model
from grace_engine.models.tiny_models import gsm8k_records
from grace_engine.science.gradient_space import GradientSpace
from grace_engine.science.gradients import (
    ForwardStatistics,
    GradientComputer,
    compute_gradients,
    make_gradient_computer,
)

WORK = Path(".grace/benchmarks/smollm2")


def _peak_rss_gb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--responses", type=int, default=48)
    parser.add_argument("--memory-budget", type=float, default=6.0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    student_dir = WORK / "student"
    if grace(["models", "smollm2", str(student_dir)]) != 0:
        raise SystemExit("could not convert SmolLM2")
    policy = ModelPolicy.from_paths([WORK])
    loaded = ModelCache(policy).get(resolve_model(str(student_dir), policy, field="student"))
    model, tokenizer = loaded.model, loaded.tokenizer
    records = gsm8k_records()[: args.responses]
    examples = [
        encode_for_student(tokenizer, r["question"], clean_solution(r["answer"]), StudentFormat())
        for r in records
    ]
    budget = MemoryBudget.from_gb(args.memory_budget)
    computers: dict[str, GradientComputer] = {
        "forward-only (RSR, NLL, length)": ForwardStatistics(model),
        "fast gradients (GRACE, G-Norm, G-Vendi + the above)": make_gradient_computer(
            model, space=GradientSpace(), d=512, path="fast"
        ),
    }
    rows = []
    for name, computer in computers.items():
        plan = budget.plan(resident_bytes([model]), computer.cost(), stage="gradient")
        _reset_peak()
        started = time.perf_counter()
        out = compute_gradients(model, computer, examples, pad_id=pad_token_id(tokenizer), plan=plan)
        seconds = time.perf_counter() - started
        rows.append(
            {
                "pass": name,
                "s_per_response": seconds / len(examples),
                "peak_rss_gb": _peak_rss_gb(),
                "rank_sum_total": float(out.rank_sums.sum()),
            }
        )
        print(
            f"{name:<52} {seconds / len(examples):.3f} s/response  peak RSS {rows[-1]['peak_rss_gb']:.2f} GB"
        )
    ratio = rows[1]["s_per_response"] / rows[0]["s_per_response"]
    tokens = sum(len(e.input_ids) for e in examples) / len(examples)
    summary = {
        "student": "SmolLM2-135M-Instruct (float32)",
        "responses": len(examples),
        "mean_tokens": tokens,
        "memory_budget_gb": args.memory_budget,
        "passes": rows,
        "gradients_over_forward": ratio,
        # The forward statistics both passes compute (batches may differ: each pass has its plan).
        "rank_sums_agree": rows[0]["rank_sum_total"] == rows[1]["rank_sum_total"],
    }
    out_file = Path(__file__).resolve().parent / "predictors-smollm2.json"
    out_file.write_text(json.dumps(summary, indent=2) + "\n", "utf-8")
    print(f"gradient pass / forward-only pass: {ratio:.1f}x ({tokens:.0f} tokens per example)")
    print(f"wrote {out_file.name}")


if __name__ == "__main__":
    main()
