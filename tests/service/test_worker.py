"""Workers as separate processes on real Redis and PostgreSQL: the happy path, cancellation, a
worker killed mid-job, and a Redis restart that loses the queued message."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.main import create_app
from grace_engine.models.tiny_models import TinyModels
from grace_infra.db.models import JobResult
from grace_infra.settings import Settings
from tests.service.conftest import Caller, fresh_database, job_body, migrated_caller, service_settings
from tests.service.helpers import (
    DEADLINE,
    TERMINAL,
    engine_ranking,
    start_slow_job,
    succeeded_through_worker,
    wait_for,
    worker_process,
)


def test_job_runs_to_the_same_ranking_as_the_engine(
    client: TestClient, caller: Caller, settings: Settings, tmp_path: Path
) -> None:
    body = job_body()
    alive = tmp_path / "alive"
    with worker_process(settings.model_copy(update={"worker_alive_file": alive}), tmp_path / "worker.log"):
        created = client.post("/v1/jobs", json=body, headers=caller.headers).json()
        assert created["status"] == "queued"
        seen: list[str] = []

        def record(job: dict[str, Any]) -> bool:
            if not seen or seen[-1] != job["status"]:
                seen.append(job["status"])
            return job["status"] in TERMINAL

        job = wait_for(client, caller, created["id"], record)
        # The health check's file: touched while the worker lives, and again after this job.
        touched = alive.stat().st_mtime
        deadline = time.monotonic() + DEADLINE
        while alive.stat().st_mtime == touched:
            assert time.monotonic() < deadline, "the worker stopped touching its alive file"
            time.sleep(0.2)
    assert job["status"] == "succeeded", (tmp_path / "worker.log").read_text()[-3000:]
    assert seen[-1] == "succeeded"
    assert set(seen) <= {"queued", "running", "succeeded"}
    expected = engine_ranking(body, settings)
    assert [r["name"] for r in job["ranking"]] == [r.name for r in expected.ranking]
    for got, want in zip(job["ranking"], expected.ranking_rows(), strict=True):
        assert got["grace"] == pytest.approx(want["grace"], rel=1e-6)
        assert got["values"]["g_vendi"] == pytest.approx(want["values"]["g_vendi"], rel=1e-6)
        assert got["g_vendi"] == got["values"]["g_vendi"]  # the deprecated one-field view agrees
    # The warnings travel with the API result as the engine raised them, numbers included.
    assert job["warnings"] == [w.to_dict() for w in expected.warnings]
    assert {w["code"] for w in job["warnings"]} >= {"small_sample"}
    ranking = client.get(f"/v1/jobs/{created['id']}/ranking", headers=caller.headers).json()
    assert ranking["warnings"] == job["warnings"]
    # Every predictor, the uncertainty and the projection's identity travel with the API result.
    assert sum(r["p_top1"] for r in job["ranking"]) == pytest.approx(1.0, abs=1e-9)
    for got, want in zip(job["ranking"], expected.ranking_rows(), strict=True):
        assert got["values"]["rsr"] == pytest.approx(want["values"]["rsr"], rel=1e-6)
        assert got["mean_response_tokens"] == want["mean_response_tokens"]
        for key in ("gap", "gap_interval", "gap_p_value", "gap_wilcoxon_p"):
            assert got[key] == (None if want[key] is None else pytest.approx(want[key], rel=1e-6))
    assert job["settled"] is expected.settled
    assert ranking["settled"] is expected.settled
    assert expected.projection is not None
    assert job["projection"]["checksum"] == expected.projection.checksum
    assert job["uncertainty"]["leader"] == job["ranking"][0]["name"]
    assert job["uncertainty"]["method"] == "paired_cv"
    assert job["proj_dim"] == expected.config.proj_dim == 64
    assert job["budget"] is None
    # The mixed-teacher dataset: one chat example per prompt.
    dataset = client.get(f"/v1/jobs/{created['id']}/dataset", headers=caller.headers)
    assert dataset.status_code == 200, dataset.text
    assert dataset.headers["content-type"].startswith("application/x-ndjson")
    rows = [json.loads(line) for line in dataset.text.splitlines()]
    assert [r["prompt_id"] for r in rows] == [p["id"] for p in body["prompts"]]
    assert {r["teacher"] for r in rows} <= {"tutor", "noise"}
    assert all(r["messages"][0]["role"] == "user" for r in rows)


def test_a_budget_aware_job_reports_its_rounds_and_compute(
    client: TestClient, caller: Caller, settings: Settings, tmp_path: Path
) -> None:
    body = job_body()
    body["scoring"] = {"responses_per_prompt": 2, "budget": {"initial_prompts": 4}}
    job = succeeded_through_worker(client, caller, settings, tmp_path / "worker.log", "/v1/jobs", body)
    spent = job["budget"]
    assert spent["examples_full"] == 2 * 6 * 2
    assert spent["rounds"][0]["n_prompts"] == 4
    assert spent["examples_used"] == spent["rounds"][-1]["examples"] <= spent["examples_full"]
    assert spent["compute_fraction"] == pytest.approx(spent["examples_used"] / spent["examples_full"])
    assert spent["stopped"] in ("settled", "exhausted")
    assert job["proj_dim"] == spent["rounds"][-1]["proj_dim"] == 16  # auto for 6 x 2
    ranking = client.get(f"/v1/jobs/{job['id']}/ranking", headers=caller.headers).json()
    assert ranking["budget"] == spent


def test_sigterm_hands_the_job_back_and_another_worker_finishes_it(
    client: TestClient,
    caller: Caller,
    settings: Settings,
    tiny: TinyModels,
    tmp_path: Path,
    session_factory: sessionmaker[Session],
) -> None:
    """SIGTERM mid-job: the worker stops at the next batch boundary, the job goes back to the queue
    without costing an attempt, the worker exits, and another worker finishes the job."""
    log = tmp_path / "workers.log"
    with worker_process(settings, log) as first:
        job_id = start_slow_job(client, caller, tiny, candidates=2)
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=DEADLINE)  # well before the job would have finished: see the log line below
        assert first.returncode == 0, log.read_text()[-3000:]
    assert "handed_back (worker shutting down)" in log.read_text(), log.read_text()[-3000:]
    back = client.get(f"/v1/jobs/{job_id}", headers=caller.headers).json()
    # The unit it was running is queued again, its attempt not counted; no unit is left running
    # (the job is queued again if that was its only unit under way, else it waits, running).
    assert not [u for u in back["units"] if u["status"] == "running"], back["units"]
    handed = [u for u in back["units"] if u["status"] == "queued" and u["started_at"] is not None]
    assert len(handed) == 1, back["units"]
    assert handed[0]["attempts"] == 0
    assert back["status"] == ("queued" if all(u["status"] == "queued" for u in back["units"]) else "running")
    with worker_process(settings, log):
        job = wait_for(client, caller, job_id, lambda j: j["status"] in TERMINAL)
    assert job["status"] == "succeeded", log.read_text()[-3000:]
    assert job["attempts"] == 1  # only the worker that finished it counts
    with session_factory() as session:
        rows = session.scalar(select(func.count()).select_from(JobResult).where(JobResult.job_id == job_id))
    assert rows == len(job["ranking"]) == 2


@contextmanager
def own_redis(tmp_path: Path) -> Iterator[Callable[[], None]]:
    """A private redis-server (no persistence) and a function that kills and restarts it empty."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (scripts/services.sh installs it)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(tmp_path),
    ]
    procs = [subprocess.Popen(args, stdout=subprocess.DEVNULL)]

    def ready() -> None:
        import redis

        for _ in range(100):
            try:
                redis.Redis(port=port).ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise AssertionError("redis did not start")

    def restart() -> None:
        procs[-1].kill()
        procs[-1].wait()
        procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL))
        ready()

    ready()
    restart.url = f"redis://127.0.0.1:{port}/0"  # type: ignore[attr-defined]
    try:
        yield restart
    finally:
        procs[-1].kill()
        procs[-1].wait()


