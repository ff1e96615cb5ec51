"""The ``grace`` command line: ``grace tiny-models DIR`` and ``grace rank ...``.

Bad input ends with one line on stderr, ``grace: error: <field>: <message>``, and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from grace_engine.errors import GraceError

EXIT_BAD_INPUT = 2


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grace", description="Rank candidate teachers for distilling a student, by the GRACE score."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    tiny = sub.add_parser("tiny-models", help="build the offline tiny student and teachers into DIR")
    tiny.add_argument("dir", type=Path, metavar="DIR")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument(
        "--steps", type=_positive_int, default=300, help="training steps per teacher (default 300)"
    )

    rank = sub.add_parser("rank", help="score candidate teachers for a student and print the ranking")
    rank.add_argument("--student", required=True, help="student model directory (or an allowed hub id)")
    rank.add_argument("--candidates", required=True, type=Path, help="JSON file: list of candidates")
    rank.add_argument(
        "--prompts", required=True, type=Path, help="JSONL file: {id, prompt|question, answer?}"
    )
    rank.add_argument("--responses-per-prompt", "-m", type=_positive_int, default=4, help="default 4")
    rank.add_argument("--proj-dim", "-d", type=_positive_int, default=512, help="projection dimension (512)")
    rank.add_argument("--splits", type=_positive_int, default=10, help="cross-validation splits (10)")
    rank.add_argument("--test-fraction", type=float, default=0.1, help="prompts held out per split (0.1)")
    rank.add_argument("--gradient-space", choices=["full", "output_layer", "lora"], default="full")
    rank.add_argument("--path", choices=["fast", "exact"], default="fast", help="gradient path (fast)")
    rank.add_argument("--seed", type=int, default=0, help="projection and sampling seed (0)")
    rank.add_argument(
        "--factor-dim", type=_positive_int, default=64, help="fast path per-layer factor size (64)"
    )
    rank.add_argument(
        "--length-factor", action="store_true", help="scale gradient rows by ln(response length)"
    )
    rank.add_argument("--max-length", type=_positive_int, help="max student tokens per example")
    rank.add_argument(
        "--truncate", action="store_true", help="cut examples above --max-length instead of failing"
    )
    rank.add_argument("--student-template", help="student text before the response; must contain {prompt}")
    rank.add_argument("--response-cache", type=Path, help="directory keeping generated responses for re-use")
    rank.add_argument(
        "--model-root",
        type=Path,
        action="append",
        default=[],
        help="directory models may load from (repeatable; default: GRACE_MODEL_ROOTS, else the "
        "current directory, the candidate file's directory and the student's parent)",
    )
    rank.add_argument(
        "--allow-hub-id", action="append", default=[], help="hub id allowed to load (local cache)"
    )
    rank.add_argument(
        "--threads", type=_positive_int, help="torch threads (default: the CPUs this process may use)"
    )
    rank.add_argument("--out", type=Path, help="write the full result as JSON here")
    rank.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    return parser


def _quiet_transformers() -> None:
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def _set_threads(threads: int | None) -> None:
    import torch

    if threads is None:
        # sched_getaffinity respects cgroup/taskset limits but exists on Linux only.
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(threads)


def cmd_tiny_models(args: argparse.Namespace) -> int:
    from grace_engine.tiny_models import build_tiny_models

    _quiet_transformers()
    _set_threads(None)
    built = build_tiny_models(
        args.dir, seed=args.seed, steps=args.steps, log=lambda m: print(m, file=sys.stderr)
    )
    print(f"built in {built.seconds:.1f} s: {built.root}")
    print(f"  student     {built.student}")
    for name, path in built.teachers.items():
        print(f"  teacher     {path}  ({name})")
    print(f"  candidates  {built.candidates_file}")
    print(f"  prompts     {built.prompts_file}")
    return 0


def cmd_rank(args: argparse.Namespace) -> int:
    from grace_cli.report import ProgressBars, format_table
    from grace_engine.data import StudentFormat, read_prompts
    from grace_engine.generation import read_candidates
    from grace_engine.gradients import GradientSpace
    from grace_engine.models import ModelPolicy
    from grace_engine.pipeline import DirectoryResponseStore, ScoringConfig, rank_teachers

    _quiet_transformers()
    _set_threads(args.threads)
    prompts = read_prompts(args.prompts)
    candidates = read_candidates(args.candidates)
    fmt_kwargs: dict[str, object] = {"max_length": args.max_length, "truncate": args.truncate}
    if args.student_template is not None:
        fmt_kwargs["template"] = args.student_template.replace("\\n", "\n")
    config = ScoringConfig(
        responses_per_prompt=args.responses_per_prompt,
        proj_dim=args.proj_dim,
        n_splits=args.splits,
        test_fraction=args.test_fraction,
        gradient_space=GradientSpace(args.gradient_space),
        path=args.path,
        seed=args.seed,
        factor_dim=args.factor_dim,
        length_factor=args.length_factor,
        student_format=StudentFormat(**fmt_kwargs),  # type: ignore[arg-type]
    )
    roots = list(args.model_root)
    if not roots and os.environ.get("GRACE_MODEL_ROOTS"):
        roots = [Path(r) for r in os.environ["GRACE_MODEL_ROOTS"].split(os.pathsep) if r]
    if not roots:
        roots = [Path.cwd(), args.candidates.parent, Path(args.student).expanduser().parent]
    policy = ModelPolicy.from_paths(roots, args.allow_hub_id)
    bars = ProgressBars(enabled=not args.quiet)
    try:
        result = rank_teachers(
            prompts,
            candidates,
            args.student,
            policy=policy,
            config=config,
            responses=DirectoryResponseStore(args.response_cache) if args.response_cache else None,
            progress=bars.update,
        )
    finally:
        bars.close()
    print(format_table(result))
    if args.out is not None:
        args.out.write_text(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n", "utf-8")
        print(f"wrote {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"tiny-models": cmd_tiny_models, "rank": cmd_rank}[args.command]
    try:
        return handler(args)
    except GraceError as err:
        print(f"grace: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
