"""Public models of the job kinds' results, and what they share with the API's other response
bodies (pydantic, nothing else: ``grace_client.models`` serves them to clients that load no model
stack)."""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


def worker_label(worker_id: str | None) -> str | None:
    """What a tenant sees of a worker: a stable opaque label (the same for every unit it ran), not
    its id, which names the host and process. An operator matches a label to the worker's logs by
    computing it from the id they show."""
    if worker_id is None:
        return None
    return "w-" + hashlib.sha256(worker_id.encode()).hexdigest()[:12]


class WarningPublic(BaseModel):
    """A condition that qualifies a result (design §2.10): a stable ``code``, a ``message`` that
    says what to change, and the numbers behind it as further fields."""

    model_config = ConfigDict(extra="allow")

    code: str
    message: str


class InfluencePublic(BaseModel):
    job_id: str
    method: str
    validation_loss: float = Field(description="the student's loss on the reference set, nats/token")
    per_candidate: list[dict[str, Any]]
    best_per_prompt: dict[str, dict[str, int]]
    selected: list[dict[str, Any]]
    responses: list[dict[str, Any]]


class CorrelationPublic(BaseModel):
    """How well one score predicted the outcome: +1 = perfectly; null when a side is constant."""

    score: str
    outcome: str
    spearman: float | None
    kendall: float | None
    ci95: tuple[float, float] | None
    regret: float
    regret_rel: float | None
    n_candidates: int
    top_pick: str
    best: str
    p_value: float | None = Field(
        None, description="one-sided permutation p-value of spearman (exact up to 10 candidates)"
    )
    critical_rho: float | None = Field(
        None, description="the smallest spearman that reaches 5% one-sided for this many candidates"
    )
    distinguishable: bool | None = Field(
        None, description="p_value <= 0.05; false: not distinguishable from chance"
    )


class ValidationPublic(BaseModel):
    """A validation job's result: per candidate its scores (``grace.score``, baselines) and the
    distilled student's ``outcome``; ``correlations`` per score against ``outcome``."""

    job_id: str
    student: str
    outcome: str
    untrained: dict[str, Any]
    candidates: dict[str, dict[str, Any]]
    correlations: dict[str, CorrelationPublic]
    correlations_by_outcome: dict[str, dict[str, CorrelationPublic]]
    ranking: list[dict[str, Any]]
    mixed_candidate: dict[str, Any] | None = Field(
        None, description="the mixed-teacher set's outcome against the best single teacher's"
    )
    protocol: dict[str, Any]
    warnings: list[WarningPublic]
