"""The ``grace`` command line: local scoring (``grace rank``, ``validate``, ``influence``), the
service (``serve``, ``worker``, ``migrate``, ``keys``) and its clients (``submit``, ``jobs``,
``datasets``, ``leaderboard``, on :mod:`grace_client`).

Bad input ends with one line on stderr, ``grace: error: <field>: <message>``, and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from grace_cli.flags import add_form_option, add_model_flags, from_args
from grace_cli.gsm8k import add_parser as add_gsm8k_parser
from grace_cli.gsm8k import cmd_gsm8k
from grace_cli.models_cmd import add_parser as add_models_parser
from grace_cli.models_cmd import cmd_models
from grace_cli.service_cmd import add_parsers as add_service_parsers
from grace_cli.service_cmd import (
    add_service_options,
    cmd_datasets,
    cmd_jobs,
    cmd_leaderboard,
    cmd_submit,
)
from grace_cli.validate import add_parser as add_validate_parser
from grace_cli.validate import cmd_validate
from grace_client import GraceAPIError, __version__
from grace_engine.errors import GraceError
from grace_jobs.requests import InfluenceSettingsIn, ScoringIn

if TYPE_CHECKING:
    from grace_engine.memory import MemoryBudget
    from grace_engine.models.loading import ModelPolicy

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C
EXIT_BAD_INPUT = 2


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _add_memory_budget(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--memory-budget",
        type=float,  # MemoryBudget.from_gb checks it, for the flag and the setting alike
        metavar="GB",
        help="peak memory every stage sizes its batches from (default: GRACE_MEMORY_BUDGET_GB, else "
        "half the machine's memory, at most 8 GB); results do not depend on it",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grace", description="Rank candidate teachers for distilling a student, by the GRACE score."
    )
    parser.add_argument("--version", action="version", version=f"grace {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    tiny = sub.add_parser("tiny-models", help="build the offline tiny student and teachers into DIR")
    tiny.add_argument("dir", type=Path, metavar="DIR")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument(
        "--steps", type=_positive_int, default=300, help="training steps per teacher (default 300)"
    )

    add_models_parser(sub)
    add_gsm8k_parser(sub)

    rank = sub.add_parser("rank", help="score candidate teachers for a student and print the ranking")
    rank.add_argument("--student", required=True, help="student model directory (or an allowed hub id)")
    rank.add_argument("--candidates", required=True, type=Path, help="JSON file: list of candidates")
    rank.add_argument(
        "--prompts", required=True, type=Path, help="JSONL file: {id, prompt|question, answer?}"
    )
    add_model_flags(rank, ScoringIn)
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
    rank.add_argument(
        "--device", default="cpu", help="torch device for the student and teachers (cuda on a GPU)"
    )
    _add_memory_budget(rank)
    rank.add_argument("--out", type=Path, help="write the full result as JSON here")
    rank.add_argument("--quiet", "-q", action="store_true", help="no progress bars")

    serve = sub.add_parser(
        "serve", help="run the HTTP API (embedded default when no database/Redis is configured)"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--log-level", default="info")

    worker = sub.add_parser(
        "worker", help="run a queue worker (needs GRACE_DATABASE_URL and GRACE_REDIS_URL)"
    )
    worker.add_argument(
        "--threads", type=_positive_int, help="torch threads (default: every CPU this process may use)"
    )

    migrate = sub.add_parser("migrate", help="bring the database schema to the latest revision (Alembic)")
    migrate.add_argument("--revision", default="head", help="target revision (default head)")
    migrate.add_argument("--downgrade", action="store_true", help="move down to --revision (e.g. base)")

    keys = sub.add_parser("keys", help="manage API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = keys_sub.add_parser("create", help="create a key for a tenant and print it once")
    create.add_argument("--tenant", required=True)
    listed = keys_sub.add_parser("list", help="a tenant's keys (their prefixes; keys are stored as hashes)")
    listed.add_argument("--tenant", required=True)
    revoke = keys_sub.add_parser("revoke", help="revoke a key, named by its prefix (as `keys list` shows)")
    revoke.add_argument("prefix")
    secret = keys_sub.add_parser(
        "webhook-secret", help="create or rotate a tenant's webhook signing secret and print it once"
    )
    secret.add_argument("--tenant", required=True)

    scaling = sub.add_parser("scaling", help="the distillation scaling law (Busbridge et al. 2025)")
    scaling_sub = scaling.add_subparsers(dest="scaling_command", required=True, metavar="ACTION")
    predict = scaling_sub.add_parser("predict", help="student loss after distillation from a given teacher")
    predict.add_argument("--n-student", type=float, required=True, help="student non-embedding parameters")
    predict.add_argument("--student-tokens", type=float, required=True)
    predict.add_argument("--teacher-loss", type=float, help="teacher loss (nats/token)")
    predict.add_argument("--teacher-params", type=float, help="or: teacher size ...")
    predict.add_argument("--teacher-tokens", type=float, help="... and its pretraining tokens")
    predict.add_argument(
        "--coefficients", type=json.loads, help="JSON object replacing defaults, e.g. '{\"E\": 1.3}'"
    )
    plan = scaling_sub.add_parser("plan", help="compute-optimal distillation vs supervised training")
    plan.add_argument("--n-student", type=float, required=True)
    plan.add_argument("--compute", type=float, required=True, help="total FLOPs")
    plan.add_argument(
        "--scenario",
        action="append",
        choices=[
            "best_case",
            "teacher_inference",
            "teacher_pretraining",
            "teacher_pretraining_and_inference",
        ],
        help="repeatable; default all four",
    )
    plan.add_argument("--coefficients", type=json.loads)

    infl = sub.add_parser("influence", help="per-response distillation influence on a validation set")
    infl.add_argument("--student", required=True)
    infl.add_argument("--candidates", required=True, type=Path)
    infl.add_argument("--prompts", required=True, type=Path)
    infl.add_argument(
        "--validation",
        required=True,
        type=Path,
        help="JSONL of {prompt|question, solution|answer} reference solutions",
    )
    add_model_flags(infl, InfluenceSettingsIn)
    add_model_flags(infl, ScoringIn)  # m, d ("auto": 2048), the gradient space, seed, student format
    infl.add_argument("--model-root", type=Path, action="append", default=[])
    _add_memory_budget(infl)
    infl.add_argument("--out", type=Path, help="write the full result as JSON here")
    infl.add_argument("--quiet", "-q", action="store_true", help="no progress bars")

    add_validate_parser(sub)

    export = sub.add_parser(
        "export",
        help="write the mixed-teacher dataset of a result (rank/validate/influence --out) as JSONL for SFT",
    )
    export.add_argument("result", type=Path, help="the JSON a --out wrote")
    add_form_option(export)
    export.add_argument("--out", type=Path, required=True, help="JSONL file to write")
    submit = sub.add_parser("submit", help="submit a scoring job to a running service and print the ranking")
    add_service_options(submit)
    submit.add_argument("--student", required=True, help="student model, as the service's model roots see it")
    submit.add_argument("--candidates", required=True, type=Path)
    source = submit.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompts", type=Path, help="a JSONL prompt file, sent with the job")
    source.add_argument("--dataset-id", help="a dataset stored on the service (grace datasets upload)")
    submit.add_argument("--webhook", metavar="URL", help="POST the job's end here, signed (README: Webhooks)")
    add_model_flags(submit, ScoringIn)
    submit.add_argument("--idempotency-key")
    submit.add_argument("--quiet", "-q", action="store_true")
    board = sub.add_parser(
        "leaderboard", help="every candidate you scored for a student on one prompt set, ranked together"
    )
    add_service_options(board)
    board.add_argument("--student", required=True)
    board.add_argument("--dataset", required=True, help="a dataset id, or a job's prompt_set")
    board.add_argument("--comparison", help="a configuration's key (default: the latest job's)")
    board.add_argument("--limit", type=_positive_int, default=50)
    board.add_argument(
        "--max-params", type=_positive_int, metavar="N", help="name the best of at most N params"
    )
    add_service_parsers(sub)
    return parser


def _model_process() -> None:
    """Set up a process that runs models, once its imports are done: transformers' logging quiet,
    and the imported modules' objects out of the garbage collector's way (memory.freeze_imports)."""
    from transformers.utils import logging

    from grace_engine.memory import freeze_imports

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    freeze_imports()


def _set_threads(threads: int | None, *, spare: int = 0) -> None:
    """torch's threads: ``threads``, else the CPUs this process may use less ``spare`` (at least 1)."""
    import torch

    from grace_engine.memory import available_cpus

    torch.set_num_threads(threads or max(1, available_cpus() - spare))


