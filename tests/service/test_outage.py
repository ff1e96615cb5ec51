"""Dependency outages on real servers: PostgreSQL stopped under a live API is a 503 with
``Retry-After`` on every route (never a 500), ``/readyz`` names it, and the API recovers by itself
when PostgreSQL returns; PostgreSQL blips under a running job (two real workers) delay it but cost
it no attempt."""

from __future__ import annotations

import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from grace_engine.models.tiny_models import TinyModels
from tests.service.conftest import Caller, assert_problem, job_body, migrated_caller, service_settings
from tests.service.helpers import DEADLINE, TERMINAL, slow_job, wait_for, worker_process

SERVICES = Path(__file__).resolve().parents[2] / "scripts" / "services.sh"


def _services(*args: str) -> str:
    done = subprocess.run(["bash", str(SERVICES), *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def own_servers() -> Iterator[tuple[Path, dict[str, str]]]:
    """A PostgreSQL + Redis pair of this module's own, so stopping it disturbs no other test (each
    test here starts it again before it ends). Under /tmp directly: the postgres user must reach
    the directory, and pytest's tmp_path is private."""
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


def _recovered(client: TestClient, caller: Caller) -> None:
    """Poll until the API answers again; until then every answer must be a 503 with Retry-After."""
    deadline = time.monotonic() + 120
    while (response := client.get("/v1/jobs", headers=caller.headers)).status_code != 200:
        assert_problem(response, 503)
        assert int(response.headers["Retry-After"]) > 0
        assert time.monotonic() < deadline, "the API did not recover after PostgreSQL returned"
        time.sleep(0.2)


def test_a_database_outage_is_a_503_with_retry_after_and_the_api_recovers(
    own_servers: tuple[Path, dict[str, str]], tiny: TinyModels
) -> None:
    where, env = own_servers
    url = env["GRACE_TEST_DATABASE_URL"]
    settings = service_settings(url, env["GRACE_TEST_REDIS_URL"], tiny.root, requeue_queued_after_seconds=2.0)
    caller = migrated_caller(url, settings)
    headers = caller.headers
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
        _recovered(client, caller)
        assert client.get("/readyz").status_code == 200


# Ten heartbeats each (0.5 s apart here): long enough that the job's writes meet the outage.
BLIPS, BLIP_SECONDS = 2, 5.0


def test_database_blips_under_a_running_job_cost_it_no_attempt(
    own_servers: tuple[Path, dict[str, str]], tiny: TinyModels, tmp_path: Path
) -> None:
    """Two 5-second PostgreSQL outages while two workers are up and one runs the job: the job
    waits each out (its writes retry up to the stale bound, 60 s as in production), nobody declares its
    worker lost, and it succeeds on its first attempt."""
    where, env = own_servers
    url = env["GRACE_TEST_DATABASE_URL"]
    # The production stale bound: the blips are well inside it even on a loaded machine.
    settings = service_settings(
        url,
        env["GRACE_TEST_REDIS_URL"],
        tiny.root,
        stale_after_seconds=60.0,
        requeue_queued_after_seconds=2.0,
    )
    caller = migrated_caller(url, settings)
    log = tmp_path / "workers.log"
    with (
        worker_process(settings, log),
        worker_process(settings, log),
        TestClient(create_app(settings)) as client,
    ):
        job_id = client.post("/v1/jobs", json=slow_job(tiny), headers=caller.headers).json()["id"]
        wait_for(client, caller, job_id, lambda j: j["status"] == "running" and j["stage"] == "gradients")
        for blip in range(BLIPS):
            live = client.get(f"/v1/jobs/{job_id}", headers=caller.headers).json()
            assert live["status"] == "running", (blip, live["status"], log.read_text()[-3000:])
            _services("pg-stop", str(where))
            ends = time.monotonic() + BLIP_SECONDS
            while time.monotonic() < ends:  # a dashboard polling through the outage
                polled = client.get(f"/v1/jobs/{job_id}", headers=caller.headers)
                assert_problem(polled, 503)
                assert int(polled.headers["Retry-After"]) > 0
                time.sleep(0.5)
            _services("pg-start", str(where))
            _recovered(client, caller)
        job = wait_for(client, caller, job_id, lambda j: j["status"] in TERMINAL)
    assert job["status"] == "succeeded", (job["error"], log.read_text()[-3000:])
    assert job["attempts"] == 1, log.read_text()[-3000:]
    assert "database unavailable, retrying" in log.read_text()  # the job did meet the outages
    assert len(job["ranking"]) == 5


def test_an_outage_past_the_stale_bound_re_runs_the_job_instead_of_failing_it(
    own_servers: tuple[Path, dict[str, str]], tiny: TinyModels, tmp_path: Path
) -> None:
    """PostgreSQL down for three stale bounds under a running job: the worker gives up on it without
    marking it failed, and once the database is back the reconciler sends it again; it succeeds
    on its second attempt."""
    where, env = own_servers
    url = env["GRACE_TEST_DATABASE_URL"]
    settings = service_settings(
        url, env["GRACE_TEST_REDIS_URL"], tiny.root, requeue_queued_after_seconds=2.0
    )  # stale after 3 s
    caller = migrated_caller(url, settings)
    log = tmp_path / "workers.log"
    with worker_process(settings, log), TestClient(create_app(settings)) as client:
        job_id = client.post("/v1/jobs", json=slow_job(tiny, 2), headers=caller.headers).json()["id"]
        wait_for(client, caller, job_id, lambda j: j["status"] == "running" and j["stage"] == "gradients")
        _services("pg-stop", str(where))
        deadline = time.monotonic() + DEADLINE
        while "left for the reconciler" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        _services("pg-start", str(where))
        _recovered(client, caller)
        job = wait_for(client, caller, job_id, lambda j: j["status"] in TERMINAL)
    assert job["status"] == "succeeded", (job["error"], log.read_text()[-3000:])
    assert job["attempts"] == 2
