"""What the client raises: one class per kind of answer a caller handles differently.

::

    GraceAPIError                    any error answer (its problem+json taken apart)
    ├── InvalidRequest               400, 413, 422: fix the request (``field`` names what)
    ├── Unauthorized                 401, 403: the API key
    ├── NotFound                     404 (also another tenant's job: the same answer)
    ├── Conflict                     409: not in this state (cancel a finished job, a key reused)
    ├── RateLimited                  429: ``retry_after`` seconds
    ├── Unavailable                  503: a dependency is down; ``retry_after`` seconds
    ├── ServerError                  other 5xx
    └── GraceConnectionError         no answer: refused, DNS, reset
        └── GraceTimeout             no answer in time

The client retries what is safe to retry (:mod:`grace_client.retry`) before raising.
"""

from __future__ import annotations

from typing import Any

import httpx

Json = dict[str, Any]


class GraceAPIError(Exception):
    """The service answered with an error: its problem+json document, taken apart.

    ``status`` is the HTTP status (None when the service could not be reached), ``title`` and
    ``detail`` the problem's, ``field`` the first offending request field (``"candidates[1].model"``)
    when the service named one, ``errors`` every ``{field, message}`` it listed, ``body`` the whole
    document (or the raw text of an answer that was not JSON), ``retry_after`` the seconds its
    ``Retry-After`` header asked for (None without one)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        title: str | None = None,
        detail: str | None = None,
        field: str | None = None,
        errors: list[Json] | None = None,
        body: Any = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.title, self.detail, self.field = status, title, detail, field
        self.errors, self.body, self.retry_after = errors or [], body, retry_after

    @staticmethod
    def from_response(response: httpx.Response) -> GraceAPIError:
        """The error of ``response`` (a 4xx or 5xx), as the subclass its status calls for."""
        kind = _BY_STATUS.get(response.status_code) or (
            ServerError if response.status_code >= 500 else GraceAPIError
        )
        retry_after = _seconds(response.headers.get("Retry-After"))
        try:
            doc = response.json()
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            text = response.text[:300]
            return kind(
                f"HTTP {response.status_code}: {text}",
                status=response.status_code,
                body=text,
                retry_after=retry_after,
            )
        errors = [e for e in doc.get("errors") or [] if isinstance(e, dict)]
        field = str(errors[0]["field"]) if errors and errors[0].get("field") is not None else None
        title, detail = doc.get("title"), doc.get("detail")
        where = f" [{field}]" if field else ""
        return kind(
            f"HTTP {response.status_code} {title}{where}: {detail}",
            status=response.status_code,
            title=title,
            detail=detail,
            field=field,
            errors=errors,
            body=doc,
            retry_after=retry_after,
        )


class InvalidRequest(GraceAPIError):
    """400, 413 or 422: the request itself is wrong; ``field`` names the part."""


class Unauthorized(GraceAPIError):
    """401 or 403: a missing, unknown or revoked API key."""


class NotFound(GraceAPIError):
    """404: no such resource for this API key."""


class Conflict(GraceAPIError):
    """409: the resource is not in a state that allows this."""


class RateLimited(GraceAPIError):
    """429: over a quota; ``retry_after`` says when to come back."""


class Unavailable(GraceAPIError):
    """503: a dependency (database, queue) is down; ``retry_after`` says when to come back."""


class ServerError(GraceAPIError):
    """A 5xx other than 503."""


class GraceConnectionError(GraceAPIError):
    """No answer: the service could not be reached (refused, DNS, reset)."""


class GraceTimeout(GraceConnectionError):
    """No answer within the client's timeout: the service may be slow rather than gone."""


_BY_STATUS: dict[int, type[GraceAPIError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Unauthorized,
    404: NotFound,
    409: Conflict,
    413: InvalidRequest,
    422: InvalidRequest,
    429: RateLimited,
    503: Unavailable,
}


def _seconds(value: str | None) -> float | None:
    """``Retry-After`` in seconds (the delay form; an HTTP date is read as no hint)."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
