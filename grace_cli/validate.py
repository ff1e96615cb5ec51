"""``grace validate``: distil the student on each candidate's responses and check the ranking."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def add_parser(sub: Any) -> None:
    from grace_cli.main import _add_memory_budget, _positive_int, proj_dim_arg

    val = sub.add_parser(
        "validate",
        help="distil the student on each candidate's responses, evaluate it, and correlate the scores",
        description="Ground truth for a ranking: score the candidates (GRACE and baselines), distil a "
        "fresh copy of the student on each candidate's responses, evaluate it on held-out problems, "
        "and report how well each score predicted the outcome (Spearman, Kendall, regret).",
    )
    val.add_argument("--student", required=True, help="student model directory (or an allowed hub id)")
    val.add_argument("--candidates", required=True, type=Path, help="JSON file: list of candidates")
    val.add_argument(
        "--prompts", required=True, type=Path, help="JSONL: training prompts {id, prompt, answer?}"
    )
    val.add_argument(
        "--eval",
        required=True,
        type=Path,
        metavar="FILE",
        help="JSONL of held-out {prompt|question, solution|answer, answer?} (GSM8K lines work as they are)",
    )
    val.add_argument("--method", choices=["lora", "full"], default="lora", help="fine-tuning method (lora)")
    steps = val.add_mutually_exclusive_group()
    # None: the engine's defaults (DistillConfig, ValidationConfig), read only when the command runs.
    steps.add_argument("--epochs", type=_positive_float, help="passes over the responses (default 3)")
    steps.add_argument("--steps", type=_positive_int, help="optimizer steps (replaces --epochs)")
    val.add_argument("--batch-size", type=_positive_int, default=8, help="effective batch (8)")
    val.add_argument("--lr", type=_positive_float, help="learning rate (default: 1e-3 LoRA, 1e-4 full)")
    val.add_argument("--lora-rank", type=_positive_int, default=16)
    val.add_argument(
        "--train-seeds",
        type=int,
        nargs="+",
        help="one distilled student per seed (default 0 1 2: the spread between seeds is measured)",
    )
    val.add_argument("--outcome", choices=["eval_nll", "accuracy"], default="eval_nll")
    val.add_argument("--no-accuracy", action="store_true", help="skip greedy decoding of the eval set")
    val.add_argument("--eval-max-tokens", type=_positive_int, default=256, help="greedy decode length (256)")
    val.add_argument("--responses-per-prompt", "-m", type=_positive_int, default=4, help="default 4")
    val.add_argument("--proj-dim", "-d", type=proj_dim_arg, default="auto")
    val.add_argument(
        "--mixed",
        action="store_true",
        help="also distil on the mixed-teacher set routed by per-prompt GRACE (one more candidate)",
    )
    val.add_argument("--splits", type=_positive_int, default=10)
    val.add_argument("--gradient-space", choices=["full", "output_layer", "lora"], default="full")
    val.add_argument("--seed", type=int, default=0, help="projection and sampling seed (0)")
    val.add_argument("--model-root", type=Path, action="append", default=[])
    val.add_argument("--response-cache", type=Path, help="directory keeping generated responses")
    _add_memory_budget(val)
    val.add_argument("--out", type=Path, help="write the full result as JSON here")
    val.add_argument("--quiet", "-q", action="store_true", help="no progress bars")


def cmd_validate(args: argparse.Namespace) -> int:
    from grace_cli.main import _budget, _local_policy, _model_process, _set_threads
    from grace_cli.report import ProgressBars, format_validation
    from grace_engine.config import ScoringConfig
    from grace_engine.data import read_prompts, read_validation
    from grace_engine.distillation import DistillConfig
    from grace_engine.generation import read_candidates
    from grace_engine.gradients import GradientSpace
    from grace_engine.responses import DirectoryResponseStore
    from grace_engine.validation import ValidationConfig, run_validation

    _model_process()
    _set_threads(None)
    defaults = ValidationConfig()
    validation = ValidationConfig(
        distill=DistillConfig(
            method=args.method,
            epochs=defaults.distill.epochs if args.epochs is None else args.epochs,
            max_steps=args.steps,
            batch_size=args.batch_size,
            learning_rate=args.lr,
            lora_rank=args.lora_rank,
        ),
        train_seeds=defaults.train_seeds if args.train_seeds is None else tuple(args.train_seeds),
        outcome=args.outcome,
        accuracy=not args.no_accuracy,
        eval_max_tokens=args.eval_max_tokens,
        mixed=args.mixed,
    )
    config = ScoringConfig(
        responses_per_prompt=args.responses_per_prompt,
        proj_dim=args.proj_dim,
        n_splits=args.splits,
        gradient_space=GradientSpace(args.gradient_space),
        seed=args.seed,
    )
    bars = ProgressBars(enabled=not args.quiet)
    try:
        result = run_validation(
            read_prompts(args.prompts),
            read_candidates(args.candidates),
            args.student,
            read_validation(args.eval, field="eval"),
            policy=_local_policy(args),
            config=config,
            validation=validation,
            responses=DirectoryResponseStore(args.response_cache) if args.response_cache else None,
            progress=bars.update,
            budget=_budget(args),
        )
    finally:
        bars.close()
    data = result.to_dict()
    print(format_validation(data))
    if args.out is not None:
        args.out.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", "utf-8")
        print(f"wrote {args.out}")
    return 0
