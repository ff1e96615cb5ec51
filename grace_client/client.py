"""The two transports of :class:`~grace_client.calls.Endpoints`: :class:`Client` (httpx, blocking)
and :class:`AsyncClient` (httpx, asyncio). Each endpoint method returns the decoded JSON body (an
awaitable of it on :class:`AsyncClient`). A 4xx/5xx answer raises the
:class:`~grace_client.errors.GraceAPIError` subclass of its status, no answer
:class:`~grace_client.errors.GraceConnectionError` (:class:`~grace_client.errors.GraceTimeout`
when it timed out), after the retries :mod:`grace_client.retry` allows."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from types import TracebackType
from typing import Any

import httpx

from grace_client.calls import Call, Endpoints, query
from grace_client.errors import GraceAPIError, GraceConnectionError, GraceTimeout, Json
from grace_client.retry import RetryPolicy, safe_to_repeat

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


class _Transport:
    """What both clients share: where the service is, the key, the timeout and the retry policy,
    and how an answer (or its absence) becomes a result or an exception."""

    def __init__(self, base_url: str, api_key: str | None, timeout: float, retry: RetryPolicy | None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.headers = {"Accept": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"

    def _answered(self, response: httpx.Response) -> httpx.Response:
        if response.status_code >= 400:
            raise GraceAPIError.from_response(response)
        return response

    def _unanswered(self, exc: httpx.TransportError) -> GraceConnectionError:
        if isinstance(exc, httpx.TimeoutException):
            return GraceTimeout(f"no answer from {self.base_url} within {self.timeout:g} s: {exc!r}")
        return GraceConnectionError(f"cannot reach {self.base_url}: {exc}")


class _Poll:
    """One job followed to its end: conditional GETs (``If-None-Match``, so an unchanged job costs
    a bodiless 304), ``on_progress`` with the job each time it changed, TimeoutError past ``timeout``."""

    def __init__(
        self, job_id: str, on_progress: Callable[[Json], None] | None, timeout: float | None
    ) -> None:
        self.job_id, self.on_progress, self.timeout = job_id, on_progress, timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.etag: str | None = None
        self.job: Json = {}

    def call(self) -> Call:
        return Call(
            "GET", f"/v1/jobs/{self.job_id}", headers={"If-None-Match": self.etag} if self.etag else None
        )

    def ended(self, response: httpx.Response) -> Json | None:
        """The job once it has ended, else None (after checking the deadline)."""
        if response.status_code != 304:
            self.job, self.etag = response.json(), response.headers.get("ETag")
            if self.on_progress is not None:
                self.on_progress(self.job)
            if self.job["status"] in TERMINAL:
                return self.job
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise TimeoutError(f"job {self.job_id} still {self.job.get('status')} after {self.timeout} s")
        return None


def _next_page(page: Json, params: dict[str, Any]) -> dict[str, Any] | None:
    cursor = page.get("next_cursor")
    return None if cursor is None else {**params, "cursor": cursor}


class Client(_Transport, Endpoints[Json, str, None]):
    """One service at ``base_url``; ``api_key`` is sent as ``Authorization: Bearer``.

    ``timeout``: seconds to wait for an answer to one request; ``retry``: what to do when a safe
    request gets a 503, a 429 or no answer (:class:`~grace_client.retry.RetryPolicy`; default: up to 8
    tries in 2 minutes, honouring ``Retry-After``). ``transport``: an httpx transport (e.g.
    ``httpx.MockTransport`` in an integration's own tests, or a WSGI one); default: the network.
    Usable as a context manager (closes its pool)."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, api_key, timeout, retry)
        self._http = httpx.Client(
            base_url=self.base_url, headers=self.headers, timeout=timeout, transport=transport
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

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
            except httpx.TransportError as exc:
                raise self._unanswered(exc) from exc
            return self._answered(response)

        if not safe_to_repeat(method, headers):
            return once()
        result: httpx.Response = self.retry.retrying()(once)
        return result

    def _send(self, call: Call) -> httpx.Response:
        return self.request(call.method, call.path, json=call.json, params=call.params, headers=call.headers)

    def _json(self, call: Call) -> Json:
        body: Json = self._send(call).json()
        return body

    def _text(self, call: Call) -> str:
        return self._send(call).text

    def _nothing(self, call: Call) -> None:
        self._send(call)

    def _pages(self, path: str, params: dict[str, Any] | None) -> Iterator[Json]:
        while params is not None:
            page = self._json(Call("GET", path, params=params))
            yield from page["data"]
            params = _next_page(page, params)

    def iter_jobs(self, *, status: str | None = None, student: str | None = None) -> Iterator[Json]:
        """Every job, newest first, page after page."""
        return self._pages("/v1/jobs", query(status=status, student=student, limit=100))

    def iter_datasets(self) -> Iterator[Json]:
        return self._pages("/v1/datasets", {"limit": 100})

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
        polling = _Poll(job_id, on_progress, timeout)
        while (job := polling.ended(self._send(polling.call()))) is None:
            time.sleep(poll)
        return job


class AsyncClient(_Transport, Endpoints[Awaitable[Json], Awaitable[str], Awaitable[None]]):
    """:class:`Client` for asyncio: the same endpoints, arguments and errors, each awaited
    (``await grace.get_job(id)``; ``async for job in grace.iter_jobs()``; ``async with``).
    ``transport``: an httpx async transport (e.g. ``httpx.ASGITransport(app)``)."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, api_key, timeout, retry)
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=self.headers, timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """:meth:`Client.request`, awaited."""

        async def once() -> httpx.Response:
            try:
                response = await self._http.request(method, path, json=json, params=params, headers=headers)
            except httpx.TransportError as exc:
                raise self._unanswered(exc) from exc
            return self._answered(response)

        if not safe_to_repeat(method, headers):
            return await once()
        result: httpx.Response = await self.retry.retrying_async()(once)
        return result

    async def _send(self, call: Call) -> httpx.Response:
        return await self.request(
            call.method, call.path, json=call.json, params=call.params, headers=call.headers
        )

    async def _read_json(self, call: Call) -> Json:
        body: Json = (await self._send(call)).json()
        return body

    async def _read_text(self, call: Call) -> str:
        return (await self._send(call)).text

    async def _read_nothing(self, call: Call) -> None:
        await self._send(call)

    def _json(self, call: Call) -> Awaitable[Json]:
        return self._read_json(call)

    def _text(self, call: Call) -> Awaitable[str]:
        return self._read_text(call)

    def _nothing(self, call: Call) -> Awaitable[None]:
        return self._read_nothing(call)

    async def _pages(self, path: str, params: dict[str, Any] | None) -> AsyncIterator[Json]:
        while params is not None:
            page = await self._read_json(Call("GET", path, params=params))
            for item in page["data"]:
                yield item
            params = _next_page(page, params)

    def iter_jobs(self, *, status: str | None = None, student: str | None = None) -> AsyncIterator[Json]:
        """Every job, newest first, page after page (``async for``)."""
        return self._pages("/v1/jobs", query(status=status, student=student, limit=100))

    def iter_datasets(self) -> AsyncIterator[Json]:
        return self._pages("/v1/datasets", {"limit": 100})

    async def wait(
        self,
        job_id: str,
        *,
        on_progress: Callable[[Json], None] | None = None,
        poll: float = 0.5,
        timeout: float | None = None,
    ) -> Json:
        """:meth:`Client.wait`, awaited: the event loop runs other tasks between polls."""
        polling = _Poll(job_id, on_progress, timeout)
        while (job := polling.ended(await self._send(polling.call()))) is None:
            await asyncio.sleep(poll)
        return job