def cmd_tiny_models(args: argparse.Namespace) -> int:
    from grace_cli.report import ProgressBars
    from grace_engine.models.tiny_models import build_tiny_models

    _model_process()
    _set_threads(None)
    bars = ProgressBars()
    try:
        built = build_tiny_models(
            args.dir,
            seed=args.seed,
            steps=args.steps,
            log=lambda m: print(m, file=sys.stderr),
            progress=bars.update,
        )
    finally:
        bars.close()
    print(f"built in {built.seconds:.1f} s: {built.root}")
    print(f"  student     {built.student}")
    for name, path in built.teachers.items():
        print(f"  teacher     {path}  ({name})")
    print(f"  candidates  {built.candidates_file}")
    print(f"  prompts     {built.prompts_file}")
    print(f"  eval        {built.eval_file}")
    return 0


def _local_policy(args: argparse.Namespace) -> ModelPolicy:
    """Where `grace rank` and `grace influence` may load models: --model-root, else
    GRACE_MODEL_ROOTS, else the working directory, the candidate file's and the student's parent."""
    from grace_engine.models.loading import ModelPolicy
    from grace_infra.settings import split_list

    roots = list(args.model_root)
    if not roots and os.environ.get("GRACE_MODEL_ROOTS"):
        roots = [Path(r) for r in split_list(os.environ["GRACE_MODEL_ROOTS"])]
    if not roots:
        roots = [Path.cwd(), args.candidates.parent, Path(args.student).expanduser().parent]
    return ModelPolicy.from_paths(roots, getattr(args, "allow_hub_id", []))


