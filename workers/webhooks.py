"""The webhook dispatcher: sends the outbox's due events (:mod:`grace_jobs.webhooks`), signed, and
logs every attempt. It runs in every worker and in the embedded server.

Delivery is at least once. An event is leased before it is sent (its ``next_attempt_at`` moved
past the send's timeout by a conditional UPDATE, so two dispatchers do not both send it); a
dispatcher that dies mid-send leaves the lease to run out, and the event is sent again. A 2xx
marks it delivered; anything else (an error status, no answer, a target now refused) is retried
after an exponential backoff until ``webhook_max_attempts``, then marked failed.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from grace_infra.db.base import utcnow
from grace_infra.db.models import Tenant, WebhookDelivery, WebhookEvent
from grace_infra.settings import Settings
from grace_jobs import webhooks

log = logging.getLogger("grace.webhooks")
BATCH = 20  # events leased per pass


def _lease(session_factory: sessionmaker[Session], event_id: str, settings: Settings) -> bool:
    now = utcnow()
    with session_factory() as session:
        leased = session.scalar(
            update(WebhookEvent)
            .where(
                WebhookEvent.id == event_id,
                WebhookEvent.status == webhooks.PENDING,
                WebhookEvent.next_attempt_at <= now,
            )
            .values(next_attempt_at=now + timedelta(seconds=2 * settings.webhook_timeout_seconds + 5))
            .returning(WebhookEvent.id)
        )
        session.commit()
    return leased is not None


def _send(
    client: httpx.Client, event: WebhookEvent, secrets: list[str], settings: Settings
) -> tuple[int | None, str | None]:
    """One POST of ``event`` to the address its target was checked at; its status code (None
    without an answer) and error (None on a 2xx). The error names the status or the kind of
    failure, never the receiver's words: a tenant reads it, and a body or a message would make a
    refused target a way to read from or scan what the worker can reach."""
    target = webhooks.check_target(event.url, allow_private=settings.webhook_allow_private)
    if target.problem is not None:
        return None, f"target refused: {target.problem}"
    assert target.address is not None
    url, host, extensions = webhooks.pinned_request(event.url, target.address)
    body, headers = webhooks.signed(event, secrets, utcnow())
    try:
        response = client.post(url, content=body, headers={**headers, **host}, extensions=extensions)
    except httpx.HTTPError as exc:
        return None, type(exc).__name__
    if 200 <= response.status_code < 300:
        return response.status_code, None
    return response.status_code, f"HTTP {response.status_code}"


def deliver_one(
    session_factory: sessionmaker[Session], client: httpx.Client, event_id: str, settings: Settings
) -> str | None:
    """Lease, send and record one due event; its new status (None when another dispatcher had it).
    No transaction is open while the POST waits on the receiver: the lease keeps the event ours."""
    if not _lease(session_factory, event_id, settings):
        return None
    with session_factory() as session:
        event = session.get(WebhookEvent, event_id)
        assert event is not None
        tenant = session.get(Tenant, event.tenant_id)
        secrets = tenant.webhook_secrets(utcnow()) if tenant is not None else []
    started = time.monotonic()
    code: int | None = None
    error: str | None = "the tenant has no webhook secret (it was removed)"
    if secrets:
        code, error = _send(client, event, secrets, settings)
    now = utcnow()
    attempt = event.attempts + 1
    values: dict[str, Any] = {"attempts": attempt}
    if error is None:
        values.update(status=webhooks.DELIVERED, delivered_at=now)
    elif attempt >= settings.webhook_max_attempts:
        values.update(status=webhooks.FAILED)
    else:
        values.update(next_attempt_at=now + webhooks.backoff(attempt, settings.webhook_backoff_seconds))
    with session_factory() as session:
        session.execute(update(WebhookEvent).where(WebhookEvent.id == event_id).values(**values))
        session.add(
            WebhookDelivery(
                event_id=event_id,
                attempt=attempt,
                at=now,
                status_code=code,
                error=error,
                duration_ms=(time.monotonic() - started) * 1000,
            )
        )
        session.commit()
    log.info("webhook %s (%s) attempt %d: %s", event_id, event.type, attempt, error or "delivered")
    return str(values.get("status", webhooks.PENDING))


def deliver_due(session_factory: sessionmaker[Session], client: httpx.Client, settings: Settings) -> int:
    """One pass over the due events; returns how many this call sent."""
    with session_factory() as session:
        due = session.scalars(
            select(WebhookEvent.id)
            .where(WebhookEvent.status == webhooks.PENDING, WebhookEvent.next_attempt_at <= utcnow())
            .order_by(WebhookEvent.next_attempt_at)
            .limit(BATCH)
        ).all()
    return sum(deliver_one(session_factory, client, event_id, settings) is not None for event_id in due)


class Dispatcher(threading.Thread):
    """Runs :func:`deliver_due` every ``webhook_poll_seconds`` until stopped."""

    def __init__(self, *, session_factory: sessionmaker[Session], settings: Settings) -> None:
        super().__init__(name="grace-webhooks", daemon=True)
        self.session_factory, self.settings = session_factory, settings
        self._stopped = threading.Event()

    def run(self) -> None:
        # No redirects: a target could otherwise bounce a signed delivery to a refused address. No
        # proxies from the environment: a proxy would resolve the name again, past the check.
        with httpx.Client(
            timeout=self.settings.webhook_timeout_seconds, follow_redirects=False, trust_env=False
        ) as client:
            while not self._stopped.wait(self.settings.webhook_poll_seconds):
                try:
                    deliver_due(self.session_factory, client, self.settings)
                except Exception:
                    log.warning("webhook pass failed; retrying next interval", exc_info=True)

    def stop(self) -> None:
        self._stopped.set()
        self.join()
