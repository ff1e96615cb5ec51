"""Many clients at once (issue 29 #3): after the service sat idle, ``--clients`` concurrent job
polls (200), then ``--submissions`` concurrent job submissions (50), each client its own
connection. Goal on the 2-core reference machine: no errors, p99 under 1 s. Before admission
(app.admission) about 100 polls stalled the API for 30 s and ended in 503s blamed on the database.

    python benchmarks/concurrency.py                                    # embedded (SQLite)
    python benchmarks/concurrency.py --database-url postgresql://...    # PostgreSQL (+ GRACE_REDIS_URL)

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.api import _post, _small_job, _wait, serving


async def _burst(base: str, requests: list[tuple[str, str, Any]]) -> dict[str, Any]:
    """Every request at once; status counts and latency percentiles (ms)."""
    limits = httpx.Limits(max_connections=len(requests))
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:

        async def one(method: str, path: str, body: Any) -> tuple[int, float]:
            started = time.perf_counter()
            try:
                status = (await client.request(method, path, json=body)).status_code
            except httpx.HTTPError:
                status = 0
            return status, (time.perf_counter() - started) * 1000

        answers = await asyncio.gather(*(one(*r) for r in requests))
    codes = [c for c, _ in answers]
    ms = np.array([t for _, t in answers])
    return {
        "n": len(answers),
        "errors": sum(not 200 <= c < 300 for c in codes),
        "statuses": {str(c): codes.count(c) for c in sorted(set(codes))},
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(ms.max()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=200, help="concurrent polls")
    parser.add_argument("--submissions", type=int, default=50, help="concurrent submissions")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds the service sits idle first")
    parser.add_argument("--database-url", help="PostgreSQL (default: embedded SQLite)")
    parser.add_argument("--redis-url", help="with --database-url: the queue's Redis")
    args = parser.parse_args(argv)
    extra = {"GRACE_REDIS_URL": args.redis_url} if args.redis_url else {}
    with serving(args.database_url, **extra) as (base, _models):
        job = _post(base, _small_job())
        if not args.database_url:
            _wait(base, job, {"succeeded"}, 120)
        time.sleep(args.idle)  # the scenario: clients arrive after a quiet spell
        polls = asyncio.run(_burst(base, [("GET", f"/v1/jobs/{job}", None)] * args.clients))
        submits = asyncio.run(_burst(base, [("POST", "/v1/jobs", _small_job())] * args.submissions))
    backend = "postgresql" if args.database_url else "sqlite"
    for name, res in (("polls", polls), ("submissions", submits)):
        print(
            f"{backend:>10} | {res['n']:4d} concurrent {name:<11} | errors {res['errors']} | "
            f"p50 {res['p50_ms']:7.1f} ms | p99 {res['p99_ms']:7.1f} ms | max {res['max_ms']:7.1f} ms"
        )
    print(json.dumps({"backend": backend, "polls": polls, "submissions": submits}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
