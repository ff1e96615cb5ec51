"""Every endpoint, once: each method builds the :class:`Call` (method, path, query, body, headers,
and how the answer is read) and hands it to the client's transport. :class:`~grace_client.Client`
sends it at once and returns the result; :class:`~grace_client.AsyncClient` returns an awaitable
of the same result. The type parameters say which: ``J`` is what a JSON call gives (``Json`` or
``Awaitable[Json]``), ``S`` a text one (``str`` or ``Awaitable[str]``), ``N`` one with no body.

The shapes are the OpenAPI document's (``/openapi.json``)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

J = TypeVar("J")
S = TypeVar("S")
N = TypeVar("N")


@dataclass(frozen=True)
class Call:
    """One request, built but not sent."""

    method: str
    path: str
    params: Mapping[str, Any] | None = None
    json: Any = None
    headers: Mapping[str, str] | None = None


def query(**values: Any) -> dict[str, Any]:
    """The values given (not None), as query parameters or a body."""
    return {k: v for k, v in values.items() if v is not None}


def _submission(path: str, job: Mapping[str, Any], idempotency_key: str | None) -> Call:
    # Every submission carries a key (a fresh one unless the caller has its own), so a retry
    # after a lost answer returns the job the first try created instead of a second job.
    key = idempotency_key or f"grace-client-{uuid.uuid4()}"
    return Call("POST", path, json=job, headers={"Idempotency-Key": key})


class Endpoints(Generic[J, S, N]):
    """The service's endpoints on a transport: ``_json``, ``_text`` and ``_nothing`` send a
    :class:`Call` and read its answer (the subclass decides whether at once or awaitably)."""

    def _json(self, call: Call) -> J:
        raise NotImplementedError

    def _text(self, call: Call) -> S:
        raise NotImplementedError

    def _nothing(self, call: Call) -> N:
        raise NotImplementedError

    # --- jobs ------------------------------------------------------------------------------------

    def create_job(self, job: Mapping[str, Any], *, idempotency_key: str | None = None) -> J:
        """POST /v1/jobs: a scoring job; the 202 body ``{id, status, links}``."""
        return self._json(_submission("/v1/jobs", job, idempotency_key))

    def create_influence_job(self, job: Mapping[str, Any], *, idempotency_key: str | None = None) -> J:
        """POST /v1/influence."""
        return self._json(_submission("/v1/influence", job, idempotency_key))

    def create_validation_job(self, job: Mapping[str, Any], *, idempotency_key: str | None = None) -> J:
        """POST /v1/validations."""
        return self._json(_submission("/v1/validations", job, idempotency_key))

    def create(self, path: str, job: Mapping[str, Any], *, idempotency_key: str | None = None) -> J:
        """POST a job of any kind to its path: one of the above, or a kind your service adds
        (``GRACE_JOB_KINDS``); the 202 body."""
        return self._json(_submission(path, job, idempotency_key))

    def get_result(self, job_id: str, kind: str) -> J:
        """GET /v1/jobs/{id}/{kind}: the result of a job of a kind with a result body of its own
        (``influence``, ``validation``, or a kind your service adds)."""
        return self._json(Call("GET", f"/v1/jobs/{job_id}/{kind}"))

    def list_jobs(
        self,
        *,
        status: str | None = None,
        student: str | None = None,
        kind: str | None = None,
        q: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> J:
        """GET /v1/jobs: one page, ``{data, next_cursor}``, newest first (``q``: an id's beginning
        or part of the student's name)."""
        params = query(status=status, student=student, kind=kind, q=q, limit=limit, cursor=cursor)
        return self._json(Call("GET", "/v1/jobs", params=params))

    def get_job(self, job_id: str) -> J:
        """GET /v1/jobs/{id}: status, stage, units, per-candidate progress, ranking once done."""
        return self._json(Call("GET", f"/v1/jobs/{job_id}"))

    def get_job_request(self, job_id: str) -> J:
        """GET /v1/jobs/{id}/request: the submission as stored, defaults filled in (re-run it by
        submitting it again)."""
        return self._json(Call("GET", f"/v1/jobs/{job_id}/request"))

    def cancel_job(self, job_id: str) -> J:
        """POST /v1/jobs/{id}/cancel: the job, ``cancelled`` or ``cancelling``; 409 once finished."""
        return self._json(Call("POST", f"/v1/jobs/{job_id}/cancel"))

    def get_ranking(self, job_id: str) -> J:
        return self._json(Call("GET", f"/v1/jobs/{job_id}/ranking"))

    def get_scores(self, job_id: str) -> J:
        return self._json(Call("GET", f"/v1/jobs/{job_id}/scores"))

    def get_influence(self, job_id: str) -> J:
        return self._json(Call("GET", f"/v1/jobs/{job_id}/influence"))

    def get_validation(self, job_id: str) -> J:
        return self._json(Call("GET", f"/v1/jobs/{job_id}/validation"))

    def get_mixed_dataset(self, job_id: str, *, form: str = "chat") -> S:
        """GET /v1/jobs/{id}/dataset: the mixed-teacher set as JSON lines, ``form`` ``chat`` (the
        teacher's conversation) or ``prompt_completion`` (the exact text the student was scored on)."""
        return self._text(Call("GET", f"/v1/jobs/{job_id}/dataset", params={"format": form}))

    def get_deliveries(self, job_id: str) -> J:
        """GET /v1/jobs/{id}/deliveries: the job's webhook events and every delivery attempt."""
        return self._json(Call("GET", f"/v1/jobs/{job_id}/deliveries"))

    # --- datasets --------------------------------------------------------------------------------

    def create_dataset(self, prompts: Sequence[Mapping[str, Any]], *, name: str | None = None) -> J:
        """POST /v1/datasets: ``prompts`` are ``{id, prompt, answer?}``; the dataset, without them."""
        return self._json(Call("POST", "/v1/datasets", json=query(prompts=list(prompts), name=name)))

    def get_dataset(self, dataset_id: str) -> J:
        return self._json(Call("GET", f"/v1/datasets/{dataset_id}"))

    def list_datasets(self, *, limit: int | None = None, cursor: str | None = None) -> J:
        """GET /v1/datasets: one page, ``{data, next_cursor}``, newest first."""
        return self._json(Call("GET", "/v1/datasets", params=query(limit=limit, cursor=cursor)))

    def delete_dataset(self, dataset_id: str) -> N:
        """DELETE /v1/datasets/{id}; 409 while an unfinished job uses it."""
        return self._nothing(Call("DELETE", f"/v1/datasets/{dataset_id}"))

    # --- comparisons -----------------------------------------------------------------------------

    def ranking_history(self, student: str, *, limit: int | None = None) -> J:
        """GET /v1/rankings: the rankings of your succeeded jobs for ``student``."""
        return self._json(Call("GET", "/v1/rankings", params=query(student=student, limit=limit)))

    def list_boards(self, student: str) -> J:
        """GET /v1/leaderboards/boards: every prompt set and configuration ``student`` was scored
        under, with the latest job's settings, most recently fed first."""
        return self._json(Call("GET", "/v1/leaderboards/boards", params={"student": student}))

    def get_leaderboard(
        self,
        student: str,
        dataset: str,
        *,
        comparison: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
        max_params: int | None = None,
    ) -> J:
        """GET /v1/leaderboards: every candidate scored for ``student`` on a prompt set (a dataset
        id or a job's ``prompt_set``) under one gradient configuration, ranked together, with its
        guidance (best temperature, per family, and under ``max_params``)."""
        params = query(
            student=student,
            dataset=dataset,
            comparison=comparison,
            limit=limit,
            offset=offset,
            max_params=max_params,
        )
        return self._json(Call("GET", "/v1/leaderboards", params=params))

    def list_predictors(self) -> J:
        """GET /v1/predictors: every predictor a job can compute (name, direction, needs, label)."""
        return self._json(Call("GET", "/v1/predictors"))

    # --- scaling law -----------------------------------------------------------------------------

    def scaling_predict(self, body: Mapping[str, Any]) -> J:
        return self._json(Call("POST", "/v1/scaling-law/predict", json=body))

    def scaling_plan(self, body: Mapping[str, Any]) -> J:
        return self._json(Call("POST", "/v1/scaling-law/plan", json=body))

    # --- webhooks --------------------------------------------------------------------------------

    def rotate_webhook_secret(self) -> J:
        """POST /v1/webhook-secret: a new signing secret for your tenant (shown once); deliveries
        from now on are signed with it."""
        return self._json(Call("POST", "/v1/webhook-secret"))

    # --- operations ------------------------------------------------------------------------------

    def healthz(self) -> J:
        return self._json(Call("GET", "/healthz"))

    def readyz(self) -> J:
        return self._json(Call("GET", "/readyz"))

    def metrics(self) -> S:
        """GET /metrics: Prometheus text."""
        return self._text(Call("GET", "/metrics"))
