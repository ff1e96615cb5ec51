"""The job queue as the API and the workers see it: unit ids (``{job_id}/{position}``) only;
Postgres holds the state.

Production: Dramatiq on Redis. The API sends messages by actor name, so it never imports worker
code. Dramatiq's defaults are tuned for short tasks; for hours-long GPU jobs the broker here
heartbeats workers every ``broker_heartbeat_ms`` and runs its maintenance (which requeues a dead
worker's unacknowledged messages) on ``MAINTENANCE_CHANCE`` of commands instead of 0.1%.
"""

from __future__ import annotations

from typing import Protocol

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from grace_infra.settings import Settings

ACTOR_NAME = "run_unit"
MAINTENANCE_CHANCE = 100_000  # per million broker commands: 10%, so an idle queue recovers in seconds


class JobQueue(Protocol):
    """Where unit keys (``{job_id}/{position}``) wait for a worker. ``is_pending`` says whether a
    sent key is still waiting in this queue (not yet taken by a worker); the reconciler resends
    queued units that are not."""

    def enqueue(self, key: str) -> None: ...

    def is_pending(self, key: str) -> bool: ...

    def taken(self, key: str) -> None: ...

    def depth(self) -> int | None: ...

    def ping(self) -> bool: ...

    def close(self) -> None: ...


def make_broker(settings: Settings) -> RedisBroker:
    assert settings.redis_url is not None
    broker = RedisBroker(
        url=settings.redis_url,
        heartbeat_timeout=settings.broker_heartbeat_ms,
        maintenance_chance=MAINTENANCE_CHANCE,
    )
    broker.declare_queue(settings.queue_name)
    return broker


class RedisJobQueue:
    """Enqueues ``run_unit(key)`` messages (a unit key, :func:`~grace_jobs.lifecycle.unit_key`) for
    ``grace worker`` processes."""

    def __init__(self, settings: Settings, broker: RedisBroker | None = None) -> None:
        self.broker = broker or make_broker(settings)
        self.queue_name = settings.queue_name

    def _marker(self, key: str) -> str:
        # In the same Redis as the messages: if Redis loses the message, it loses the marker too.
        return f"{self.broker.namespace}:grace-pending:{key}"

    def enqueue(self, key: str) -> None:
        message: dramatiq.Message[None] = dramatiq.Message(
            queue_name=self.queue_name, actor_name=ACTOR_NAME, args=(key,), kwargs={}, options={}
        )
        self.broker.client.set(self._marker(key), "1")
        self.broker.enqueue(message)

    def is_pending(self, key: str) -> bool:
        return bool(self.broker.client.exists(self._marker(key)))

    def taken(self, key: str) -> None:
        self.broker.client.delete(self._marker(key))

    def depth(self) -> int | None:
        return int(self.broker.client.llen(f"{self.broker.namespace}:{self.queue_name}"))

    def ping(self) -> bool:
        try:
            return bool(self.broker.client.ping())
        except Exception:
            return False

    def close(self) -> None:
        self.broker.close()
