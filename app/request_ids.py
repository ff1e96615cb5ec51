"""Every request gets an id: the caller's ``X-Request-ID`` when it sends a sane one, else a fresh
one. It is echoed in the response, carried by every log record made while the request is handled
(:mod:`grace_infra.logs`), and the request's one access line is logged here with its status and
time, in the process's log format (uvicorn's own access log is off: it runs outside the request's
context and would log without the id). Passing probes (``/healthz``, ``/readyz``, ``/metrics``)
are not logged: they come every few seconds."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.contract import PUBLIC_PATHS
from grace_infra import logs

HEADER = "X-Request-ID"
_SANE = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")  # what a tracing header or a UUID looks like
access = logging.getLogger("grace.access")


class RequestIds:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get(HEADER)
        rid = given if given is not None and _SANE.fullmatch(given) else uuid.uuid4().hex
        token = logs.request_id.set(rid)
        started, status = time.perf_counter(), 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[HEADER] = rid
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            # A passing probe, every few seconds, is noise.
            if status >= 400 or scope["path"] not in PUBLIC_PATHS:
                access.info(
                    "%s %s %d %.1f ms",
                    scope["method"],
                    scope["path"],
                    status,
                    (time.perf_counter() - started) * 1000,
                    extra={"method": scope["method"], "path": scope["path"], "status": status},
                )
            logs.request_id.reset(token)
