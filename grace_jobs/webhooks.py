"""Webhooks (Standard Webhooks): which targets are allowed, the event a job's end writes to the
outbox (:func:`record_end`, inside the transaction that ended the job), the backoff between
attempts, and signing. Delivery itself is :mod:`workers.webhooks`'s.

An event's body is ``{"type": "job.succeeded", "timestamp": ..., "data": {job summary}}``; its
``webhook-id`` is the event's id, stable across retries, so a receiver deduplicates on it
(delivery is at least once).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import secrets
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.orm import object_session
from standardwebhooks import Webhook

from grace_infra.db.models import Job, JobStatus, WebhookEvent

EVENT_TYPES = {
    JobStatus.SUCCEEDED: "job.succeeded",
    JobStatus.FAILED: "job.failed",
    JobStatus.CANCELLED: "job.cancelled",
}
SECRET_PREFIX = "whsec_"
MAX_BACKOFF_SECONDS = 3600.0
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """``ip`` and every IPv4 address it carries (mapped, 6to4, NAT64, Teredo): each must be public."""
    found: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            found.append(ip.ipv4_mapped)
        if ip.sixtofour is not None:
            found.append(ip.sixtofour)
        if ip.teredo is not None:
            found += list(ip.teredo)
        if ip in _NAT64:
            found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def _blocked(address: str) -> bool:
    """Not globally routable (``is_global``: loopback, private, CGNAT 100.64/10, link-local,
    documentation, reserved, ...), itself or through an IPv4 address it embeds."""
    return not all(ip.is_global and not ip.is_multicast for ip in _embedded(ipaddress.ip_address(address)))


@dataclass(frozen=True)
class Target:
    """A webhook URL checked for delivery: ``problem`` says why it may not be sent to (None: it
    may), ``address`` is the address that was checked, the one to connect to."""

    problem: str | None
    address: str | None = None


def check_target(url: str, *, allow_private: bool) -> Target:
    """Whether ``url`` may receive deliveries, and at which address. Only http(s) with a host, no
    credentials; the host is resolved once here and, unless ``allow_private``, every address it
    resolves to must be globally routable. Checked at submission and before every delivery, and a
    delivery connects to the address checked (:attr:`Target.address`), never resolving again: a
    name that answers a public address to the check and an inward one to the connection
    (rebinding) reaches nothing inward."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return Target("must be an http or https URL")
    if not parts.hostname:
        return Target("must name a host")
    if parts.username or parts.password:
        return Target("must not carry credentials; deliveries are signed instead")
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return Target(f"host {parts.hostname!r} does not resolve")
    addresses = [str(info[4][0]) for info in infos]
    if not allow_private:
        for address in addresses:
            if _blocked(address):
                return Target(
                    f"host {parts.hostname!r} is on an address that is not globally routable ({address}); "
                    "set GRACE_WEBHOOK_ALLOW_PRIVATE=true to allow private ones"
                )
    return Target(None, addresses[0])


def pinned_request(url: str, address: str) -> tuple[str, dict[str, str], dict[str, Any]]:
    """The URL to POST to ``address`` instead of ``url``'s host, the ``Host`` header, and the
    httpx extensions that keep TLS on the host's name (SNI and certificate checks)."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    host = f"[{address}]" if ":" in address else address
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    pinned = parts._replace(netloc=netloc).geturl()
    header = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    return pinned, {"Host": header}, {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}


def event_payload(job: Job, event_type: str, now: datetime) -> dict[str, Any]:
    """The body of ``job``'s end event: the job in brief (its results are one GET away)."""
    error = {"code": job.error_code, "message": job.error_message or ""} if job.error_code else None
    return {
        "type": event_type,
        "timestamp": now.isoformat(),
        "data": {
            "id": job.id,
            "kind": job.kind,
            "status": job.status,
            "student": job.student,
            "created_at": job.created_at.isoformat(),
            "finished_at": None if job.finished_at is None else job.finished_at.isoformat(),
            "error": error,
            "ranking": job.ranking,
        },
    }


def record_end(job: Job, now: datetime) -> None:
    """Put ``job``'s end event in the outbox, in the session (and so the transaction) that ended
    it; nothing when it names no webhook."""
    event_type = EVENT_TYPES.get(JobStatus(job.status))
    if job.webhook_url is None or event_type is None:
        return
    session = object_session(job)
    assert session is not None, "the job must be in the ending transaction's session"
    session.add(
        WebhookEvent(
            id=f"msg_{uuid.uuid4().hex}",
            tenant_id=job.tenant_id,
            job_id=job.id,
            type=event_type,
            url=job.webhook_url,
            payload=event_payload(job, event_type, now),
            status=PENDING,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
    )


def backoff(attempts: int, base_seconds: float) -> timedelta:
    """The wait after the ``attempts``-th failed delivery: ``base * 2**(attempts-1)``, at most an hour."""
    return timedelta(seconds=min(base_seconds * 2 ** max(attempts - 1, 0), MAX_BACKOFF_SECONDS))


def signed(
    event: WebhookEvent, signing_secrets: Sequence[str], now: datetime
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one delivery of ``event``, signed with each of ``signing_secrets`` (the
    header's space-separated signatures; a verifier accepts any one it can check)."""
    body = json.dumps(event.payload, separators=(",", ":"), ensure_ascii=False).encode()
    headers = {
        "content-type": "application/json",
        "webhook-id": event.id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": " ".join(
            Webhook(secret).sign(event.id, now, body) for secret in signing_secrets
        ),
        "user-agent": "grace-service-webhooks",
    }
    return body, headers
