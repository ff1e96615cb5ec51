"""Dependency outages on real servers: PostgreSQL stopped under a live API is a 503 with
``Retry-After`` on every route (never a 500), ``/readyz`` names it, and the API recovers by itself
when PostgreSQL returns."""

from __future__ import annotations

import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.auth import create_key
from app.db.migrate import upgrade
from app.db.session import make_engine, make_session_factory
from app.main import create_app
from grace_engine.tiny_models import TinyModels
from tests.service.conftest import assert_problem, job_body, service_settings

SERVICES = Path(__file__).resolve().parents[2] / "scripts" / "services.sh"


def _services(*args: str) -> str:
    done = subprocess.run(["bash", str(SERVICES), *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def own_servers() -> Iterator[tuple[Path, dict[str, str]]]:
    """A PostgreSQL + Redis pair of this test's own, so stopping it disturbs no other test. Under
    /tmp directly: the postgres user must reach the directory, and pytest's tmp_path is private."""
    where = Path(tempfile.mkdtemp(prefix="grace-outage-"))  # services.sh opens it to postgres
    exports = _services("start", str(where))
    env = dict(
        line.removeprefix("export ").split("=", 1)
        for line in exports.splitlines()
        if line.startswith("export ")
    )
    try:
        yield where, env
    finally:
        _services("stop", str(where))


def test_a_database_outage_is_a_503_with_retry_after_and_the_api_recovers(
    own_servers: tuple[Path, dict[str, str]], tiny: TinyModels
) -> None:
    where, env = own_servers
    url = env["GRACE_TEST_DATABASE_URL"]
    upgrade(url)
    settings = service_settings(url, env["GRACE_TEST_REDIS_URL"], tiny.root)
    engine = make_engine(settings)
    with make_session_factory(engine)() as session:
        headers = {"Authorization": f"Bearer {create_key(session=session, tenant_name='outage')}"}
    engine.dispose()
    with TestClient(create_app(settings)) as client:  # a 500 would raise here, not pass quietly
        assert client.get("/v1/jobs", headers=headers).status_code == 200
        _services("pg-stop", str(where))
        probes = [
            client.get("/v1/jobs", headers=headers),
            client.get("/v1/rankings", params={"student": "s"}, headers=headers),
            client.get(f"/v1/jobs/{uuid.uuid4()}", headers=headers),
            client.post("/v1/jobs", json=job_body(), headers=headers),
            client.post(
                "/v1/datasets", json={"prompts": [{"prompt": "a"}, {"prompt": "b"}]}, headers=headers
            ),
        ]
        for response in probes:
            body = assert_problem(response, 503)
            assert int(response.headers["Retry-After"]) > 0
            assert body["dependency"] == "database"
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"].startswith("unreachable")
        assert ready.json()["checks"]["queue"] == "ok"
        _services("pg-start", str(where))
        deadline = time.monotonic() + 120
        while (status := client.get("/v1/jobs", headers=headers).status_code) != 200:
            assert status == 503, status
            assert time.monotonic() < deadline, "the API did not recover after PostgreSQL returned"
            time.sleep(0.2)
        assert client.get("/readyz").status_code == 200
