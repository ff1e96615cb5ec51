"""ORM models (SQLAlchemy 2.0). The schema changes only through Alembic (``migrations/``).

Job state machine (transitions only move forward; every one is stamped)::

    queued ──first unit claimed──> running ──assembled──> succeeded
      │                              │  └──a unit failed──> failed   (also: attempts exhausted)
      │                              └──cancel──> cancelling ──no unit running──> cancelled
      └──cancel──> cancelled

A job's work is done in units (:class:`JobUnit`, :mod:`grace_jobs.lifecycle`): each is claimed,
attempted and heartbeated on its own. A running unit whose heartbeat goes stale stays ``running``
and may be claimed again by another worker (``attempts`` counts claims); that is a re-delivery, not
a step back.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from grace_infra.db.base import Base, JSONType, UTCDateTime, utcnow

ID_LENGTH = 36  # a UUID's text form: the length of every id column


def new_id() -> str:
    return str(uuid.uuid4())


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    CANCELLING = "cancelling"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The Standard Webhooks signing secret (whsec_...): the sender must hold it to sign, so it is
    # stored as is, unlike API keys; rotated through the API or `grace keys webhook-secret`.
    webhook_secret: Mapped[str | None] = mapped_column(String(100), nullable=True)
    webhook_secret_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The secret a rotation replaced, still signing beside the new one until the overlap ends.
    webhook_secret_previous: Mapped[str | None] = mapped_column(String(100), nullable=True)
    webhook_secret_previous_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    def webhook_secrets(self, now: datetime) -> list[str]:
        """The secrets a delivery at ``now`` is signed with: the current one, and the previous one
        while its overlap lasts."""
        current = [self.webhook_secret] if self.webhook_secret else []
        until = self.webhook_secret_previous_until
        if self.webhook_secret_previous and until is not None and now < until:
            return [*current, self.webhook_secret_previous]
        return current


class ApiKey(Base):
    """An API key; only its SHA-256 is stored. ``prefix`` lets people tell keys apart."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    tenant: Mapped[Tenant] = relationship(lazy="joined")


