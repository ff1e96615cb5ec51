"""When the client tries again, and how long it waits: tenacity, configured once.

Tenacity rather than a hand-written loop (or stamina, its opinionated wrapper) because the wait
must honour the service's ``Retry-After``: tenacity hands the wait strategy the failed attempt, so
the wait is the larger of the hint and a jittered exponential backoff.

What is retried: a 503 or 429 answer, and no answer at all (refused, reset, timed out), for a
request that is safe to repeat: GET, HEAD, OPTIONS, PUT and DELETE, and a POST that carries an
``Idempotency-Key`` (the client gives every job submission one). Anything else is raised at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
)
from tenacity.wait import wait_exponential_jitter

from grace_client.errors import GraceConnectionError, RateLimited, Unavailable

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` tries at most, within ``max_seconds`` of the first; waits start at ``initial``
    seconds and double up to ``max_wait``, plus up to ``jitter`` seconds at random, or what the
    service's ``Retry-After`` asks when that is longer. ``RetryPolicy(attempts=1)``: never retry."""

    attempts: int = 8
    max_seconds: float = 120.0
    initial: float = 0.5
    max_wait: float = 30.0
    jitter: float = 1.0

    def retrying(self) -> Retrying:
        return Retrying(**self._strategy())

    def retrying_async(self) -> AsyncRetrying:
        return AsyncRetrying(**self._strategy())

    def _strategy(self) -> dict[str, Any]:
        backoff = wait_exponential_jitter(multiplier=self.initial, max=self.max_wait, jitter=self.jitter)

        def wait(state: RetryCallState) -> float:
            failed = state.outcome.exception() if state.outcome is not None else None
            hint = getattr(failed, "retry_after", None) or 0.0
            return max(float(hint), backoff(state))

        return {
            "retry": retry_if_exception(_transient),
            "stop": stop_after_attempt(self.attempts) | stop_after_delay(self.max_seconds),
            "wait": wait,
            "reraise": True,
        }


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, Unavailable | RateLimited | GraceConnectionError)


def safe_to_repeat(method: str, headers: Mapping[str, str] | None) -> bool:
    """Whether a request may be sent again after a failure without doing its work twice."""
    return method.upper() in SAFE_METHODS or any(k.lower() == "idempotency-key" for k in headers or {})
