"""Service fixtures on real PostgreSQL and Redis (started by scripts/test.sh).

Each test session migrates a fresh database with Alembic; tests isolate themselves by tenant, so
nothing needs truncating between them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.main import create_app
from grace_engine.models.tiny_models import TinyModels
from grace_infra.db.migrate import upgrade
from grace_infra.db.models import Job, JobUnit
from grace_infra.db.session import make_engine, make_session_factory
from grace_infra.settings import Settings
from grace_jobs import lifecycle
from grace_jobs.tenants import create_key


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        if os.environ.get("CI"):
            pytest.fail(
                f"{name} is not set: run the suite with `bash scripts/test.sh`, which starts the servers"
            )
        pytest.skip(f"{name} not set (use `bash scripts/test.sh` to start PostgreSQL and Redis)")
    return value


def fresh_database(prefix: str = "grace") -> str:
    """Create an empty database next to the test one and return its URL."""
    admin_url = _env("GRACE_TEST_PG_ADMIN")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="session")
def database_url() -> str:
    url = fresh_database()
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def redis_url() -> str:
    return _env("GRACE_TEST_REDIS_URL")


METRICS_KEY = "metrics-operator-key"  # the operator's, for scraping /metrics where keys are required


def service_settings(database_url: str, redis_url: str, models: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "redis_url": redis_url,
        "auth": "on",
        "model_roots": [models],
        "queue_name": f"grace-test-{uuid.uuid4().hex[:8]}",
        "heartbeat_seconds": 0.5,
        "stale_after_seconds": 3.0,
        # Never, unless a test says so: the session's database holds other tests' jobs, queued and
        # never run (API-only tests), and a reconciler re-sending them makes every worker run them.
        "requeue_queued_after_seconds": 86_400.0,
        "reconcile_every_seconds": 0.5,
        "broker_heartbeat_ms": 2000,
        "metrics_key": METRICS_KEY,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(database_url: str, redis_url: str, tiny: TinyModels) -> Settings:
    return service_settings(database_url, redis_url, tiny.root)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture(scope="session")
def session_factory(database_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(Settings(database_url=database_url))
    yield make_session_factory(engine)
    engine.dispose()


@dataclass
class Caller:
    """An API key of a fresh tenant, and the headers that send it."""

    tenant: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def migrated_caller(url: str, settings: Settings) -> Caller:
    """Migrate the database at ``url`` (one of a test's own) and make a tenant's key in it."""
    upgrade(url)
    tenant = f"tenant-{uuid.uuid4().hex[:8]}"
    engine = make_engine(settings)
    with make_session_factory(engine)() as session:
        key = create_key(session=session, tenant_name=tenant)
    engine.dispose()
    return Caller(tenant=tenant, key=key)


@pytest.fixture
def new_caller(session_factory: sessionmaker[Session]) -> Callable[[], Caller]:
    def make() -> Caller:
        tenant = f"tenant-{uuid.uuid4().hex[:8]}"
        with session_factory() as session:
            return Caller(tenant, create_key(session=session, tenant_name=tenant))

    return make


@pytest.fixture
def caller(new_caller: Callable[[], Caller]) -> Caller:
    return new_caller()


def job_body(**overrides: Any) -> dict[str, Any]:
    """A small valid job on the tiny models: 6 prompts, two model candidates, m = 2, d = 64."""
    body: dict[str, Any] = {
        "student": "student",
        "candidates": [
            {"name": "tutor", "model": "tutor", "temperature": 0.6, "max_tokens": 32},
            {"name": "noise", "model": "noise", "temperature": 1.0, "max_tokens": 32},
        ],
        "prompts": [
            {
                "id": f"p{i}",
                "prompt": f"Tom has {i} apples and buys {i + 2} more. How many?",
                "answer": str(2 * i + 2),
            }
            for i in range(6)
        ],
        "scoring": {"responses_per_prompt": 2, "proj_dim": 64},
    }
    body.update(overrides)
    return body


def supplied_job(responses: dict[str, list[str]], **scoring: Any) -> dict[str, Any]:
    """job_body's prompts, with candidates that supply responses (name -> the same two responses
    for every prompt): nothing is generated. m = 2, d = 32 unless ``scoring`` says otherwise."""
    body = job_body()
    ids = [p["id"] for p in body["prompts"]]
    body["candidates"] = [
        {"name": n, "responses": {pid: texts for pid in ids}} for n, texts in responses.items()
    ]
    body["scoring"] = {"responses_per_prompt": 2, "proj_dim": 32, **scoring}
    return body


def run_job(runner: Any, job_id: str) -> str:
    """Run each unit of ``job_id`` in turn with ``runner`` (a workers.runner.JobRunner), as one
    worker draining the job's messages would; the job's status then."""
    with runner.session_factory() as session:
        positions = session.scalars(
            sa.select(JobUnit.position).where(JobUnit.job_id == job_id).order_by(JobUnit.position)
        ).all()
    for position in positions:
        runner.run(lifecycle.unit_key(job_id, position))
    with runner.session_factory() as session:
        return str(session.scalar(sa.select(Job.status).where(Job.id == job_id)))


def run_to_success(client: TestClient, caller: Caller, runner: Any, body: dict[str, Any]) -> dict[str, Any]:
    """Submit ``body``, run it with ``runner`` (a workers.runner.JobRunner) in this process, and
    return the job's JSON, which must have succeeded."""
    accepted = client.post("/v1/jobs", json=body, headers=caller.headers)
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["id"]
    assert run_job(runner, job_id) == "succeeded"
    job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}", headers=caller.headers).json()
    return job


def assert_problem(response: Any, status: int, field: str | None = None) -> dict[str, Any]:
    """RFC 9457 shape on every error path, and the offending field when there is one."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    doc: dict[str, Any] = response.json()
    for key in ("type", "title", "status", "detail", "instance"):
        assert key in doc, doc
    assert doc["status"] == status
    if field is not None:
        assert field in [e["field"] for e in doc.get("errors", [])], doc
    return doc


def embedded_key(tmp_path: Path, tenant: str) -> str:
    """An API key of ``tenant`` in the embedded database that ``embedded_server(tmp_path, ...)``
    serves, made the way an operator makes one (``grace migrate``, ``grace keys create``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRACE_")}
    env["GRACE_DATA_DIR"] = str(tmp_path / "data")
    cli = [sys.executable, "-m", "grace_cli.main"]
    subprocess.run([*cli, "migrate"], env=env, check=True, capture_output=True, timeout=120)
    created = subprocess.run(
        [*cli, "keys", "create", "--tenant", tenant],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return created.stdout.strip()


@contextmanager
def embedded_server(
    tmp_path: Path, model_root: Path, *, ready_within: float = 120.0, env: dict[str, str] | None = None
) -> Iterator[str]:
    """``grace serve`` with no database or Redis configured (the embedded default), on a free
    loopback port, until ``/readyz`` answers 200; yields its base URL and stops it afterwards.
    ``env`` adds settings (e.g. ``GRACE_AUTH``) to the embedded defaults."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server_env = {k: v for k, v in os.environ.items() if not k.startswith("GRACE_")}
    server_env.update(GRACE_DATA_DIR=str(tmp_path / "data"), GRACE_MODEL_ROOTS=str(model_root), **(env or {}))
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "grace_cli.main", "serve", "--port", str(port)],
            env=server_env,
            cwd=tmp_path,
            stdout=out,
            stderr=out,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_within
        while True:
            try:
                with urllib.request.urlopen(f"{base}/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the service never became ready:\n" + log.read_text()
            time.sleep(0.1)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=60)
