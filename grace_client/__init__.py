"""The public Python client of grace-service: every endpoint, an exception class per kind of error
answer (:mod:`grace_client.errors`), retries of what is safe to retry (:mod:`grace_client.retry`),
and :meth:`Client.wait` with a progress callback; :class:`AsyncClient` is the same for asyncio.

    from grace_client import Client

    with Client("http://127.0.0.1:8000", api_key="gk_...") as grace:
        job = grace.create_job({"student": "...", "candidates": [...], "prompts": [...]})
        done = grace.wait(job["id"], on_progress=lambda j: print(j["status"], j["stage"]))
        print(done["ranking"])
"""

from __future__ import annotations

from importlib import metadata

from grace_client.client import TERMINAL, AsyncClient, Client
from grace_client.errors import (
    Conflict,
    GraceAPIError,
    GraceConnectionError,
    GraceTimeout,
    InvalidRequest,
    NotFound,
    RateLimited,
    ServerError,
    Unauthorized,
    Unavailable,
)
from grace_client.retry import RetryPolicy

try:
    __version__ = metadata.version("grace-service")
except metadata.PackageNotFoundError:  # run from a source tree without installing
    __version__ = "0+unknown"

__all__ = [
    "TERMINAL",
    "AsyncClient",
    "Client",
    "Conflict",
    "GraceAPIError",
    "GraceConnectionError",
    "GraceTimeout",
    "InvalidRequest",
    "NotFound",
    "RateLimited",
    "RetryPolicy",
    "ServerError",
    "Unauthorized",
    "Unavailable",
    "__version__",
]
