"""Admission: at most ``limit`` API requests in flight; the rest wait their turn without a thread.

Why: the routes are sync, and FastAPI runs each sync dependency and the endpoint in turn on its
thread pool. A request's database session takes a pooled connection at its first query (the key
check) and keeps it across the later hops, each of which must wait for a free thread again. With
more requests in flight than connections, every thread can end up held by a request waiting for a
connection that only a request waiting for a thread can give back: nothing moves until the pool's
timeout, and then everyone gets a 503. Admitting no more requests than there are connections (and
threads: the thread pool is sized above the limit) makes that cycle impossible; a request over the
limit waits here, on the event loop, and is refused with a 503 ``busy`` after ``wait_seconds``.

Probes (``/healthz``, ``/readyz``, ``/metrics``), the dashboard and the docs are not counted.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from app.errors import busy

COUNTED_PREFIX = "/v1/"


class Admission:
    def __init__(self, app: ASGIApp, *, limit: int, wait_seconds: float) -> None:
        self.app, self.wait_seconds = app, wait_seconds
        self.slots = asyncio.Semaphore(limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(COUNTED_PREFIX):
            await self.app(scope, receive, send)
            return
        try:
            await asyncio.wait_for(self.slots.acquire(), self.wait_seconds)
        except TimeoutError:
            await busy(Request(scope))(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.slots.release()
