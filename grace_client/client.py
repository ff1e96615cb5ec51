"""A synchronous client on httpx. Each method is one endpoint and returns the decoded JSON body
(the shapes are the OpenAPI document's, ``/openapi.json``). A 4xx/5xx answer raises the
:class:`~grace_client.errors.GraceAPIError` subclass of its status, no answer
:class:`~grace_client.errors.GraceConnectionError` (:class:`~grace_client.errors.GraceTimeout`
when it timed out), after the retries :mod:`grace_client.retry` allows."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx

from grace_client.errors import GraceAPIError, GraceConnectionError, GraceTimeout, Json
from grace_client.retry import RetryPolicy, safe_to_repeat

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


def _params(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


class Client:
    """One service at ``base_url``; ``api_key`` is sent as ``Authorization: Bearer``.

    ``timeout``: seconds to wait for an answer to one request; ``retry``: what to do when a safe
    request gets a 503, a 429 or no answer (:class:`~grace_client.retry.RetryPolicy`; default: up to 8
    tries in 2 minutes, honouring ``Retry-After``). ``transport``: an httpx transport (e.g.
    ``httpx.MockTransport`` in an integration's own tests, or a WSGI/ASGI one); default: the
    network. Usable as a context manager (closes its pool)."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout, transport=transport
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- plumbing --------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """One call, tried again while it is safe and worth it (:mod:`grace_client.retry`); the
        response of a 2xx or 304, a :class:`GraceAPIError` otherwise."""

        def once() -> httpx.Response:
            try:
                response = self._http.request(method, path, json=json, params=params, headers=headers)
            except httpx.TimeoutException as exc:
                raise GraceTimeout(
                    f"no answer from {self.base_url} within {self.timeout:g} s: {exc!r}"
                ) from exc
            except httpx.TransportError as exc:
                raise GraceConnectionError(f"cannot reach {self.base_url}: {exc}") from exc
            if response.status_code >= 400:
                raise GraceAPIError.from_response(response)
            return response

        if not safe_to_repeat(method, headers):
            return once()
        result: httpx.Response = self.retry.retrying()(once)
        return result

    def _json(self, method: str, path: str, **kwargs: Any) -> Json:
        body: Json = self.request(method, path, **kwargs).json()
        return body

    def _pages(self, path: str, params: dict[str, Any]) -> Iterator[Json]:
        while True:
            page = self._json("GET", path, params=params)
            yield from page["data"]
            if page.get("next_cursor") is None:
                return
            params = {**params, "cursor": page["next_cursor"]}

    # --- jobs ------------------------------------------------------------------------------------

    def _submit(self, path: str, job: Mapping[str, Any], idempotency_key: str | None) -> Json:
        # Every submission carries a key (a fresh one unless the caller has its own), so a retry
        # after a lost answer returns the job the first try created instead of a second job.
        headers = {"Idempotency-Key": idempotency_key or f"grace-client-{uuid.uuid4()}"}
        return self._json("POST", path, json=job, headers=headers)

    def create_job(self, job: Mapping[str, Any], *, idempotency_key: str | None = None) -> Json:
        """POST /v1/jobs: a scoring job; the 202 body ``{id, status, links}``."""
        return self._submit("/v1/jobs", job, idempotency_key)

    def create_influence_job(self, job: Mapping[str, Any], *, idempotency_key: str | None = None) -> Json:
        """POST /v1/influence."""
        return self._submit("/v1/influence", job, idempotency_key)

    def create_validation_job(self, job: Mapping[str, Any], *, idempotency_key: str | None = None) -> Json:
        """POST /v1/validations."""
        return self._submit("/v1/validations", job, idempotency_key)

    def create(self, path: str, job: Mapping[str, Any], *, idempotency_key: str | None = None) -> Json:
        """POST a job of any kind to its path: one of the above, or a kind your service adds
        (``GRACE_JOB_KINDS``); the 202 body."""
        return self._submit(path, job, idempotency_key)

    def get_result(self, job_id: str, kind: str) -> Json:
        """GET /v1/jobs/{id}/{kind}: the result of a job of a kind with a result body of its own
        (``influence``, ``validation``, or a kind your service adds)."""
        return self._json("GET", f"/v1/jobs/{job_id}/{kind}")

    def list_jobs(
        self,
        *,
        status: str | None = None,
        student: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Json:
        """GET /v1/jobs: one page, ``{data, next_cursor}``, newest first."""
        params = _params(status=status, student=student, limit=limit, cursor=cursor)
        return self._json("GET", "/v1/jobs", params=params)

    def iter_jobs(self, *, status: str | None = None, student: str | None = None) -> Iterator[Json]:
        """Every job, newest first, page after page."""
        return self._pages("/v1/jobs", _params(status=status, student=student, limit=100))

    def get_job(self, job_id: str) -> Json:
        """GET /v1/jobs/{id}: status, stage, units, per-candidate progress, ranking once done."""
        return self._json("GET", f"/v1/jobs/{job_id}")

    def cancel_job(self, job_id: str) -> Json:
        """POST /v1/jobs/{id}/cancel: the job, ``cancelled`` or ``cancelling``; 409 once finished."""
        return self._json("POST", f"/v1/jobs/{job_id}/cancel")

    def get_ranking(self, job_id: str) -> Json:
        return self._json("GET", f"/v1/jobs/{job_id}/ranking")

    def get_scores(self, job_id: str) -> Json:
        return self._json("GET", f"/v1/jobs/{job_id}/scores")

    def get_influence(self, job_id: str) -> Json:
        return self._json("GET", f"/v1/jobs/{job_id}/influence")

    def get_validation(self, job_id: str) -> Json:
        return self._json("GET", f"/v1/jobs/{job_id}/validation")

    def get_mixed_dataset(self, job_id: str) -> str:
        """GET /v1/jobs/{id}/dataset: the mixed-teacher set as chat JSON lines."""
        return self.request("GET", f"/v1/jobs/{job_id}/dataset").text

    def get_deliveries(self, job_id: str) -> Json:
        """GET /v1/jobs/{id}/deliveries: the job's webhook events and every delivery attempt."""
        return self._json("GET", f"/v1/jobs/{job_id}/deliveries")

    def wait(
        self,
        job_id: str,
        *,
        on_progress: Callable[[Json], None] | None = None,
        poll: float = 0.5,
        timeout: float | None = None,
    ) -> Json:
        """Poll the job until it ends and return it (whatever its status: check ``status``).

        Polls with ``If-None-Match``, so an unchanged job costs a bodiless 304; ``on_progress`` is
        called with the job each time it changed. ``timeout`` (seconds) raises TimeoutError."""
        deadline = None if timeout is None else time.monotonic() + timeout
        etag: str | None = None
        job: Json = {}
        while True:
            response = self.request(
                "GET", f"/v1/jobs/{job_id}", headers={"If-None-Match": etag} if etag else None
            )
            if response.status_code != 304:
                job, etag = response.json(), response.headers.get("ETag")
                if on_progress is not None:
                    on_progress(job)
                if job["status"] in TERMINAL:
                    return job
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} still {job.get('status')} after {timeout} s")
            time.sleep(poll)

    # --- datasets --------------------------------------------------------------------------------

    def create_dataset(self, prompts: Sequence[Mapping[str, Any]], *, name: str | None = None) -> Json:
        """POST /v1/datasets: ``prompts`` are ``{id, prompt, answer?}``; the dataset, without them."""
        return self._json("POST", "/v1/datasets", json=_params(prompts=list(prompts), name=name))

    def get_dataset(self, dataset_id: str) -> Json:
        return self._json("GET", f"/v1/datasets/{dataset_id}")

    def list_datasets(self, *, limit: int | None = None, cursor: str | None = None) -> Json:
        """GET /v1/datasets: one page, ``{data, next_cursor}``, newest first."""
        return self._json("GET", "/v1/datasets", params=_params(limit=limit, cursor=cursor))

    def iter_datasets(self) -> Iterator[Json]:
        return self._pages("/v1/datasets", {"limit": 100})

    def delete_dataset(self, dataset_id: str) -> None:
        """DELETE /v1/datasets/{id}; 409 while an unfinished job uses it."""
        self.request("DELETE", f"/v1/datasets/{dataset_id}")

    # --- comparisons -----------------------------------------------------------------------------

    def ranking_history(self, student: str, *, limit: int | None = None) -> Json:
        """GET /v1/rankings: the rankings of your succeeded jobs for ``student``."""
        return self._json("GET", "/v1/rankings", params=_params(student=student, limit=limit))

    def get_leaderboard(
        self,
        student: str,
        dataset: str,
        *,
        comparison: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
        max_params: int | None = None,
    ) -> Json:
        """GET /v1/leaderboards: every candidate scored for ``student`` on a prompt set (a dataset
        id or a job's ``prompt_set``) under one gradient configuration, ranked together, with its
        guidance (best temperature, per family, and under ``max_params``)."""
        params = _params(
            student=student,
            dataset=dataset,
            comparison=comparison,
            limit=limit,
            offset=offset,
            max_params=max_params,
        )
        return self._json("GET", "/v1/leaderboards", params=params)

    def list_predictors(self) -> Json:
        """GET /v1/predictors: every predictor a job can compute (name, direction, needs, label)."""
        return self._json("GET", "/v1/predictors")

    # --- scaling law -----------------------------------------------------------------------------

    def scaling_predict(self, body: Mapping[str, Any]) -> Json:
        return self._json("POST", "/v1/scaling-law/predict", json=body)

    def scaling_plan(self, body: Mapping[str, Any]) -> Json:
        return self._json("POST", "/v1/scaling-law/plan", json=body)

    # --- webhooks --------------------------------------------------------------------------------

    def rotate_webhook_secret(self) -> Json:
        """POST /v1/webhook-secret: a new signing secret for your tenant (shown once); deliveries
        from now on are signed with it."""
        return self._json("POST", "/v1/webhook-secret")

    # --- operations ------------------------------------------------------------------------------

    def healthz(self) -> Json:
        return self._json("GET", "/healthz")

    def readyz(self) -> Json:
        return self._json("GET", "/readyz")

    def metrics(self) -> str:
        """GET /metrics: Prometheus text."""
        return self.request("GET", "/metrics").text
