"""Many clients at once (issue 29 #3): after the service sat idle, ``--clients`` concurrent job
polls (200), then ``--submissions`` concurrent job submissions (50), each client its own
connection. Goal on the 2-core reference machine: no errors, p99 under 1 s. Before admission
(app.admission) about 100 polls stalled the API for 30 s and ended in 503s blamed on the database.

    python benchmarks/concurrency.py                                    # embedded (SQLite)
    python benchmarks/concurrency.py --database-url postgresql://... --redis-url redis://... \
        --api-processes 2                                               # the PostgreSQL shape

The load generator shares the machine's two cores with the server, so by default it speaks
HTTP/1.1 on bare asyncio streams: httpx's async client spends about 3 ms of CPU a request, and at
200 at once measured itself (a no-op ASGI app answered its 200 at p99 0.75 s, against 0.05 s from
the bare client). ``--client httpx`` measures that way. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.api import _post, _small_job, _wait, serving


async def _raw_request(base: str, method: str, path: str, body: Any) -> tuple[int, float]:
    """One request on its own connection, spoken as HTTP/1.1 over asyncio streams: the status and
    the milliseconds to the last byte (status 0 on a connection error)."""
    url = urlsplit(base)
    payload = b"" if body is None else json.dumps(body).encode()
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {url.netloc}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    started = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        writer.write(head.encode() + payload)
        await writer.drain()
        answer = await reader.read()  # the server closes after the response
        writer.close()
        status = int(answer.split(b" ", 2)[1])
    except (OSError, IndexError, ValueError):
        status = 0
    return status, (time.perf_counter() - started) * 1000


async def _httpx_request(client: httpx.AsyncClient, method: str, path: str, body: Any) -> tuple[int, float]:
    started = time.perf_counter()
    try:
        status = (await client.request(method, path, json=body)).status_code
    except httpx.HTTPError:
        status = 0
    return status, (time.perf_counter() - started) * 1000


async def _burst(base: str, requests: list[tuple[str, str, Any]], client: str) -> dict[str, Any]:
    """Every request at once, each on its own connection; status counts and latency percentiles
    (ms). ``client``: ``raw`` (asyncio streams) or ``httpx``'s async client."""
    if client == "raw":
        answers = await asyncio.gather(*(_raw_request(base, *r) for r in requests))
    else:
        limits = httpx.Limits(max_connections=len(requests))
        async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as session:
            answers = await asyncio.gather(*(_httpx_request(session, *r) for r in requests))
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
    parser.add_argument("--api-processes", type=int, default=1, help="with --redis-url: GRACE_API_PROCESSES")
    parser.add_argument(
        "--client",
        choices=["raw", "httpx"],
        default="raw",
        help="the load generator: raw HTTP/1.1 on asyncio streams (default), or httpx, whose own "
        "CPU (about 3 ms a request) competes with the server for this machine's cores",
    )
    args = parser.parse_args(argv)
    # One tenant sends every submission: its quotas are set above them, since this measures capacity.
    extra = {"GRACE_TENANT_MAX_ACTIVE_JOBS": str(args.submissions + 1)}
    if args.redis_url:
        extra |= {"GRACE_REDIS_URL": args.redis_url, "GRACE_API_PROCESSES": str(args.api_processes)}
    with serving(args.database_url, **extra) as (base, _models):
        job = _post(base, _small_job())
        if not args.database_url:
            _wait(base, job, {"succeeded"}, 120)
        time.sleep(args.idle)  # the scenario: clients arrive after a quiet spell
        polls = asyncio.run(_burst(base, [("GET", f"/v1/jobs/{job}", None)] * args.clients, args.client))
        submits = asyncio.run(
            _burst(base, [("POST", "/v1/jobs", _small_job())] * args.submissions, args.client)
        )
    backend = "postgresql" if args.database_url else "sqlite"
    for name, res in (("polls", polls), ("submissions", submits)):
        print(
            f"{backend:>10} x{args.api_processes} {args.client:<5} | {res['n']:4d} concurrent {name:<11} | "
            f"errors {res['errors']} | "
            f"p50 {res['p50_ms']:7.1f} ms | p99 {res['p99_ms']:7.1f} ms | max {res['max_ms']:7.1f} ms"
        )
    shape = {"backend": backend, "api_processes": args.api_processes, "client": args.client}
    print(json.dumps({**shape, "polls": polls, "submissions": submits}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
