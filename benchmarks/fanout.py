"""Fan-out speed-up: one 4-candidate scoring job on real PostgreSQL + Redis, run by 1 and by 2
`grace worker` processes, each with 1 torch thread. Goal (issue 14): 2 workers finish it at least
1.8x faster than 1.

It starts its own PostgreSQL and Redis (scripts/services.sh) unless given --database-url and
--redis-url, builds the tiny offline models, and on loopback runs two configurations side by side:
one worker on one queue and two workers on another, each queue with its own `grace serve` (API
only). Runs alternate between them (1, 2, 1, 2, ...), so a machine whose speed drifts (a shared
host: the same loop takes 4 to 6 s from one minute to the next) slows both alike; the speed-up is
the median of the paired ratios. Each run is its own tenant, so no run reuses another's stored
responses or gradients: every run generates, computes gradients and scores for every candidate,
then assembles. A run is timed from submission to success. The first pair is *cold* (the workers
load their models and warm torch up) and reported apart; the speed-up is over the *warm* pairs
after it, the steady state of long-lived workers that keep their models cached.

For scale, the machine's own ceiling: a pure-Python loop in 1 and in 2 processes, paired the same
way (the throughput ratio two processes get on this machine).

    python benchmarks/fanout.py                  # 1 cold + 5 warm pairs (~5 min on 2 cores)
    python benchmarks/fanout.py --runs 2 --responses 8

The last line printed is one JSON object (also written to --out).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GRACE = [sys.executable, "-m", "grace_cli.main"]
TIMEOUT = 1800.0  # seconds for any one run; far above the expected minute or two
LOOP = "x = 0\nfor i in range(20_000_000):\n    x += i * i"  # the machine-ceiling reference


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def _services(database_url: str | None, redis_url: str | None) -> Iterator[tuple[str, str]]:
    """The given servers, or throwaway ones from scripts/services.sh."""
    if database_url and redis_url:
        yield database_url, redis_url
        return
    where = Path(tempfile.mkdtemp(prefix="grace-fanout-services-"))
    script = str(ROOT / "scripts" / "services.sh")
    out = subprocess.run(["bash", script, "start", str(where)], check=True, capture_output=True, text=True)
    env = dict(line.removeprefix("export ").split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    try:
        yield shlex.split(env["GRACE_TEST_DATABASE_URL"])[0], shlex.split(env["GRACE_TEST_REDIS_URL"])[0]
    finally:
        subprocess.run(["bash", script, "stop", str(where)], check=False, capture_output=True)


def _request(base: str, path: str, key: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    req = urllib.request.Request(
        f"{base}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        method="POST" if body is not None else "GET",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        doc: dict[str, Any] = json.loads(r.read())
        return doc


def _wait_ready(base: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{base}/readyz", timeout=2)
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("grace serve did not become ready")


@contextmanager
def _serve(env: dict[str, str], log: Path) -> Iterator[str]:
    """A `grace serve` (API only) on a free loopback port; its base URL once ready."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [*GRACE, "serve", "--port", str(port), "--log-level", "warning"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_ready(base)
            yield base
        finally:
            server.terminate()
            server.wait(timeout=60)


@contextmanager
def _workers(n: int, env: dict[str, str], logs: Path) -> Iterator[None]:
    """``n`` `grace worker --threads 1` processes, once each consumes."""
    paths = [logs / f"worker-{n}-{i}.log" for i in range(n)]
    procs = [
        subprocess.Popen(
            [*GRACE, "worker", "--threads", "1"], env=env, stdout=p.open("wb"), stderr=subprocess.STDOUT
        )
        for p in paths
    ]
    try:
        deadline = time.monotonic() + 120
        while not all(p.exists() and "consuming" in p.read_text() for p in paths):
            if time.monotonic() > deadline or any(proc.poll() is not None for proc in procs):
                raise SystemExit(f"workers did not start; see {logs}")
            time.sleep(0.2)
        yield
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=300)  # a unit stops at its next batch boundary


def _loops(n: int) -> float:
    """Seconds ``n`` processes take to run :data:`LOOP` side by side."""
    start = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", LOOP]) for _ in range(n)]
    for proc in procs:
        proc.wait()
    return time.perf_counter() - start