class Dataset(Base):
    """A prompt set uploaded once and referenced by jobs."""

    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    n_prompts: Mapped[int] = mapped_column(Integer)
    prompts: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Job(Base):
    """A scoring job. ``request`` is the validated request body; its work is done in ``units``;
    results land in ``ranking`` and :class:`JobResult` rows, written by the worker ``worker_id``
    (the one that assembled them)."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key"),
        Index("ix_jobs_tenant_created", "tenant_id", "created_at", "id"),
        Index("ix_jobs_status_updated", "status", "updated_at"),
        Index("ix_jobs_tenant_leaderboard", "tenant_id", "student", "prompt_set"),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED)
    stage: Mapped[str | None] = mapped_column(String(32), nullable=True)
    student: Mapped[str] = mapped_column(String(1024), index=True)
    request: Mapped[dict[str, Any]] = mapped_column(JSONType)
    request_hash: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    ranking: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType, nullable=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)  # influence jobs
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # the most any of its units took
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)  # per unit
    worker_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    examples_scored: Mapped[int] = mapped_column(Integer, default=0)
    # the work estimated at submission (CPU-seconds): the tenant's compute quota sums it
    cost_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Leaderboards (grace_jobs.leaderboards): the prompt set's hash, and the hash of everything a
    # score depends on besides the candidate; equal ones compare across jobs. Score jobs only.
    prompt_set: Mapped[str | None] = mapped_column(String(64), nullable=True)
    comparison: Mapped[str | None] = mapped_column(String(64), nullable=True)
    webhook_url: Mapped[str | None] = mapped_column(Text, nullable=True)  # told when the job ends
    # the W3C traceparent of the request that created it: its units' spans continue that trace
    trace_context: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    results: Mapped[list[JobResult]] = relationship(
        back_populates="job", cascade="all, delete-orphan", order_by="JobResult.rank"
    )
    units: Mapped[list[JobUnit]] = relationship(
        back_populates="job", cascade="all, delete-orphan", order_by="JobUnit.position", lazy="selectin"
    )


class JobUnit(Base):
    """One unit of a job's work, each its own queue message (``{job_id}/{position}``) with its own
    claim, attempts, heartbeat and progress: one candidate of a fanned-out scoring job, or the whole
    job (``candidate`` null). States: queued, running, succeeded, failed, cancelled. ``result``:
    the candidate's own scores, for a candidate unit."""

    __tablename__ = "job_units"
    __table_args__ = (
        UniqueConstraint("job_id", "position"),
        Index("ix_job_units_status_heartbeat", "status", "heartbeat_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    candidate: Mapped[str | None] = mapped_column(String(255), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED)
    stage: Mapped[str | None] = mapped_column(String(32), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    progress: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    job: Mapped[Job] = relationship(back_populates="units")


class JobResult(Base):
    """One candidate's scores in a finished job; (job, candidate) is unique so re-runs replace."""

    __tablename__ = "job_results"
    __table_args__ = (UniqueConstraint("job_id", "candidate"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    candidate: Mapped[str] = mapped_column(String(255))
    rank: Mapped[int] = mapped_column(Integer)
    # Every predictor the job computed, by name; null where one is undefined for the candidate.
    predictor_values: Mapped[dict[str, float | None]] = mapped_column(JSONType)
    details: Mapped[dict[str, Any]] = mapped_column(JSONType)

    job: Mapped[Job] = relationship(back_populates="results")


class ResponseSet(Base):
    """Generated teacher responses, keyed by a hash of (tenant, teacher, settings, prompts), so a
    later job with the same inputs reuses them instead of generating again."""

    __tablename__ = "response_sets"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    # JSON as text, not jsonb: generated text may hold U+0000, which jsonb and text reject but an
    # escaped "\u0000" inside a JSON string keeps exactly.
    responses_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class GradientSet(Base):
    """One candidate's projected per-example gradients (``grace_engine.stores.gradient_store``), keyed
    by a hash of (tenant, content address), so a re-score or a grown comparison reuses them. A
    cache: bounded by ``GRACE_GRADIENT_STORE_MB``, least recently used first out."""

    __tablename__ = "gradient_sets"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    nbytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    used_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class WebhookEvent(Base):
    """The webhook outbox: one row per event (``job.succeeded``, ``job.failed``,
    ``job.cancelled``), written in the transaction that ended the job, so an event exists exactly
    when its state change does. ``id`` is the Standard Webhooks ``webhook-id`` (the receiver's
    idempotency key); the dispatcher sends it until a 2xx or ``max_attempts`` (status ``pending``
    -> ``delivered`` or ``failed``)."""

    __tablename__ = "webhook_events"
    __table_args__ = (Index("ix_webhook_events_due", "status", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(32))
    url: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    deliveries: Mapped[list[WebhookDelivery]] = relationship(
        cascade="all, delete-orphan", order_by="WebhookDelivery.attempt", lazy="selectin"
    )


class WebhookDelivery(Base):
    """One attempt to deliver a :class:`WebhookEvent`: when, the HTTP status (None when none came
    back), the error, and how long it took."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("webhook_events.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    duration_ms: Mapped[float] = mapped_column(Float)


class JobDurationBucket(Base):
    """The run-time histogram of succeeded jobs, kept as jobs succeed (:mod:`grace_jobs.durations`),
    so a scrape reads a dozen rows instead of every job: one row per upper bound ``le`` (seconds, as
    Prometheus labels it, ``+Inf`` last) with the cumulative count; the ``+Inf`` row also holds the
    sum of the run times."""

    __tablename__ = "job_duration_buckets"

    le: Mapped[str] = mapped_column(String(16), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)
    sum_seconds: Mapped[float] = mapped_column(Float, default=0.0)
