"""The ``grace`` commands that talk to a running service, a thin shell on :mod:`grace_client`:
``submit``, ``leaderboard``, ``jobs list|show|cancel|wait`` and ``datasets upload|list|delete``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from grace_cli.flags import add_form_option, given
from grace_cli.report import ProgressBars, format_guidance, format_ranking, format_warnings
from grace_client import Client, RetryPolicy
from grace_engine.errors import GraceError
from grace_engine.progress import ProgressEvent
from grace_jobs.requests import ScoringIn

STATUSES = ["queued", "running", "cancelling", "succeeded", "failed", "cancelled"]


def add_service_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", default=os.environ.get("GRACE_URL", "http://127.0.0.1:8000"), help="default: GRACE_URL"
    )
    parser.add_argument("--api-key", default=os.environ.get("GRACE_API_KEY"), help="default: GRACE_API_KEY")
    parser.add_argument(
        "--retry-for",
        type=float,
        default=float(os.environ.get("GRACE_RETRY_FOR", "15")),
        metavar="SECONDS",
        help="keep retrying a 503, a 429 or an unreachable service this long; 0: never "
        "(default: GRACE_RETRY_FOR, else 15)",
    )


def client_for(args: argparse.Namespace) -> Client:
    # Shorter than the library's two minutes: at a terminal, a wrong --url should not look like a hang.
    return Client(args.url, args.api_key, retry=RetryPolicy(max_seconds=args.retry_for))


def add_parsers(sub: Any) -> None:
    jobs = sub.add_parser("jobs", help="your jobs on a running service")
    jobs_sub = jobs.add_subparsers(dest="jobs_command", required=True, metavar="ACTION")
    listing = jobs_sub.add_parser("list", help="newest first")
    listing.add_argument("--status", choices=STATUSES)
    listing.add_argument("--student")
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--cursor", help="the next page: the cursor a previous listing printed")
    for name, text in (
        ("show", "a job's status, units and ranking (--json: the whole job)"),
        ("cancel", "cancel a job (running: at its next batch)"),
        ("wait", "follow a job to its end with progress bars; exit 1 unless it succeeded"),
    ):
        action = jobs_sub.add_parser(name, help=text)
        action.add_argument("job_id")
        action.add_argument("--json", action="store_true", help="print the job as JSON")
        if name == "wait":
            action.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    dataset = jobs_sub.add_parser(
        "dataset", help="download a succeeded job's mixed-teacher dataset (JSON lines)"
    )
    dataset.add_argument("job_id")
    add_form_option(dataset)
    dataset.add_argument("--out", type=Path, help="write it here (default: standard output)")
    for action in jobs_sub.choices.values():
        add_service_options(action)

    datasets = sub.add_parser("datasets", help="prompt sets stored on a running service")
    datasets_sub = datasets.add_subparsers(dest="datasets_command", required=True, metavar="ACTION")
    upload = datasets_sub.add_parser("upload", help="upload a JSONL prompt file; prints the dataset id")
    upload.add_argument("prompts", type=Path)
    upload.add_argument("--name")
    datasets_sub.add_parser("list", help="your datasets, newest first")
    delete = datasets_sub.add_parser("delete", help="delete a dataset (refused while a job uses it)")
    delete.add_argument("dataset_id")
    for action in datasets_sub.choices.values():
        add_service_options(action)


def progress_events(job: dict[str, Any]) -> list[ProgressEvent]:
    """The job's per-candidate progress as engine progress events, for the bars."""
    events = []
    for name, stages in (job.get("progress") or {}).get("candidates", {}).items():
        for stage, counts in stages.items():  # in the server's order: generate ... distil
            if counts:
                events.append(ProgressEvent(stage, counts["done"], counts["total"], name))
    return events


class Interrupted(KeyboardInterrupt):
    """Ctrl-C while following a job: the job runs on; the message says how to pick it up."""


def follow(client: Client, job_id: str, *, quiet: bool) -> dict[str, Any]:
    """Wait for the job with progress bars on stderr; the job at its end."""
    bars = ProgressBars(enabled=not quiet, rates=False)

    def show(job: dict[str, Any]) -> None:
        for event in progress_events(job):
            bars.update(event)

    try:
        return client.wait(job_id, on_progress=show)
    except KeyboardInterrupt:
        raise Interrupted(
            f"job {job_id} keeps running on the service: `grace jobs wait {job_id}` follows it again, "
            f"`grace jobs cancel {job_id}` stops it"
        ) from None
    finally:
        bars.close()


def _job_line(job: dict[str, Any]) -> str:
    units = job.get("units") or []
    done = sum(u["status"] == "succeeded" for u in units)
    top = (job.get("ranking") or [{}])[0].get("name", "")
    return (
        f"{job['id']}  {job['kind']:<10} {job['status']:<10} {job.get('stage') or '':<9} "
        f"{done}/{len(units)} units  {job['created_at'][:19]}  {top}"
    )


