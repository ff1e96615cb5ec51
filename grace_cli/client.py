"""``grace submit``: send a scoring job to a running service, follow it, print the ranking.

Plain ``urllib`` (no client dependency); polls with ``If-None-Match`` so an unchanged job costs a
bodiless 304.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from grace_engine.errors import GraceError
from grace_engine.progress import ProgressEvent

TERMINAL = {"succeeded", "failed", "cancelled"}


class ServiceError(GraceError):
    """The service answered with a problem document (or not at all)."""

    code = "service_error"


class Client:
    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 30.0) -> None:
        self.base_url, self.api_key, self.timeout = base_url.rstrip("/"), api_key, timeout

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.api_key:
            req.add_header("Authorization", f"Bearer {self.api_key}")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
                return resp.status, dict(resp.headers), json.loads(raw) if raw else None
        except urllib.error.HTTPError as err:
            if err.code == 304:
                return 304, dict(err.headers), None
            raw = err.read()
            try:
                doc = json.loads(raw)
            except ValueError:
                raise ServiceError(f"HTTP {err.code}: {raw[:200]!r}") from err
            errors = doc.get("errors") or []
            field = errors[0]["field"] if errors else None
            raise ServiceError(
                f"HTTP {err.code} {doc.get('title')}: {doc.get('detail')}",
                field=None if field is None else str(field),
            ) from err
        except urllib.error.URLError as err:
            raise ServiceError(f"cannot reach {self.base_url}: {err.reason}") from err

    def submit(self, job: dict[str, Any], idempotency_key: str | None = None) -> str:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        _, _, body = self.request("POST", "/v1/jobs", job, headers)
        return str(body["id"])

    def wait(
        self, job_id: str, *, on_progress: Callable[[ProgressEvent], None] | None = None, poll: float = 0.5
    ) -> dict[str, Any]:
        etag: str | None = None
        job: dict[str, Any] = {}
        while True:
            status, headers, body = self.request(
                "GET", f"/v1/jobs/{job_id}", headers={"If-None-Match": etag} if etag else None
            )
            if status != 304:
                job, etag = body, headers.get("ETag") or headers.get("etag")
                if on_progress is not None:
                    for name, stages in (job.get("progress") or {}).get("candidates", {}).items():
                        for stage in ("generate", "gradients"):
                            if stages.get(stage):
                                on_progress(
                                    ProgressEvent(stage, stages[stage]["done"], stages[stage]["total"], name)
                                )
                if job["status"] in TERMINAL:
                    return job
            time.sleep(poll)
