"""Load test of the service on loopback: job-status polls (with ETag, as dashboards poll) and job
submissions at fixed rates for a bounded time, first with the worker idle, then while a scoring
job runs. Open loop: requests leave on schedule whatever the latency, so slow answers show.

It starts its own `grace serve` on 127.0.0.1 (embedded default; `--database-url` for PostgreSQL,
migrated first) on the tiny offline models, and stops it at the end. Only loopback is contacted.

    python benchmarks/api.py                         # embedded default (SQLite + in-process worker)
    python benchmarks/api.py --database-url postgresql://grace@127.0.0.1:5432/grace

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MAX_REQUESTS = 20_000  # hard cap per phase, whatever the rate and duration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _small_job() -> dict[str, Any]:
    prompts = [{"id": f"p{i}", "prompt": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(4)]
    supplied = {
        p["id"]: [f"{i} + {i} = {2 * i}. The answer is \\boxed{{{2 * i}}}.", "I am not sure."]
        for i, p in enumerate(prompts)
    }
    return {
        "student": "student",
        "candidates": [{"name": "supplied", "responses": supplied}],
        "prompts": prompts,
        "scoring": {"responses_per_prompt": 2, "proj_dim": 64},
    }


def _busy_job(models: Path) -> dict[str, Any]:
    candidates = json.loads((models / "candidates.json").read_text())["candidates"]
    prompts = [json.loads(line) for line in (models / "prompts.jsonl").read_text().splitlines()]
    return {"student": "student", "candidates": candidates, "prompts": prompts}


async def _phase(
    base: str, job_id: str, *, poll_rate: float, submit_rate: float, seconds: float
) -> dict[str, Any]:
    poll_lat: list[float] = []
    submit_lat: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=10.0) as client:
        etag = (await client.get(f"/v1/jobs/{job_id}")).headers.get("etag", "")

        async def one(kind: str) -> None:
            nonlocal errors
            t0 = time.perf_counter()
            try:
                if kind == "poll":
                    r = await client.get(f"/v1/jobs/{job_id}", headers={"If-None-Match": etag})
                    ok = r.status_code in (200, 304)
                else:
                    r = await client.post("/v1/jobs", json=_small_job())
                    ok = r.status_code == 202
            except httpx.HTTPError:
                ok = False
            (poll_lat if kind == "poll" else submit_lat).append((time.perf_counter() - t0) * 1000)
            errors += not ok

        schedule = [(i / poll_rate, "poll") for i in range(int(seconds * poll_rate))]
        schedule += (
            [(i / submit_rate, "submit") for i in range(int(seconds * submit_rate))] if submit_rate else []
        )
        schedule = sorted(schedule)[:MAX_REQUESTS]
        start = time.perf_counter()
        tasks = []
        for at, kind in schedule:
            delay = start + at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(kind)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start

    def stats(lat: list[float]) -> dict[str, float | int]:
        if not lat:
            return {"n": 0}
        a = np.asarray(lat)
        return {
            "n": len(a),
            "p50_ms": float(np.percentile(a, 50)),
            "p99_ms": float(np.percentile(a, 99)),
            "max_ms": float(a.max()),
        }

    return {
        "seconds": elapsed,
        "throughput_rps": (len(poll_lat) + len(submit_lat)) / elapsed,
        "errors": errors,
        "poll": stats(poll_lat),
        "submit": stats(submit_lat),
    }


def _wait(base: str, job_id: str, until: set[str], timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{base}/v1/jobs/{job_id}", timeout=5) as r:
            job: dict[str, Any] = json.loads(r.read())
        if job["status"] in until:
            return job
        time.sleep(0.2)
    raise SystemExit(f"job {job_id} did not reach {until} in {timeout} s")


def _post(base: str, body: dict[str, Any]) -> str:
    req = urllib.request.Request(
        f"{base}/v1/jobs",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return str(json.loads(r.read())["id"])


@contextmanager
def serving(database_url: str | None, **env_extra: str) -> Iterator[tuple[str, Path]]:
    """`grace serve` on 127.0.0.1 on freshly built tiny models (embedded SQLite, or
    ``database_url`` migrated first), keys off unless ``env_extra`` says otherwise; yields its
    base URL and the models' directory once it is ready, and stops it afterwards."""
    work = Path(tempfile.mkdtemp(prefix="grace-api-bench-"))
    models = work / "models"
    subprocess.run(
        [sys.executable, "-m", "grace_cli.main", "tiny-models", str(models)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRACE_")}
    env.update(
        GRACE_DATA_DIR=str(work / "data"), GRACE_MODEL_ROOTS=str(models), GRACE_AUTH="off", **env_extra
    )
    if database_url:
        env["GRACE_DATABASE_URL"] = database_url
        subprocess.run(
            [sys.executable, "-m", "grace_cli.main", "migrate"],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = (work / "serve.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "grace_cli.main", "serve", "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=log,
        stderr=log,
    )
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"{base}/readyz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        yield base, models
    finally:
        server.terminate()
        server.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--poll-rate", type=float, default=200.0, help="status polls per second")
    parser.add_argument("--submit-rate", type=float, default=2.0, help="job submissions per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase (at most 60)")
    parser.add_argument(
        "--database-url", help="run the service on this PostgreSQL (default: embedded SQLite)"
    )
    args = parser.parse_args(argv)
    seconds = min(args.seconds, 60.0)
    with serving(args.database_url) as (base, models):
        idle_job = _post(base, _small_job())
        _wait(base, idle_job, {"succeeded"}, 120)
        idle = asyncio.run(_phase(base, idle_job, poll_rate=args.poll_rate, submit_rate=0, seconds=seconds))
        _wait_idle = _post(base, _busy_job(models))
        _wait(base, _wait_idle, {"running"}, 60)
        busy = asyncio.run(
            _phase(base, _wait_idle, poll_rate=args.poll_rate, submit_rate=args.submit_rate, seconds=seconds)
        )
    backend = "postgresql" if args.database_url else "sqlite"
    for name, res in (("worker idle", idle), ("job running", busy)):
        poll = res["poll"]
        submits, errors = res["submit"].get("n", 0), res["errors"]
        print(
            f"{backend:>10} | {name:<11} | {res['throughput_rps']:6.1f} req/s | "
            f"polls p50 {poll['p50_ms']:6.2f} ms p99 {poll['p99_ms']:6.2f} ms | "
            f"submits {submits} | errors {errors}"
        )
    print(
        json.dumps(
            {
                "backend": backend,
                "poll_rate": args.poll_rate,
                "submit_rate": args.submit_rate,
                "idle": idle,
                "busy": busy,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