def _show(job: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(job, indent=2))
        return
    print(_job_line(job))
    for u in job.get("units") or []:
        who = u.get("worker_id") or "-"
        print(
            f"  unit {u['candidate'] or '(whole job)':<20} {u['status']:<10} attempt {u['attempts']}  {who}"
        )
    if job.get("error"):
        print(f"error: {job['error']['code']}: {job['error']['message']}")
    if job.get("ranking"):
        footer = [f"job {job['id']} | student {job['student']}", *format_guidance(job.get("guidance"))]
        print(format_ranking(job["ranking"], footer, uncertainty=job.get("uncertainty")))
    notes = format_warnings(job.get("warnings") or [])
    if notes:
        print(notes)


def cmd_jobs(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        if args.jobs_command == "list":
            page = client.list_jobs(
                status=args.status, student=args.student, limit=args.limit, cursor=args.cursor
            )
            for job in page["data"]:
                print(_job_line(job))
            if page["next_cursor"]:
                print(f"... more: --cursor {page['next_cursor']}", file=sys.stderr)
            return 0
        if args.jobs_command == "show":
            _show(client.get_job(args.job_id), args.json)
            return 0
        if args.jobs_command == "dataset":
            lines = client.get_mixed_dataset(args.job_id, form=args.format)
            if args.out is None:
                sys.stdout.write(lines)
            else:
                args.out.write_text(lines, "utf-8")
                print(f"wrote {len(lines.splitlines())} examples to {args.out}", file=sys.stderr)
            return 0
        if args.jobs_command == "cancel":
            _show(client.cancel_job(args.job_id), args.json)
            return 0
        job = follow(client, args.job_id, quiet=args.quiet)
        _show(job, args.json)
        return 0 if job["status"] == "succeeded" else 1


def cmd_datasets(args: argparse.Namespace) -> int:
    from grace_engine.models.data import read_prompts

    with client_for(args) as client:
        if args.datasets_command == "upload":
            prompts = [
                {"id": p.id, "prompt": p.prompt, "answer": p.answer} for p in read_prompts(args.prompts)
            ]
            made = client.create_dataset(prompts, name=args.name or args.prompts.name)
            print(made["id"])
            print(f"dataset {made['name']!r}: {made['n_prompts']} prompts", file=sys.stderr)
        elif args.datasets_command == "list":
            for d in client.iter_datasets():
                print(f"{d['id']}  {d['n_prompts']:>6} prompts  {d['created_at'][:19]}  {d['name'] or ''}")
        else:
            client.delete_dataset(args.dataset_id)
            print(f"deleted dataset {args.dataset_id}", file=sys.stderr)
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from grace_engine.models.data import read_prompts

    try:
        loaded = json.loads(args.candidates.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise GraceError(f"cannot read {args.candidates}: {exc}", field="candidates") from exc
    job: dict[str, Any] = {
        "student": args.student,
        "candidates": loaded["candidates"] if isinstance(loaded, dict) else loaded,
        "scoring": given(args, ScoringIn),  # what was typed; the service checks it
    }
    if args.dataset_id is not None:
        job["dataset_id"] = args.dataset_id
    else:
        job["prompts"] = [
            {"id": p.id, "prompt": p.prompt, "answer": p.answer} for p in read_prompts(args.prompts)
        ]
    if args.webhook is not None:
        job["webhook"] = {"url": args.webhook}
    with client_for(args) as client:
        job_id = client.create_job(job, idempotency_key=args.idempotency_key)["id"]
        print(f"job {job_id} accepted; following {args.url}/v1/jobs/{job_id}", file=sys.stderr)
        final = follow(client, job_id, quiet=args.quiet)
    if final["status"] != "succeeded":
        error = final.get("error") or {}
        raise GraceError(
            f"job {job_id} {final['status']}: {error.get('code', '')} {error.get('message', '')}".strip()
        )
    footer = [
        f"job {job_id} | student {final['student']} | {final['examples_scored']} responses scored",
        *format_guidance(final.get("guidance")),
    ]
    print(format_ranking(final["ranking"], footer, uncertainty=final.get("uncertainty")))
    notes = format_warnings(final.get("warnings") or [])
    if notes:
        print(f"\n{notes}")
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        board = client.get_leaderboard(
            args.student,
            args.dataset,
            comparison=args.comparison,
            limit=args.limit,
            max_params=args.max_params,
        )
    if board["comparison"] is None:
        print(f"nothing scored yet for {args.student} on prompt set {board['prompt_set'][:12]}")
        return 0
    others = len(board["comparisons"]) - 1
    print(
        f"{args.student} on prompt set {board['prompt_set'][:12]}, configuration {board['comparison'][:12]}"
        + (f" ({others} other configuration(s): --comparison)" if others else "")
    )
    print(f"{'rank':>4}  {'candidate':<24} {'GRACE':>10} {'std':>8}  {'job':<10} scored")
    for e in board["data"]:
        grace = "-" if e["grace"] is None else f"{e['grace']:.4f}"
        std = "-" if e["grace_std"] is None else f"{e['grace_std']:.4f}"
        job = e["job_id"][:8]
        print(f"{e['rank']:>4}  {e['candidate']:<24} {grace:>10} {std:>8}  {job:<10} {e['scored_at']}")
    if board["next_offset"] is not None:
        print(f"... {board['total'] - len(board['data'])} more (--limit)")
    for line in format_guidance(board["guidance"]):
        print(line)
    return 0
