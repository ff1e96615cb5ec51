"""``grace validate``: distil the student on each candidate's responses and check the ranking."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from grace_cli.flags import add_model_flags, from_args
from grace_jobs.requests import ScoringIn, ValidationSettingsIn


def add_parser(sub: Any) -> None:
    from grace_cli.main import _add_memory_budget

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
    add_model_flags(val, ValidationSettingsIn)  # --distill-* (and --method, --epochs, --steps, --lr)
    add_model_flags(val, ScoringIn)
    val.add_argument("--model-root", type=Path, action="append", default=[])
    val.add_argument("--response-cache", type=Path, help="directory keeping generated responses")
    _add_memory_budget(val)
    val.add_argument("--out", type=Path, help="write the full result as JSON here")
    val.add_argument("--quiet", "-q", action="store_true", help="no progress bars")


def cmd_validate(args: argparse.Namespace) -> int:
    from grace_cli.main import _budget, _local_policy, _model_process, _set_threads
    from grace_cli.report import ProgressBars, format_validation
    from grace_engine.models.candidates import read_candidates
    from grace_engine.models.data import read_prompts, read_references
    from grace_engine.pipelines.context import EngineContext
    from grace_engine.pipelines.validation import (
        ValidationInputs,
        ValidationSpec,
        run_validation,
    )
    from grace_engine.stores.response_store import DirectoryResponseStore

    validation = from_args(args, ValidationSettingsIn, field="validation").to_validation()
    config = from_args(args, ScoringIn, field="scoring").to_engine()
    _model_process()
    _set_threads(None)
    bars = ProgressBars(enabled=not args.quiet)
    try:
        result = run_validation(
            ValidationInputs(
                read_prompts(args.prompts),
                read_candidates(args.candidates),
                args.student,
                eval_set=read_references(args.eval, field="eval"),
            ),
            ValidationSpec(scoring=config, validation=validation),
            EngineContext(
                policy=_local_policy(args),
                responses=DirectoryResponseStore(args.response_cache) if args.response_cache else None,
                budget=_budget(args),
                progress=bars.update,
            ),
        )
    finally:
        bars.close()
    data = result.to_dict()
    print(format_validation(data))
    if args.out is not None:
        args.out.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", "utf-8")
        print(f"wrote {args.out}")
    return 0