def test_redis_restart_while_queued_loses_no_job(tiny: TinyModels, tmp_path: Path) -> None:
    with own_redis(tmp_path) as restart_redis:
        settings = service_settings(  # the re-send of a queued job lost with Redis is what is tested
            fresh_database(),  # its own: the session's holds other tests' queued jobs, re-sent too
            restart_redis.url,  # type: ignore[attr-defined]
            tiny.root,
            requeue_queued_after_seconds=2.0,
        )
        caller = migrated_caller(str(settings.database_url), settings)
        with TestClient(create_app(settings)) as client:
            job_id = client.post("/v1/jobs", json=job_body(), headers=caller.headers).json()["id"]
            queued = client.get(f"/v1/jobs/{job_id}", headers=caller.headers).json()
            assert queued["status"] == "queued"
            restart_redis()  # the message and everything else in Redis is gone
            started = time.monotonic()
            with worker_process(settings, tmp_path / "worker.log"):
                job = wait_for(client, caller, job_id, lambda j: j["status"] in TERMINAL)
                recovered = time.monotonic() - started
    print(f"redis restart: job re-enqueued and succeeded {recovered:.1f} s after a worker started")
    assert job["status"] == "succeeded", (tmp_path / "worker.log").read_text()[-3000:]
    assert job["attempts"] == 1
