"""Every error the API returns is RFC 9457 ``application/problem+json``, built here.

Body: ``{type, title, status, detail, instance}`` plus ``errors: [{field, message}]`` for
validation problems, so a client always learns which field to fix.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.contract import PROBLEM, match_path
from grace_engine.errors import GraceError

log = logging.getLogger("grace.api")


class ApiError(Exception):
    """Raise anywhere in a request to answer with a problem document."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail
        self.field, self.headers, self.extra = field, headers, extra or {}


def not_found(what: str) -> ApiError:
    return ApiError(404, "Not Found", f"no {what} with this id for your API key")


def problem(
    request: Request,
    status: int,
    title: str,
    detail: str,
    *,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"https://grace-service.dev/problems/{title.lower().replace(' ', '-')}",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
    }
    if errors:
        body["errors"] = errors
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


_SECTIONS = ("body", "query", "path", "header", "cookie")


def field_path(loc: tuple[int | str, ...], body: Any = None) -> str:
    """``('body', 'candidates', 0, 'temperature')`` -> ``candidates[0].temperature``.

    pydantic puts the union members it tried (``int``, ``constrained-str``, a model's name) into
    ``loc``, but they are not fields. Walking the request ``body`` along ``loc`` tells them apart:
    a part that is no key or index of the value reached so far is a member's tag, unless it is the
    last part of a location inside an object (a missing or unknown field)."""
    path, value = "", body
    in_body = bool(loc) and loc[0] == "body"
    for i, part in enumerate(loc):
        if i == 0 and part in _SECTIONS:
            continue
        if in_body:
            keyed = isinstance(value, dict) and part in value
            indexed = isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value)
            if keyed or indexed:
                value = value[part]
            elif not (isinstance(value, dict) and i == len(loc) - 1):
                continue
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "body"


def field_errors(errors: Any, body: Any) -> list[dict[str, str]]:
    """pydantic's errors as ``{field, message}``, one per field: a value no member of a union
    accepts gives one error per member, joined here."""
    merged: dict[str, list[str]] = {}
    for error in errors:
        messages = merged.setdefault(field_path(tuple(error["loc"]), body), [])
        if error["msg"] not in messages:
            messages.append(error["msg"])
    return [{"field": field, "message": "; or ".join(messages)} for field, messages in merged.items()]


RETRY_AFTER_SECONDS = 5  # what a 503 for a dependency outage asks clients to wait
BUSY_RETRY_AFTER_SECONDS = 1  # and one for a service at capacity: capacity frees in moments


def busy(request: Request) -> JSONResponse:
    """The 503 of a service at capacity (every admission slot or pooled connection in use), told
    apart from an outage: the database is up, and a retry in a moment will likely pass."""
    return problem(
        request,
        503,
        "Service Unavailable",
        "the service is at capacity; retry shortly",
        headers={"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)},
        dependency="capacity",
    )


GRACE_STATUS = {
    "invalid_input": 422,
    "model_not_allowed": 422,
    "model_not_found": 422,
    "unsupported_model": 422,
}


def install(app: FastAPI) -> None:
    """Register every exception handler of the API."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        errors = [{"field": exc.field, "message": exc.detail}] if exc.field else None
        return problem(
            request, exc.status, exc.title, exc.detail, errors=errors, headers=exc.headers, **exc.extra
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = field_errors(exc.errors(), exc.body)
        first = errors[0] if errors else {"field": "body", "message": "invalid request"}
        return problem(
            request, 422, "Validation Error", f"{first['field']}: {first['message']}", errors=errors
        )

    @app.exception_handler(GraceError)
    async def _engine_error(request: Request, exc: GraceError) -> JSONResponse:
        errors = [{"field": exc.field, "message": exc.message}] if exc.field else None
        status = GRACE_STATUS.get(exc.code, 422)
        title = getattr(exc, "title", "Validation Error")
        return problem(request, status, title, str(exc), errors=errors, code=exc.code)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = {404: "Not Found", 405: "Method Not Allowed", 413: "Content Too Large"}.get(
            exc.status_code, "HTTP Error"
        )
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:  # every method the path has, not only the first route's
            route = match_path(request.app, request.url.path)
            if route is not None:
                headers["Allow"] = ", ".join(route.methods)
        return problem(request, exc.status_code, title, str(exc.detail), headers=headers or None)

    async def _dependency_down(request: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
        return problem(
            request,
            503,
            "Service Unavailable",
            "the database is unavailable; retry shortly",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            dependency="database",
        )

    # A lost or refused connection: an outage, not a bug in the request.
    for outage in (OperationalError, InterfaceError):
        app.add_exception_handler(outage, _dependency_down)

    async def _pool_exhausted(request: Request, exc: Exception) -> JSONResponse:
        log.warning("no pooled connection for %s %s: %s", request.method, request.url.path, exc)
        return busy(request)

    # Every pooled connection in use: the database is up, the service is busy.
    app.add_exception_handler(PoolTimeout, _pool_exhausted)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(
            request, 500, "Internal Server Error", "an unexpected error occurred; it has been logged"
        )
