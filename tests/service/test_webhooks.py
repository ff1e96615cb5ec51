"""Webhooks: signed per Standard Webhooks (checked with the library's own verifier), written to the
outbox with the job's end, retried with backoff, surviving a worker killed mid-retry, and refused
for private targets unless allowed."""

from __future__ import annotations

import itertools
import json
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker
from standardwebhooks import Webhook, WebhookVerificationError

from app.main import create_app
from grace_engine.models.tiny_models import TinyModels
from grace_infra.db.base import utcnow
from grace_infra.db.models import Tenant, WebhookEvent
from grace_infra.settings import Settings
from grace_jobs import webhooks
from grace_jobs.tenants import rotate_webhook_secret
from grace_jobs.webhooks import backoff, check_target, new_secret
from tests.service.conftest import Caller, assert_problem, service_settings, supplied_job
from tests.service.helpers import DEADLINE, worker_process
from workers.webhooks import _send, deliver_due


class Receiver:
    """A real HTTP endpoint on loopback that answers ``fail_first`` requests with 500, then 204,
    and keeps every request's headers and body."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first, self.requests = fail_first, []
        received = self.requests
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                received.append((dict(self.headers.items()), body))
                self.send_response(500 if len(received) <= outer.fail_first else 204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(fail_first=2)
    yield r
    r.close()


@pytest.fixture
def hook_settings(database_url: str, redis_url: str, tiny: TinyModels) -> Settings:
    return service_settings(
        database_url,
        redis_url,
        tiny.root,
        webhook_allow_private=True,  # the receiver is on loopback
        webhook_backoff_seconds=1.0,
        webhook_poll_seconds=0.2,
    )


def _until(condition: Callable[[], Any], timeout: float = DEADLINE) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def test_a_signed_delivery_verifies_and_a_worker_killed_mid_retry_loses_no_event(
    hook_settings: Settings, caller: Caller, receiver: Receiver, tmp_path: Path
) -> None:
    with TestClient(create_app(hook_settings)) as client:
        made = client.post("/v1/webhook-secret", headers=caller.headers)
        assert made.status_code == 201, made.text
        secret = made.json()["secret"]
        assert secret.startswith("whsec_")
        body = {
            **supplied_job({"a": ["1 + 1 = 2", "2"], "b": ["no idea", "maybe 3"]}),
            "webhook": {"url": receiver.url},
        }
        job_id = client.post("/v1/jobs", json=body, headers=caller.headers).json()["id"]

        def deliveries() -> list[dict[str, Any]]:
            data: list[dict[str, Any]] = client.get(
                f"/v1/jobs/{job_id}/deliveries", headers=caller.headers
            ).json()["data"]
            return data

        log = tmp_path / "worker.log"
        with worker_process(hook_settings, log) as first:
            _until(lambda: deliveries() and deliveries()[0]["attempts"] >= 1)
            first.send_signal(signal.SIGKILL)  # mid-retry: one failed attempt logged, more due
            first.wait()
        assert deliveries()[0]["status"] == "pending", deliveries()
        with worker_process(hook_settings, log):
            event = _until(lambda: next((e for e in deliveries() if e["status"] != "pending"), None))
        stranger_view = client.get(
            f"/v1/jobs/{job_id}/deliveries", headers={"Authorization": "Bearer gk_nope"}
        )
        assert_problem(stranger_view, 401)
    assert event["status"] == "delivered", event
    assert event["type"] == "job.succeeded"
    assert [d["status_code"] for d in event["deliveries"]][-1] == 204
    assert [d["status_code"] for d in event["deliveries"]][:2] == [500, 500]
    assert event["attempts"] == len(event["deliveries"]) >= 3
    # Every attempt is the same event (one webhook-id, the receiver's idempotency key), and the
    # library's own verifier accepts the signature.
    assert {h["webhook-id"] for h, _ in receiver.requests} == {event["id"]}
    headers, raw = receiver.requests[-1]
    payload = Webhook(secret).verify(raw, headers)
    assert payload["type"] == "job.succeeded"
    assert payload["data"]["id"] == job_id
    assert [r["name"] for r in payload["data"]["ranking"]] == ["a", "b"] or len(
        payload["data"]["ranking"]
    ) == 2
    with pytest.raises(Exception, match="signature"):
        Webhook(secret).verify(raw.replace(b"succeeded", b"failed"), headers)
    # Retries wait out the backoff (1 s, then 2 s): no retry came early.
    times = [datetime.fromisoformat(d["at"]) for d in event["deliveries"]]
    for n, (t1, t2) in enumerate(itertools.pairwise(times), start=1):
        assert (t2 - t1).total_seconds() >= backoff(n, 1.0).total_seconds() - 0.05


def test_a_cancelled_job_sends_job_cancelled_once(
    hook_settings: Settings, caller: Caller, session_factory: sessionmaker[Session]
) -> None:
    r = Receiver()
    try:
        with TestClient(create_app(hook_settings)) as client:
            secret = client.post("/v1/webhook-secret", headers=caller.headers).json()["secret"]
            body = {**supplied_job({"a": ["x", "y"], "b": ["z", "w"]}), "webhook": {"url": r.url}}
            job_id = client.post("/v1/jobs", json=body, headers=caller.headers).json()["id"]
            assert (
                client.post(f"/v1/jobs/{job_id}/cancel", headers=caller.headers).json()["status"]
                == "cancelled"
            )
            with httpx.Client(timeout=10) as http:
                assert deliver_due(session_factory, http, hook_settings) >= 1
                deliver_due(session_factory, http, hook_settings)  # nothing is due twice
            (event,) = client.get(f"/v1/jobs/{job_id}/deliveries", headers=caller.headers).json()["data"]
    finally:
        r.close()
    assert (event["type"], event["status"], event["attempts"]) == ("job.cancelled", "delivered", 1)
    ours = [(h, b) for h, b in r.requests if h["webhook-id"] == event["id"]]
    assert len(ours) == 1
    assert Webhook(secret).verify(ours[0][1], ours[0][0])["data"]["status"] == "cancelled"


def test_a_rotated_secret_keeps_signing_beside_the_new_one_until_its_overlap_ends(
    hook_settings: Settings, caller: Caller, session_factory: sessionmaker[Session]
) -> None:
    """Standard Webhooks carries several signatures: after a rotation, a receiver still holding the
    old secret accepts deliveries for the overlap, and only the new secret verifies after it."""
    r = Receiver()
    try:
        with TestClient(create_app(hook_settings)) as client:
            first = client.post("/v1/webhook-secret", headers=caller.headers).json()
            assert first["previous_valid_until"] is None  # nothing was replaced
            second = client.post("/v1/webhook-secret", headers=caller.headers).json()
            created = datetime.fromisoformat(second["created_at"])
            until = datetime.fromisoformat(second["previous_valid_until"])
            assert (until - created).total_seconds() == hook_settings.webhook_rotation_overlap_seconds

            def delivered() -> tuple[dict[str, str], bytes]:
                body = {**supplied_job({"a": ["x", "y"], "b": ["z", "w"]}), "webhook": {"url": r.url}}
                job_id = client.post("/v1/jobs", json=body, headers=caller.headers).json()["id"]
                client.post(f"/v1/jobs/{job_id}/cancel", headers=caller.headers)
                with httpx.Client(timeout=10) as http:
                    assert deliver_due(session_factory, http, hook_settings) >= 1
                (event,) = client.get(f"/v1/jobs/{job_id}/deliveries", headers=caller.headers).json()["data"]
                (ours,) = [(h, b) for h, b in r.requests if h["webhook-id"] == event["id"]]
                return ours

            headers, body = delivered()
            assert len(headers["webhook-signature"].split(" ")) == 2
            for secret in (first["secret"], second["secret"]):
                assert Webhook(secret).verify(body, headers)["type"] == "job.cancelled"
            with session_factory() as session:  # the overlap ends
                session.execute(
                    sa.update(Tenant)
                    .where(Tenant.webhook_secret == second["secret"])
                    .values(webhook_secret_previous_until=utcnow())
                )
                session.commit()
            headers, body = delivered()
            assert len(headers["webhook-signature"].split(" ")) == 1
            assert Webhook(second["secret"]).verify(body, headers)["type"] == "job.cancelled"
            with pytest.raises(WebhookVerificationError):
                Webhook(first["secret"]).verify(body, headers)
            with session_factory() as session:  # without an overlap the old secret stops at once
                tenant = session.scalars(
                    sa.select(Tenant).where(Tenant.webhook_secret == second["secret"])
                ).one()
                rotate_webhook_secret(session=session, tenant=tenant, overlap=timedelta(0))
                assert (tenant.webhook_secret_previous, tenant.webhook_secret_previous_until) == (None, None)
                assert tenant.webhook_secrets(utcnow()) == [tenant.webhook_secret]
    finally:
        r.close()


def test_webhook_targets_and_secrets_are_checked_at_submission(
    database_url: str, redis_url: str, tiny: TinyModels, caller: Caller
) -> None:
    strict = service_settings(database_url, redis_url, tiny.root)  # private targets refused
    with TestClient(create_app(strict)) as client:
        base = supplied_job({"a": ["x", "y"], "b": ["z", "w"]})

        def post(url: str) -> Any:
            return client.post("/v1/jobs", json={**base, "webhook": {"url": url}}, headers=caller.headers)

        assert_problem(post("https://93.184.216.34/hook"), 422, "webhook")  # no secret yet
        client.post("/v1/webhook-secret", headers=caller.headers)
        for url in (
            "http://127.0.0.1:9/hook",
            "http://10.1.2.3/x",
            "http://[::1]/x",
            "ftp://93.184.216.34/x",
        ):
            assert_problem(post(url), 422, "webhook.url")
        assert_problem(post("http://user:pw@93.184.216.34/x"), 422, "webhook.url")
        assert post("https://93.184.216.34/hook").status_code == 202
        doc = client.get("/openapi.json").json()
        assert "webhook" in doc["components"]["schemas"]["JobCreate"]["properties"]


def _problem(url: str, *, allow_private: bool = False) -> str | None:
    return check_target(url, allow_private=allow_private).problem


@pytest.mark.parametrize(
    "address",
    [
        "169.254.169.254",  # link-local cloud metadata
        "100.100.100.200",  # CGNAT 100.64/10, a cloud metadata address among them
        "100.64.0.1",
        "[::ffff:127.0.0.1]",  # IPv4-mapped loopback
        "[2002:7f00:1::]",  # 6to4 of 127.0.0.1
        "[64:ff9b::7f00:1]",  # NAT64 of 127.0.0.1
        "[64:ff9b::a00:1]",  # NAT64 of 10.0.0.1
        "192.0.2.1",  # documentation
        "224.0.0.1",  # multicast
        "0.0.0.0",
    ],
)
def test_only_globally_routable_addresses_receive_deliveries(address: str) -> None:
    assert _problem(f"http://{address}/latest") is not None
    assert _problem(f"http://{address}/latest", allow_private=True) is None  # the operator's choice


def test_backoff_doubles_up_to_an_hour_and_public_literals_pass() -> None:
    assert [backoff(n, 2.0).total_seconds() for n in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 16.0]
    assert backoff(40, 2.0).total_seconds() == 3600.0
    assert _problem("https://93.184.216.34/") is None
    assert _problem("https://[2606:2800:220:1:248:1893:25c8:1946]/") is None
    assert json.dumps(_problem("gopher://x", allow_private=True)).startswith('"must be')


def test_a_rebinding_name_delivers_nothing_to_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stub resolver answers a public address to the check and loopback to every later lookup:
    the dispatcher connects to the address it checked, so the loopback receiver is never reached.
    Then, with private targets allowed, the same receiver is reached and answers 500 with a body:
    the recorded error is the status alone."""
    hits: list[str] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            hits.append(self.headers["Host"])
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b"internal page: secret")

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    lookups = itertools.chain(["93.184.216.34"], itertools.repeat("127.0.0.1"))

    def rebinding(host: str, *_args: Any, **_kwargs: Any) -> list[Any]:
        # The name rebinds; an address literal resolves to itself, as a real resolver's does.
        address = next(lookups) if host == "rebind.example" else host
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(webhooks.socket, "getaddrinfo", rebinding)
    event = WebhookEvent(id="evt", type="job.succeeded", url=f"http://rebind.example:{port}/hook", payload={})
    try:
        # The dispatcher's client: no proxies from the environment (the public address is unreachable here)
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            code, error = _send(client, event, [new_secret()], Settings(webhook_allow_private=False))
            assert code is None
            assert error in ("ConnectTimeout", "ConnectError")
            assert hits == []
            code, error = _send(client, event, [new_secret()], Settings(webhook_allow_private=True))
        assert (code, error) == (500, "HTTP 500")  # no receiver text in what the tenant reads
        assert hits == [f"rebind.example:{port}"]  # pinned to 127.0.0.1, the Host header kept
    finally:
        server.shutdown()
