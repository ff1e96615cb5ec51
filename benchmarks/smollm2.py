"""SmolLM2-135M-Instruct on this machine: gradient cost per response, and peak RSS against the budget.

Part 1, seconds per response (each method in a fresh child process, same examples, same batches):

* ``floor`` -- one plain batched forward + backward of the summed loss per batch (what any
  training step costs; parameter gradients on, nothing per example);
* ``fast``  -- the service's per-example projected gradients (full space, d = 512);
* ``exact`` -- the reference path: batch-1 backward per example, the flat gradient, and the dense
  seeded Rademacher projection (generated anew for each batch, as released).

The examples are real GSM8K worked solutions in the student formatting; batches are length-sorted
and sized by one memory budget for ``floor`` and ``fast`` alike.

Part 2, ``grace rank`` under ``/usr/bin/time -v`` at budgets of 2, 4, 6 and 12 GB: 16 GSM8K prompts,
m = 2, the three supplied-response candidates of ``grace gsm8k``. Peak RSS, wall time, and whether
the budget was refused up front (with the minimum it named).

    python benchmarks/smollm2.py                   # both parts (~20 min on 2 cores)
    python benchmarks/smollm2.py --part speed      # or --part rss

Needs the converted model: ``grace models smollm2 .grace/models/smollm2`` (the default path here).
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]
GSM8K = ROOT.parent / "shared" / "data" / "gsm8k_test.jsonl"
BUDGETS = (2.0, 4.0, 6.0, 12.0)


def _examples(model_dir: str, n: int) -> list[Any]:
    from grace_engine.models.data import StudentFormat, clean_solution, encode_for_student
    from grace_engine.models.loading import ModelPolicy, load_tokenizer, resolve_model
    from grace_engine.models.tiny_models import gsm8k_records

    policy = ModelPolicy.from_paths([Path(model_dir).parent])
    tok = load_tokenizer(resolve_model(model_dir, policy, field="student"), policy)
    records = gsm8k_records()[:n]
    return [
        encode_for_student(tok, r["question"], clean_solution(r["answer"]), StudentFormat()) for r in records
    ]


def _speed(task: dict[str, Any]) -> dict[str, Any]:
    import torch

    from grace_engine.memory import MemoryBudget, resident_bytes
    from grace_engine.models.batches import collate
    from grace_engine.models.data import length_batches
    from grace_engine.models.loading import ModelPolicy, load_causal_lm, resolve_model
    from grace_engine.science.gradient_space import GradientSpace
    from grace_engine.science.gradients import compute_gradients, make_gradient_computer, per_example_losses

    torch.set_num_threads(task["threads"])
    policy = ModelPolicy.from_paths([Path(task["model"]).parent])
    model = load_causal_lm(resolve_model(task["model"], policy, field="student"), policy)
    examples = _examples(task["model"], task["n"])
    budget = MemoryBudget.from_gb(task["budget"])
    fast = make_gradient_computer(model, space=GradientSpace(), d=512, path="fast")
    plan = budget.plan(resident_bytes([model]), fast.cost(), stage="gradient")
    method = task["method"]
    lengths = [len(e.input_ids) for e in examples]
    t0 = time.perf_counter()
    if method == "floor":
        model.requires_grad_(True)
        for idx in length_batches(lengths, max_batch=64, fits=plan.fits):
            batch = collate([examples[i] for i in idx], 0)
            logits = model(
                input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False
            ).logits
            per_example_losses(logits, batch.labels)[0].sum().backward()
            model.zero_grad(set_to_none=True)
    elif method == "fast":
        compute_gradients(model, fast, examples, pad_id=0, plan=plan)
    else:
        exact = make_gradient_computer(model, space=GradientSpace(), d=512, path="exact")
        exact_plan = budget.plan(resident_bytes([model]), exact.cost(), stage="gradient")
        t0 = time.perf_counter()  # the probe is not part of the per-response cost
        compute_gradients(model, exact, examples, pad_id=0, plan=exact_plan)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    n_batches = len(length_batches(lengths, max_batch=64, fits=plan.fits))
    return {
        "s_per_response": seconds / len(examples),
        "examples": len(examples),
        "tokens_mean": sum(lengths) / len(lengths),
        "batches": n_batches,
        "peak_rss_gb": peak / 1e9,
    }


def _in_child(task: dict[str, Any]) -> dict[str, Any]:
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(_speed, (task,))


def _rank_under(budget: float, model: str, work: Path) -> dict[str, Any]:
    grace = str(ROOT / ".venv" / "bin" / "grace")
    data = work / "gsm8k16"
    if not (data / "candidates.json").exists():
        source = ["--source", str(GSM8K)] if GSM8K.is_file() else []
        subprocess.run([grace, "gsm8k", str(data), "-n", "16", *source], check=True, capture_output=True)
    out = work / f"result-{budget:g}.json"
    cmd = [
        "/usr/bin/time", "-v", grace, "rank", "--student", model, "--prompts", str(data / "prompts.jsonl"),
        "--candidates", str(data / "candidates.json"), "-m", "2", "--memory-budget", f"{budget:g}",
        "--quiet", "--out", str(out), "--model-root", str(Path(model).parent),
    ]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))  # type: ignore[union-attr]
    row: dict[str, Any] = {"budget_gb": budget, "peak_rss_gb": rss_kb * 1024 / 1e9, "wall_s": wall}
    if proc.returncode == 0:
        result = json.loads(out.read_text())
        row["ranking"] = [r["name"] for r in result["ranking"]]
        row["warnings"] = [w["code"] for w in result["warnings"]]
    else:
        row["refused"] = next(
            (line for line in proc.stderr.splitlines() if "grace: error" in line), proc.stderr[-300:]
        )
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=str(ROOT / ".grace" / "models" / "smollm2"))
    parser.add_argument("--part", choices=["speed", "rss", "all"], default="all")
    parser.add_argument("--examples", type=int, default=32, help="responses timed per method (32)")
    parser.add_argument("--exact-examples", type=int, default=2, help="responses timed on the exact path (2)")
    parser.add_argument("--budget", type=float, default=6.0, help="budget for the speed part (6 GB)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", default="floor,fast,exact", help="speed part: which methods (all three)")
    args = parser.parse_args(argv)
    if not (Path(args.model) / "config.json").is_file():
        print(f"no model at {args.model}; run: grace models smollm2 {args.model}", file=sys.stderr)
        return 2
    out: dict[str, Any] = {"model": args.model, "threads": args.threads}
    if args.part in ("speed", "all"):
        speed = {}
        for method in args.methods.split(","):
            n = args.exact_examples if method == "exact" else args.examples
            task = {
                "model": args.model,
                "method": method,
                "n": n,
                "budget": args.budget,
                "threads": args.threads,
            }
            speed[method] = _in_child(task)
            print(
                f"{method:<6} {speed[method]['s_per_response']:.3f} s/response  {speed[method]}", flush=True
            )
        for a, b in (("fast", "floor"), ("exact", "fast")):
            if a in speed and b in speed:
                speed[f"{a}_over_{b}"] = speed[a]["s_per_response"] / speed[b]["s_per_response"]
                print(f"{a}/{b} {speed[f'{a}_over_{b}']:.2f}", flush=True)
        out["speed"] = speed
    if args.part in ("rss", "all"):
        with tempfile.TemporaryDirectory() as tmp:
            rows = []
            for budget in BUDGETS:
                rows.append(_rank_under(budget, args.model, Path(tmp)))
                print(json.dumps(rows[-1]), flush=True)
        out["rss"] = rows
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