def _budget(args: argparse.Namespace) -> MemoryBudget:
    """--memory-budget, else GRACE_MEMORY_BUDGET_GB, else the engine's default."""
    from grace_engine.memory import MemoryBudget

    if args.memory_budget is not None:
        return MemoryBudget.from_gb(args.memory_budget)
    env = os.environ.get("GRACE_MEMORY_BUDGET_GB")
    if env:
        try:
            return MemoryBudget.from_gb(float(env))
        except ValueError as exc:
            raise GraceError(f"not a number: {env!r}", field="GRACE_MEMORY_BUDGET_GB") from exc
    return MemoryBudget()


def cmd_rank(args: argparse.Namespace) -> int:
    from grace_cli.report import ProgressBars, format_table
    from grace_engine.models.candidates import read_candidates
    from grace_engine.models.data import read_prompts
    from grace_engine.models.loading import ModelCache
    from grace_engine.pipelines.context import EngineContext, JobInputs
    from grace_engine.pipelines.scoring import rank_teachers
    from grace_engine.stores.response_store import DirectoryResponseStore

    config = from_args(args, ScoringIn, field="scoring").to_engine()  # settings first, then files
    _model_process()
    _set_threads(args.threads)
    prompts = read_prompts(args.prompts)
    candidates = read_candidates(args.candidates)
    policy = _local_policy(args)
    bars = ProgressBars(enabled=not args.quiet)
    try:
        result = rank_teachers(
            JobInputs(prompts, candidates, args.student),
            config,
            EngineContext(
                policy=policy,
                models=ModelCache(policy, device=args.device),
                responses=DirectoryResponseStore(args.response_cache) if args.response_cache else None,
                budget=_budget(args),
                progress=bars.update,
            ),
        )
    finally:
        bars.close()
    print(format_table(result))
    if args.out is not None:
        args.out.write_text(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n", "utf-8")
        print(f"wrote {args.out}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.main import create_app
    from grace_infra import logs
    from grace_infra.settings import Settings

    settings = Settings()
    if settings.api_processes > 1 and settings.embedded:
        raise SystemExit(
            "GRACE_API_PROCESSES > 1 needs GRACE_DATABASE_URL and GRACE_REDIS_URL: the embedded default "
            "runs its worker inside its one API process"
        )
    logs.configure(settings.log_format)
    if settings.embedded:
        # The embedded worker thread runs models in this process: leave the API a core, or a
        # running job starves request handling (and the database) and polls take seconds. A
        # production API process loads no model code at all.
        _model_process()
        _set_threads(None, spare=1)
    # log_config=None: uvicorn's records go through the process's one handler (grace_infra.logs);
    # access lines come from app.request_ids, with the request's id.
    uvicorn.run(
        create_app(settings) if settings.api_processes == 1 else "app.main:create_served_app",
        factory=settings.api_processes > 1,
        workers=settings.api_processes,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        log_config=None,
        access_log=False,
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from grace_infra import logs
    from grace_infra.settings import Settings
    from workers.main import run_worker

    settings = Settings()
    logs.configure(settings.log_format)
    _model_process()
    _set_threads(args.threads)
    run_worker(settings)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from grace_infra.db.migrate import downgrade, upgrade
    from grace_infra.settings import Settings

    settings = Settings()
    if settings.sqlalchemy_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    (downgrade if args.downgrade else upgrade)(settings.sqlalchemy_url, args.revision)
    print(f"database at {'revision ' + args.revision if args.downgrade else 'head'}")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import OperationalError

    from grace_infra.db.migrate import current_revision, head_revision
    from grace_infra.db.session import make_engine, make_session_factory
    from grace_infra.settings import Settings
    from grace_jobs import tenants

    settings = Settings()
    if settings.sqlalchemy_url.startswith("sqlite") and not settings.data_dir.is_dir():
        raise GraceError(
            f"no database in {settings.data_dir} yet: run `grace migrate` first", field="database"
        )
    engine = make_engine(settings)
    try:
        try:
            found = current_revision(engine)
        except OperationalError as exc:
            raise GraceError(f"cannot reach the database: {exc.orig}", field="database") from exc
        if found != head_revision(settings.sqlalchemy_url):
            at = "empty" if found is None else f"at revision {found}"
            raise GraceError(
                f"the database is {at}, not at this version's schema: run `grace migrate` first",
                field="database",
            )
        with make_session_factory(engine)() as session:
            if args.keys_command == "create":
                print(tenants.create_key(session=session, tenant_name=args.tenant))
                print(
                    f"API key for tenant {args.tenant!r}; shown once, stored only as a hash.", file=sys.stderr
                )
            elif args.keys_command == "list":
                for key in tenants.list_keys(session=session, tenant_name=args.tenant):
                    state = "active" if key.revoked_at is None else f"revoked {key.revoked_at:%Y-%m-%d %H:%M}"
                    print(f"{key.prefix}...  created {key.created_at:%Y-%m-%d %H:%M}  {state}")
            elif args.keys_command == "revoke":
                tenants.revoke_key(session=session, prefix=args.prefix)
                print(f"revoked {args.prefix}...", file=sys.stderr)
            else:
                tenant = tenants.get_or_create_tenant(session=session, name=args.tenant)
                overlap = settings.webhook_rotation_overlap
                print(tenants.rotate_webhook_secret(session=session, tenant=tenant, overlap=overlap))
                until = tenant.webhook_secret_previous_until
                print(
                    f"webhook signing secret for tenant {args.tenant!r}; shown once. Deliveries are "
                    "signed with it from now on"
                    + (
                        f", and with the previous one too until {until:%Y-%m-%d %H:%M} UTC." if until else "."
                    ),
                    file=sys.stderr,
                )
    finally:
        engine.dispose()
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from collections import Counter

    from grace_engine.models.data import StudentFormat
    from grace_engine.science.mixture import MixedExample, sft_jsonl

    try:
        data = json.loads(args.result.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise GraceError(f"cannot read {args.result}: {exc}", field="result") from exc
    rows = data.get("mixed") if isinstance(data, dict) else None
    if not rows:
        raise GraceError(
            f"{args.result} has no mixed dataset: write it with grace rank/validate/influence --out "
            "(routing by GRACE needs a gradient predictor)",
            field="result",
        )
    # rank and influence write the scoring config as "config", validate in its protocol
    config = data.get("config") or data.get("protocol", {}).get("scoring")
    if not config:
        raise GraceError(f"{args.result} does not say how its texts were scored (no config)", field="result")
    examples = [MixedExample(**r) for r in rows]
    text = sft_jsonl(
        examples,
        args.format,
        student_format=StudentFormat(config["student_format"]["template"]),
        instruction=config["instruction"],
    )
    args.out.write_text(text, "utf-8")
    counts = Counter(e.teacher for e in examples)
    share = ", ".join(f"{t} {n}" for t, n in counts.most_common())
    print(
        f"wrote {len(examples)} {args.format} examples to {args.out} (routed by {examples[0].route}: {share})"
    )
    return 0


def cmd_scaling(args: argparse.Namespace) -> int:
    from grace_engine.science import scaling

    k = scaling.Coefficients.resolve(args.coefficients)
    if args.scaling_command == "predict":
        if args.teacher_loss is None and (args.teacher_params is None or args.teacher_tokens is None):
            raise GraceError("give --teacher-loss, or --teacher-params and --teacher-tokens", field="teacher")
        lt = args.teacher_loss or scaling.supervised_loss(args.teacher_params, args.teacher_tokens, k)
        student = scaling.student_loss(args.n_student, args.student_tokens, lt, k)
        alone = scaling.supervised_loss(args.n_student, args.student_tokens, k)
        print(f"teacher loss              {lt:.4f}")
        print(f"distilled student loss    {student:.4f}")
        verdict = "helps" if student < alone else "does not help"
        print(f"supervised (same tokens)  {alone:.4f}  -> distillation {verdict}")
    else:
        print(
            f"{'scenario':<34}{'student L':>10}{'tokens':>11}{'teacher L':>10}{'N_T':>10}{'D_T':>10}"
            f"{'supervised':>11}  wins"
        )
        for name in args.scenario or list(scaling.SCENARIOS):
            p = scaling.plan(args.n_student, args.compute, name, k)
            n_t = "free" if p.teacher_params is None else f"{p.teacher_params:.3g}"
            d_t = "free" if p.teacher_tokens is None else f"{p.teacher_tokens:.3g}"
            print(
                f"{name:<34}{p.student_loss:>10.4f}{p.student_tokens:>11.3g}{p.teacher_loss:>10.4f}"
                f"{n_t:>10}{d_t:>10}{p.supervised_loss:>11.4f}  {p.distillation_wins}"
            )
    print(f"coefficients: {scaling.COEFFICIENT_SOURCE}", file=sys.stderr)
    return 0


def cmd_influence(args: argparse.Namespace) -> int:
    from grace_cli.report import ProgressBars
    from grace_engine.models.candidates import read_candidates
    from grace_engine.models.data import read_prompts, read_references
    from grace_engine.pipelines.context import EngineContext
    from grace_engine.pipelines.influence import InfluenceInputs, InfluenceSpec, run_influence

    chosen = from_args(args, InfluenceSettingsIn, field="influence")
    scoring = from_args(args, ScoringIn, field="scoring").to_engine()
    _model_process()
    _set_threads(None)
    bars = ProgressBars(enabled=not args.quiet)
    try:
        result = run_influence(
            InfluenceInputs(
                read_prompts(args.prompts),
                read_candidates(args.candidates),
                args.student,
                reference=read_references(args.validation),
            ),
            InfluenceSpec(scoring=scoring, method=chosen.method),
            EngineContext(policy=_local_policy(args), budget=_budget(args), progress=bars.update),
        )
    finally:
        bars.close()
    print(f"validation loss {result.validation_loss:.4f} ({result.method})")
    print(f"{'candidate':<16}{'mean influence':>16}{'helpful':>10}{'responses':>11}")
    for c in result.per_candidate():
        print(f"{c.candidate:<16}{c.mean:>16.4g}{c.share_positive:>10.0%}{c.n_responses:>11}")
    kept = result.select(keep_fraction=chosen.keep_fraction, drop_negative=chosen.drop_negative)
    print(
        f"kept {len(kept)} of {len(result.responses)} responses ("
        + ("positive influence" if chosen.drop_negative else "any influence")
        + (f", top {chosen.keep_fraction:.0%})" if chosen.keep_fraction else ")")
    )
    if args.out is not None:
        data = result.to_dict()
        data["selected"] = [vars(r) for r in kept]
        data["config"] = asdict(scoring)
        args.out.write_text(json.dumps(data, indent=2) + "\n", "utf-8")
        print(f"wrote {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {
        "tiny-models": cmd_tiny_models,
        "models": cmd_models,
        "gsm8k": cmd_gsm8k,
        "rank": cmd_rank,
        "serve": cmd_serve,
        "worker": cmd_worker,
        "migrate": cmd_migrate,
        "keys": cmd_keys,
        "submit": cmd_submit,
        "jobs": cmd_jobs,
        "datasets": cmd_datasets,
        "export": cmd_export,
        "leaderboard": cmd_leaderboard,
        "scaling": cmd_scaling,
        "influence": cmd_influence,
        "validate": cmd_validate,
    }[args.command]
    try:
        return handler(args)
    except (GraceError, GraceAPIError) as err:
        print(f"grace: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as stop:  # Ctrl-C: one line, no traceback, the shell's exit status
        print("grace: interrupted" + (f"; {stop}" if str(stop) else ""), file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
