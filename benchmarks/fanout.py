"""Fan-out speed-up: one 4-candidate scoring job on real PostgreSQL + Redis, run by 1 and then by 2
`grace worker` processes, each with 1 torch thread. Goal (issue 14): 2 workers finish it at least
1.8x faster than 1.

It starts its own PostgreSQL and Redis (scripts/services.sh) unless given --database-url and
--redis-url, builds the tiny offline models, runs `grace serve` (API only) and the workers on
loopback, and stops everything at the end. Each run is its own tenant, so no run reuses another's
stored responses or gradients and every run does the same work from scratch: generation, gradients
and scores for every candidate, then the assembly. A run is timed from submission to success, with
the workers already up. Per worker count, the first run is *cold* (each worker loads its models
and warms torch up) and reported apart; the speed-up is taken over the *warm* runs after it, the
steady state of long-lived workers that keep their models cached.

    python benchmarks/fanout.py                  # 1 cold + 3 warm runs per worker count (~4 min on 2 cores)
    python benchmarks/fanout.py --runs 1 --responses 2

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
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GRACE = [sys.executable, "-m", "grace_cli.main"]
TIMEOUT = 1800.0  # seconds for any one run; far above the expected minute or two


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
            proc.wait(timeout=60)


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
    parser.add_argument("--runs", type=int, default=3, help="warm runs per worker count (median reported)")
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
    cold: dict[int, float] = {}
    seconds: dict[int, list[float]] = {1: [], 2: []}
    spread: dict[int, list[int]] = {1: [], 2: []}
    with _services(args.database_url, args.redis_url) as (database_url, redis_url):
        env = {k: v for k, v in os.environ.items() if not k.startswith("GRACE_")}
        env.update(
            GRACE_DATABASE_URL=database_url,
            GRACE_REDIS_URL=redis_url,
            GRACE_MODEL_ROOTS=str(models),
            GRACE_AUTH="on",
            GRACE_QUEUE_NAME=f"fanout-{os.getpid()}",
        )
        subprocess.run([*GRACE, "migrate"], env=env, check=True, capture_output=True)
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        serve_log = (work / "serve.log").open("wb")
        server = subprocess.Popen(
            [*GRACE, "serve", "--port", str(port), "--log-level", "warning"],
            env=env,
            stdout=serve_log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_ready(base)
            for n in (1, 2):
                with _workers(n, env, work):
                    for run in range(args.runs + 1):
                        made = subprocess.run(
                            [*GRACE, "keys", "create", "--tenant", f"fanout-{n}-{run}"],
                            env=env,
                            check=True,
                            capture_output=True,
                            text=True,
                        )
                        key = made.stdout.split()[-1]
                        took, job = _run(base, key, body)
                        used = len({u["worker_id"] for u in job["units"]})
                        if run == 0:
                            cold[n] = took
                        else:
                            seconds[n].append(took)
                            spread[n].append(used)
                        what = "cold" if run == 0 else f"warm run {run}"
                        print(f"{n} worker(s), {what}: {took:.1f} s, units on {used} worker(s)")
        finally:
            server.terminate()
            server.wait(timeout=60)
    one, two = statistics.median(seconds[1]), statistics.median(seconds[2])
    result = {
        "candidates": len(candidates),
        "prompts": len(prompts),
        "responses_per_prompt": args.responses,
        "threads_per_worker": 1,
        "cpus": os.cpu_count(),
        "cold_1_worker": cold[1],
        "cold_2_workers": cold[2],
        "cold_speedup": cold[1] / cold[2],
        "seconds_1_worker": seconds[1],
        "seconds_2_workers": seconds[2],
        "median_1_worker": one,
        "median_2_workers": two,
        "speedup": one / two,
        "goal": 1.8,
        "workers_used_per_run": spread,
    }
    print(f"cold: 1 worker {cold[1]:.1f} s, 2 workers {cold[2]:.1f} s; speed-up {cold[1] / cold[2]:.2f}x")
    print(f"warm median: 1 worker {one:.1f} s, 2 workers {two:.1f} s; speed-up {one / two:.2f}x (goal 1.8x)")
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
