"""grace_client through a real proxy that injects faults in front of a real service: a 503 storm
with Retry-After during wait() costs only time, a slow answer is a timeout (retried when safe,
raised as GraceTimeout when not), a lost answer to a submission creates no second job, and each
kind of error answer is its own exception class; the async client the same, awaited."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from grace_client import (
    AsyncClient,
    Client,
    Conflict,
    GraceTimeout,
    InvalidRequest,
    NotFound,
    RetryPolicy,
    Unavailable,
)
from grace_client.errors import Json
from grace_engine.models.tiny_models import TinyModels
from tests.service.conftest import embedded_server, supplied_job

FAST = RetryPolicy(attempts=6, max_seconds=60, initial=0.05, max_wait=0.5, jitter=0.05)


class FaultyProxy:
    """Forwards every request to ``target``, except that each request whose method and path start
    with a queued fault's prefix gets that fault instead: ``503`` (a problem+json 503 with
    ``Retry-After: 1``), ``slow`` (forwarded after ``slow_seconds``) or ``lost`` (forwarded, its
    answer dropped: the connection closes). ``seen`` records (time, method, path, what happened)."""

    def __init__(self, target: str, slow_seconds: float = 3.0) -> None:
        self.target, self.slow_seconds = target, slow_seconds
        self.faults: list[tuple[str, str]] = []
        self.seen: list[tuple[float, str, str, str]] = []
        self.lock = threading.Lock()

    def take(self, method: str, path: str) -> str | None:
        with self.lock:
            for i, (prefix, fault) in enumerate(self.faults):
                if f"{method} {path}".startswith(prefix):
                    del self.faults[i]
                    return fault
        return None

    @contextmanager
    def serving(self) -> Iterator[str]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: object) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fault = proxy.take(self.command, self.path)
                proxy.seen.append((time.monotonic(), self.command, self.path, fault or "ok"))
                if fault == "503":
                    doc = b'{"type":"about:blank","title":"Service Unavailable","status":503,"detail":"db"}'
                    self.send_response(503)
                    self.send_header("Content-Type", "application/problem+json")
                    self.send_header("Retry-After", "1")
                    self.send_header("Content-Length", str(len(doc)))
                    self.end_headers()
                    self.wfile.write(doc)
                    return
                if fault == "slow":
                    time.sleep(proxy.slow_seconds)
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in {"host", "content-length"}
                }
                answer = httpx.request(self.command, proxy.target + self.path, content=body, headers=headers)
                if fault == "lost":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.send_response(answer.status_code)
                for k, v in answer.headers.items():
                    if k.lower() not in {
                        "content-length",
                        "transfer-encoding",
                        "connection",
                        "content-encoding",
                    }:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = do_DELETE = _forward

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()


@pytest.fixture(scope="module")
def service(tiny: TinyModels, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with embedded_server(tmp_path_factory.mktemp("retries"), tiny.root) as base:
        yield base


def test_a_503_storm_during_wait_costs_only_time(service: str) -> None:
    proxy = FaultyProxy(service)
    with proxy.serving() as base, Client(base, retry=FAST) as grace:
        job = grace.create_job(supplied_job({"good": ["2 + 2 = 4", "4"], "bad": ["no", "5"]}))
        proxy.faults = [("GET /v1/jobs/", "503")] * 3
        done = grace.wait(job["id"], poll=0.1, timeout=600)
    assert done["status"] == "succeeded", done
    storm = [i for i, s in enumerate(proxy.seen) if s[3] == "503"]
    assert len(storm) == 3
    for i in storm:  # each retry waited at least the Retry-After the 503 asked for
        assert proxy.seen[i + 1][0] - proxy.seen[i][0] >= 1.0


def test_a_slow_answer_is_a_timeout_retried_only_when_safe(service: str) -> None:
    proxy = FaultyProxy(service, slow_seconds=2.5)
    with proxy.serving() as base, Client(base, timeout=1.0, retry=FAST) as grace:
        proxy.faults = [("GET /healthz", "slow")]
        assert grace.healthz()["status"] == "ok"  # the retry got the answer
        assert [s[3] for s in proxy.seen] == ["slow", "ok"]
        proxy.faults = [("POST /v1/datasets", "slow")]
        with pytest.raises(GraceTimeout) as err:  # a dataset upload is not repeated blindly
            grace.create_dataset([{"prompt": "1 + 1?"}, {"prompt": "2 + 2?"}], name="slow")
        assert "no answer" in str(err.value)
        assert "within 1 s" in str(err.value)
        assert sum(s[1] == "POST" for s in proxy.seen) == 1


def test_a_lost_answer_to_a_submission_creates_one_job(service: str) -> None:
    proxy = FaultyProxy(service)
    body = supplied_job({"good": ["2 + 2 = 4", "4"], "bad": ["no", "5"]})
    with proxy.serving() as base, Client(base, retry=FAST) as grace:
        before = {j["id"] for j in grace.iter_jobs()}
        proxy.faults = [("POST /v1/jobs", "lost")]
        job = grace.create_job(body)  # the first answer never came; the retry replays the key
        after = {j["id"] for j in grace.iter_jobs()}
    assert [s[3] for s in proxy.seen if s[1] == "POST"] == ["lost", "ok"]
    assert after - before == {job["id"]}


def test_each_kind_of_error_is_its_own_class(service: str, tmp_path: Path) -> None:
    with Client(service, retry=FAST) as grace:
        with pytest.raises(NotFound):
            grace.get_job("00000000-0000-0000-0000-000000000000")
        with pytest.raises(InvalidRequest) as bad:
            grace.create_job({**supplied_job({"a": ["1", "2"]}), "candidates": []})
        assert (bad.value.status, bad.value.field) == (422, "candidates")
        job = grace.wait(
            grace.create_job(supplied_job({"a": ["1", "2"], "b": ["3", "4"]}))["id"], timeout=600
        )
        with pytest.raises(Conflict):
            grace.cancel_job(job["id"])
    # A 503 that lasts longer than the policy allows is raised as Unavailable, with its hint.
    proxy = FaultyProxy(service)
    with (
        proxy.serving() as base,
        Client(base, retry=RetryPolicy(attempts=2, initial=0.05, jitter=0)) as grace,
    ):
        proxy.faults = [("GET /healthz", "503")] * 2
        with pytest.raises(Unavailable) as down:
            grace.healthz()
    assert down.value.retry_after == 1.0


def test_the_async_client_is_the_same_client_awaited(service: str) -> None:
    """The same endpoints, retries and errors on asyncio: two jobs followed at once through a 503
    storm, their rankings, the paged listing and a typed error."""
    proxy = FaultyProxy(service)
    bodies = [supplied_job({"good": ["2 + 2 = 4", "4"], "bad": ["no", str(n)]}) for n in (5, 6)]

    async def scenario() -> tuple[list[Json], list[Json]]:
        async with AsyncClient(base, retry=FAST) as grace:
            jobs = [await grace.create_job(body) for body in bodies]
            proxy.faults = [("GET /v1/jobs/", "503")] * 3
            done = await asyncio.gather(*(grace.wait(j["id"], poll=0.1, timeout=600) for j in jobs))
            rankings = [await grace.get_ranking(j["id"]) for j in jobs]
            listed = {j["id"] async for j in grace.iter_jobs()}
            with pytest.raises(NotFound):
                await grace.get_job("00000000-0000-0000-0000-000000000000")
            assert (await grace.get_mixed_dataset(jobs[0]["id"])).count("\n") == len(bodies[0]["prompts"])
            assert {j["id"] for j in jobs} <= listed
            return done, rankings

    with proxy.serving() as base:
        done, rankings = asyncio.run(scenario())
    assert [d["status"] for d in done] == ["succeeded", "succeeded"], done
    assert [{r["name"] for r in ranking["ranking"]} for ranking in rankings] == [{"good", "bad"}] * 2
    assert sum(s[3] == "503" for s in proxy.seen) == 3  # met, and ridden out
