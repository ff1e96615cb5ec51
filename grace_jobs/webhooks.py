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


def _blocked(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return bool(
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def target_problem(url: str, *, allow_private: bool) -> str | None:
    """Why a webhook may not be sent to ``url`` (None: it may). Only http(s) with a host; unless
    ``allow_private``, no address the host resolves to may be loopback, private, link-local or
    otherwise not public (checked at submission and again before every delivery, so a name that
    later resolves inward is caught)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return "must be an http or https URL"
    if not parts.hostname:
        return "must name a host"
    if parts.username or parts.password:
        return "must not carry credentials; deliveries are signed instead"
    if allow_private:
        return None
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return f"host {parts.hostname!r} does not resolve"
    for info in infos:
        address = str(info[4][0])
        if _blocked(address):
            return (
                f"host {parts.hostname!r} is on a private or loopback address ({address}); "
                "set GRACE_WEBHOOK_ALLOW_PRIVATE=true to allow it"
            )
    return None


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