def _run(base: str, key: str, body: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """Submit ``body``; seconds until it succeeded, and the finished job."""
    start = time.perf_counter()
    job_id = _request(base, "/v1/jobs", key, body)["id"]
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        job = _request(base, f"/v1/jobs/{job_id}", key)
        if job["status"] in ("succeeded", "failed", "cancelled"):
            if job["status"] != "succeeded":
                raise SystemExit(f"job {job_id} {job['status']}: {job['error']}")
            return time.perf_counter() - start, job
        time.sleep(0.2)
    raise SystemExit(f"job {job_id} did not finish in {TIMEOUT} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5, help="warm pairs of runs (median ratio reported)")
    parser.add_argument("--responses", type=int, default=4, help="responses per prompt (m)")
    parser.add_argument("--database-url", help="an existing PostgreSQL (default: a throwaway one)")
    parser.add_argument("--redis-url", help="an existing Redis (default: a throwaway one)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "fanout.json")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="grace-fanout-"))
    models = work / "models"
    subprocess.run([*GRACE, "tiny-models", str(models)], check=True, capture_output=True)
    candidates = json.loads((models / "candidates.json").read_text())["candidates"][:4]
    prompts = [json.loads(line) for line in (models / "prompts.jsonl").read_text().splitlines()]
    body = {
        "student": "student",
        "candidates": candidates,
        "prompts": prompts,
        "scoring": {"responses_per_prompt": args.responses},
    }
    times: dict[int, list[float]] = {1: [], 2: []}
    spread: dict[int, list[int]] = {1: [], 2: []}
    with _services(args.database_url, args.redis_url) as (database_url, redis_url), ExitStack() as stack:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GRACE_")}
        env.update(
            GRACE_DATABASE_URL=database_url,
            GRACE_REDIS_URL=redis_url,
            GRACE_MODEL_ROOTS=str(models),
            GRACE_AUTH="on",
        )
        subprocess.run([*GRACE, "migrate"], env=env, check=True, capture_output=True)
        bases = {}
        for n in (1, 2):  # one queue per configuration, each with its API and its workers
            queue_env = {**env, "GRACE_QUEUE_NAME": f"fanout-{os.getpid()}-{n}"}
            bases[n] = stack.enter_context(_serve(queue_env, work / f"serve-{n}.log"))
            stack.enter_context(_workers(n, queue_env, work))
        for run in range(args.runs + 1):
            for n in (1, 2):
                made = subprocess.run(
                    [*GRACE, "keys", "create", "--tenant", f"fanout-{n}-{run}"],
                    env=env,
                    check=True,
                    capture_output=True,
                    text=True,
                )
                took, job = _run(bases[n], made.stdout.split()[-1], body)
                times[n].append(took)
                spread[n].append(len({u["worker_id"] for u in job["units"]}))
                what = "cold" if run == 0 else f"warm run {run}"
                print(f"{n} worker(s), {what}: {took:.1f} s, units on {spread[n][-1]} worker(s)")
    ratios = [a / b for a, b in zip(times[1][1:], times[2][1:], strict=True)]
    ceiling = []
    for _ in range(args.runs):
        one_loop, two_loops = _loops(1), _loops(2)
        ceiling.append(2 * one_loop / two_loops)
    result = {
        "candidates": len(candidates),
        "prompts": len(prompts),
        "responses_per_prompt": args.responses,
        "threads_per_worker": 1,
        "cpus": os.cpu_count(),
        "cold_1_worker": times[1][0],
        "cold_2_workers": times[2][0],
        "cold_speedup": times[1][0] / times[2][0],
        "warm_1_worker": times[1][1:],
        "warm_2_workers": times[2][1:],
        "warm_speedups": ratios,
        "speedup": statistics.median(ratios),
        "goal": 1.8,
        "machine_ceiling": statistics.median(ceiling),
        "machine_ceilings": ceiling,
        "workers_used_per_run": spread,
    }
    print(
        f"cold: 1 worker {times[1][0]:.1f} s, 2 workers {times[2][0]:.1f} s; "
        f"speed-up {result['cold_speedup']:.2f}x"
    )
    print(
        f"warm: speed-up {result['speedup']:.2f}x, median of {len(ratios)} pairs "
        f"({min(ratios):.2f}-{max(ratios):.2f}; goal 1.8x); the machine's own ceiling for two "
        f"processes {result['machine_ceiling']:.2f}x"
    )
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
