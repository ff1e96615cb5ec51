"""The OpenAPI document, completed in one place with what every route shares: errors are RFC 9457
``application/problem+json`` (never FastAPI's default ``HTTPValidationError``), the bearer API-key
requirement (the scheme itself is :mod:`app.deps`'s), and the status codes the middleware, the
dependencies and the handlers can answer with.

Routes declare only their own success responses; this module adds, per operation:

* 422 to every operation with parameters or a body, 413 to every one with a body;
* 401 and the bearer scheme to every operation that takes an API key (all but health), whatever
  the server's auth setting, so that a client generated against the embedded default (auth off)
  can send keys to a production server: there the key is optional (the security requirement lists
  an empty alternative);
* 404 and 409 to operations on a resource named in the path, 409 also to submissions
  (``Idempotency-Key`` reused with another body);
* 429 to every submission of a job (a 202), with its ``Retry-After`` header: the tenant's quotas;
* 503 to every operation that needs the database or the queue, with its ``Retry-After`` header;
* the ``Location`` header to every 202 (an accepted job: where to poll it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema
from starlette.routing import compile_path

PROBLEM = "application/problem+json"
PUBLIC_PATHS = {"/healthz", "/readyz", "/metrics"}  # no API key
NO_DEPENDENCIES = {"/healthz"}  # answers without the database or the queue

_DESCRIPTIONS = {
    "401": "missing, invalid or revoked API key (when this server requires keys)",
    "404": "no such resource for your API key",
    "409": "the resource is in another state, or the Idempotency-Key was used with another body",
    "413": "request body over the size limit",
    "422": "invalid input; `errors` names each offending field",
    "429": "over one of your tenant's quotas (`quota` names it: jobs in flight, submissions per "
    "minute, compute in flight); retry after `Retry-After` seconds",
    "503": "a dependency (database or queue) is unavailable; retry after `Retry-After` seconds",
}


class FieldError(BaseModel):
    field: str = Field(description="the offending input, e.g. `candidates[0].name` or `student`")
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem document; extra members may follow (e.g. ``code``, ``job_status``)."""

    type: str
    title: str
    status: int
    detail: str
    instance: str
    errors: list[FieldError] | None = Field(None, description="validation problems: one per field")


_RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait before retrying",
        "schema": {"type": "integer", "minimum": 0},
    }
}
_HEADERS = {"429": _RETRY_AFTER, "503": _RETRY_AFTER}
_LOCATION = {"Location": {"description": "the accepted job's URL, to poll", "schema": {"type": "string"}}}


def _problem_response(status: str) -> dict[str, Any]:
    found: dict[str, Any] = {
        "description": _DESCRIPTIONS[status],
        "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    if status in _HEADERS:
        found["headers"] = _HEADERS[status]
    return found


def _statuses(path: str, method: str, op: dict[str, Any]) -> list[str]:
    params = op.get("parameters", [])
    in_path = any(p.get("in") == "path" for p in params)
    body = "requestBody" in op
    found = []
    if params or body:
        found.append("422")
    if body:
        found.append("413")
    if path not in PUBLIC_PATHS:
        found.append("401")
    if in_path:
        found.append("404")
    if in_path or (method == "post" and body):
        found.append("409")
    if body and "202" in op.get("responses", {}):  # a job submitted (a cancel is a 202 too, bodiless)
        found.append("429")
    if path not in NO_DEPENDENCIES:
        found.append("503")
    return found


def openapi(app: FastAPI, *, secured: bool) -> dict[str, Any]:
    """The app's OpenAPI document with the shared contract (module docstring); built once.
    ``secured``: the server requires API keys (else a key is optional: the only difference)."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
    )
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    _, defs = models_json_schema(
        [(FieldError, "serialization"), (Problem, "serialization")],
        ref_template="#/components/schemas/{model}",
    )
    schemas.update(defs["$defs"])
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    # An empty requirement is the alternative of sending none: keys are optional on this server.
    requirement: list[dict[str, list[str]]] = [{"bearer": []}] if secured else [{"bearer": []}, {}]
    for path, operations in schema.get("paths", {}).items():
        for method, op in operations.items():
            responses = op.setdefault("responses", {})
            for status in _statuses(path, method, op):
                responses[status] = _problem_response(status)
            if "202" in responses:
                responses["202"].setdefault("headers", {}).update(_LOCATION)
            if path not in PUBLIC_PATHS:
                op["security"] = requirement
    app.openapi_schema = schema
    return schema


@dataclass(frozen=True)
class PathMatch:
    """The documented route a request path falls on: its parameters and its methods."""

    params: dict[str, str]
    methods: list[str]


def match_path(app: FastAPI, path: str) -> PathMatch | None:
    """The OpenAPI path template ``path`` matches (whatever router nesting produced it), or None."""
    compiled = getattr(app.state, "contract_paths", None)
    if compiled is None:
        compiled = [
            (compile_path(template)[0], sorted(m.upper() for m in ops))
            for template, ops in app.openapi().get("paths", {}).items()
        ]
        app.state.contract_paths = compiled
    for pattern, methods in compiled:
        found = pattern.match(path)
        if found:
            return PathMatch(found.groupdict(), methods)
    return None
