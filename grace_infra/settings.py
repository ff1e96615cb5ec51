"""All settings of the service, from ``GRACE_*`` environment variables or a ``.env`` file.

With neither ``GRACE_DATABASE_URL`` nor ``GRACE_REDIS_URL`` set the service runs as the *embedded
default*: a SQLite file under ``GRACE_DATA_DIR``, an in-process worker thread, and (unless
``GRACE_AUTH=on``) no API keys. With ``GRACE_REDIS_URL`` set, jobs go to separate ``grace worker``
processes through Redis and ``GRACE_DATABASE_URL`` (PostgreSQL) is required.
"""

from __future__ import annotations

import json
import logging
import os
import re
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

log = logging.getLogger("grace.config")


def split_list(value: str) -> list[str]:
    """Parse a list setting: a JSON list, or items separated by os.pathsep or commas."""
    value = value.strip()
    if value.startswith("["):
        return [str(v) for v in json.loads(value)]
    return [v for v in re.split(rf"[{re.escape(os.pathsep)},]", value) if v.strip()]


class Settings(BaseSettings):
    """Service settings. Field names map to ``GRACE_<NAME>`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="GRACE_", env_file=".env", extra="ignore")

    # Where state lives.
    database_url: str | None = Field(None, description="SQLAlchemy URL; unset = embedded SQLite")
    redis_url: str | None = Field(None, description="Redis URL for the job queue; unset = in-process")
    data_dir: Path = Field(Path(".grace"), description="embedded database and local files")

    # Who may call, and which models may load.
    auth: Literal["on", "off", "auto"] = Field("auto", description="'auto': off only in the embedded default")
    model_roots: Annotated[list[Path], NoDecode] = Field(default_factory=lambda: [Path(".grace/tiny-models")])
    allowed_hub_ids: Annotated[list[str], NoDecode] = Field(default_factory=list)
    hub_download: bool = Field(False, description="let allowed hub ids download (else local cache only)")
    job_kinds: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="modules of extra job kinds (each defines KIND), beside score, influence and validation",
    )

    # Limits (413 / 422 beyond them).
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    max_prompts_per_job: int = Field(4096, ge=2)
    max_candidates_per_job: int = Field(32, ge=1)
    max_responses_per_prompt: int = Field(16, ge=1)
    max_prompt_chars: int = Field(20_000, ge=1)
    max_response_chars: int = Field(50_000, ge=1)
    max_new_tokens: int = Field(4096, ge=1)
    max_eval_examples: int = Field(1024, ge=1, description="held-out problems per validation job")
    max_training_steps: int = Field(20_000, ge=1, description="optimizer steps per distilled student")
    page_size_max: int = Field(100, ge=1)

    # Workers and queue.
    queue_name: str = "grace-jobs"
    max_attempts: int = Field(3, ge=1, description="claims before a job fails with worker_lost")
    heartbeat_seconds: float = Field(5.0, gt=0)
    stale_after_seconds: float = Field(
        60.0, gt=0, description="a running job's heartbeat older than this is lost"
    )
    requeue_queued_after_seconds: float = Field(30.0, gt=0)
    reconcile_every_seconds: float = Field(10.0, gt=0)
    job_time_limit_seconds: int = Field(7 * 24 * 3600, ge=60)
    broker_heartbeat_ms: int = Field(15_000, ge=1000, description="Dramatiq worker heartbeat timeout")
    tracing: Literal["off", "otlp"] = Field(
        "off",
        description="`otlp`: OpenTelemetry traces (API -> worker) over OTLP/HTTP, "
        "to where OTEL_EXPORTER_OTLP_ENDPOINT says",
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="`json`: one JSON object per line, with request and job ids"
    )
    metrics_key: SecretStr | None = Field(
        None,
        description="where API keys are required, /metrics answers only `Authorization: Bearer` this "
        "key (an operator's, not a tenant's: the figures span every tenant); unset, /metrics is refused",
    )
    worker_alive_file: Path | None = Field(
        None,
        description="`grace worker` touches this file every second while its consumer, worker and "
        "reconciler threads live: a container health check tests its age",
    )
    model_cache_size: int = Field(2, ge=1)
    api_processes: int = Field(
        1,
        ge=1,
        le=64,
        description="`grace serve` processes sharing the port (PostgreSQL and Redis only: the embedded "
        "default keeps its worker and SQLite in one). One process serves on about one core; each "
        "holds its own pool of 30 connections",
    )
    max_concurrent_requests: int | None = Field(
        None,
        ge=1,
        description="API requests in flight at once; more wait their turn, then get a 503 busy. "
        "Default: 24 on PostgreSQL (of its 30 pooled connections), 8 embedded",
    )
    request_wait_seconds: float = Field(
        30.0, gt=0, description="how long a request over the limit waits for its turn before a 503 busy"
    )
    max_scoring_seconds: float = Field(
        120.0,
        gt=0,
        description="a job whose scoring of one candidate (GRACE's splits and its uncertainty) is "
        "estimated at submission above this many CPU-seconds is refused, naming the settings that drive it",
    )
    max_job_seconds: float = Field(
        86_400.0,
        gt=0,
        description="a job whose whole work (generation, gradients, scoring, distillation, evaluation) "
        "is estimated at submission above this many CPU-seconds is refused, naming what drives it",
    )
    # Per-tenant quotas (429 with Retry-After beyond them).
    tenant_max_active_jobs: int = Field(
        32, ge=1, description="a tenant's jobs queued, running or cancelling at once"
    )
    tenant_submissions_per_minute: int = Field(120, ge=1, description="jobs a tenant may submit per minute")
    tenant_max_compute_seconds: float = Field(
        4 * 86_400.0,
        gt=0,
        description="the estimated CPU-seconds of a tenant's queued and running jobs together",
    )
    gradient_store_mb: int = Field(
        2048,
        ge=0,
        description="the gradient store's bound (projected gradients kept for re-scores); 0 = off",
    )
    gradient_store_tenant_mb: int = Field(
        512, ge=1, description="one tenant's share of the gradient store: a tenant evicts only its own"
    )
    memory_budget_gb: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="peak memory a job's batches are sized from; unset = half the machine's, at most 8 GB",
    )
    # Webhooks (Standard Webhooks, delivered from the outbox by every worker's dispatcher).
    webhook_allow_private: bool = Field(
        False, description="allow webhook targets on loopback and private networks (tests, on-prem)"
    )
    webhook_max_attempts: int = Field(8, ge=1, description="deliveries of one event before it is failed")
    webhook_backoff_seconds: float = Field(
        2.0, gt=0, description="the first retry's delay; each next one doubles, up to an hour"
    )
    webhook_timeout_seconds: float = Field(10.0, gt=0)
    webhook_rotation_overlap_seconds: float = Field(
        86400.0,
        ge=0,
        le=30 * 86400,  # a replaced secret must stop signing some day
        allow_inf_nan=False,
        description="after a secret is rotated, deliveries carry a signature by the previous secret "
        "too for this long, so receivers can switch without rejecting events; 0 = the old one stops at once",
    )
    webhook_poll_seconds: float = Field(
        1.0, gt=0, description="how often the dispatcher looks for due events"
    )
    device: str = "cpu"
    generation_backend: Literal["auto", "vllm", "transformers"] = Field(
        "auto", description="teacher generation; 'auto' = vLLM when installed and a GPU is visible"
    )
    vllm_gpu_memory_utilization: float = Field(0.85, gt=0, le=1)
    vllm_tensor_parallel_size: int = Field(1, ge=1)
    vllm_release_below_gb: float = Field(
        8.0,
        ge=0,
        description="free GPU memory under which vLLM engines are dropped before the gradient stage",
    )

    @field_validator("model_roots", "allowed_hub_ids", "job_kinds", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        """``a:b`` (os.pathsep), ``a,b`` or a JSON list, as people write them in env files."""
        return split_list(value) if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _normalize_driver(cls, value: str | None) -> str | None:
        """Plain ``postgres://``/``postgresql://`` URLs get the psycopg 3 driver."""
        if value is None:
            return None
        for prefix in ("postgres://", "postgresql://"):
            if value.startswith(prefix):
                return "postgresql+psycopg://" + value[len(prefix) :]
        return value

    @model_validator(mode="after")
    def _queue_needs_shared_database(self) -> Settings:
        if self.redis_url and not self.database_url:
            raise ValueError("GRACE_REDIS_URL needs GRACE_DATABASE_URL: queued workers share the database")
        return self

    @property
    def embedded(self) -> bool:
        """No Redis: the in-process worker runs jobs."""
        return self.redis_url is None

    @cached_property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'grace.db').resolve()}"

    @property
    def webhook_rotation_overlap(self) -> timedelta:
        return timedelta(seconds=self.webhook_rotation_overlap_seconds)

    @property
    def request_concurrency(self) -> int:
        """API requests admitted at once (:mod:`app.admission`): below the connections a request
        can hold, so none waits for one while holding a thread another needs."""
        if self.max_concurrent_requests is not None:
            return self.max_concurrent_requests
        return 8 if self.sqlalchemy_url.startswith("sqlite") else 24

    @property
    def auth_enabled(self) -> bool:
        return self.auth == "on" or (self.auth == "auto" and not self.embedded)


def get_settings() -> Settings:
    return Settings()
