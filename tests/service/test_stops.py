"""Every stage stops when told: a job made slow in one stage at a time (generation, gradients,
GRACE's splits, the bootstrap, distillation, evaluation) is caught in that stage, handed back by a
worker shutting down, taken up again by another worker and cancelled there. Each stop comes at
the stage's next check (a batch, a split, a subsample chunk, an optimizer step, an eval batch),
not at the stage's end; how soon is timed by ``benchmarks/stops.py``, which runs these scenarios.

The worker's shutdown here is the event its SIGTERM handler sets (``workers.main``);
``test_worker.py`` sends the real signal to a worker process."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from grace_engine.models.tiny_models import TinyModels
from grace_infra.db.models import JobUnit
from grace_infra.settings import Settings
from grace_jobs import lifecycle
from tests.service.conftest import Caller
from tests.service.helpers import DEADLINE, STOP_SCENARIOS, TERMINAL, StopScenario, wait_for
from workers.runner import JobRunner

GENEROUS = 30.0  # seconds: a stop is a split or a batch away; the margin is for a loaded machine


def _drain(runner: JobRunner, job_id: str, session_factory: sessionmaker[Session]) -> None:
    """Run the job's units in turn, as one worker would, until it is told to shut down."""
    with session_factory() as session:
        positions = session.scalars(
            select(JobUnit.position).where(JobUnit.job_id == job_id).order_by(JobUnit.position)
        ).all()
    for position in positions:
        if runner.shutdown.is_set():
            return
        runner.run(lifecycle.unit_key(job_id, position))


def _in_stage(scenario: StopScenario) -> Callable[[dict[str, Any]], bool]:
    def check(job: dict[str, Any]) -> bool:
        assert job["status"] not in TERMINAL, (job["status"], job["error"])
        return any(u["status"] == "running" and scenario.reached(u) for u in job["units"])

    return check


@pytest.mark.parametrize("scenario", STOP_SCENARIOS, ids=lambda s: s.stage_id)
def test_a_job_slow_in_one_stage_hands_back_and_cancels_within_that_stage(
    scenario: StopScenario,
    client: TestClient,
    caller: Caller,
    settings: Settings,
    tiny: TinyModels,
    session_factory: sessionmaker[Session],
) -> None:
    accepted = client.post(scenario.path, json=scenario.body(tiny), headers=caller.headers)
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["id"]

    def start() -> tuple[JobRunner, threading.Thread]:
        runner = JobRunner(settings, session_factory, progress_interval=0.2)
        worker = threading.Thread(target=_drain, args=(runner, job_id, session_factory), daemon=True)
        worker.start()
        wait_for(client, caller, job_id, _in_stage(scenario))
        return runner, worker

    # A worker shutting down hands the unit back, its attempt not counted.
    runner, worker = start()
    asked = time.monotonic()
    runner.shutdown.set()
    worker.join(timeout=DEADLINE)
    handed_back = time.monotonic() - asked
    assert not worker.is_alive()
    back = client.get(f"/v1/jobs/{job_id}", headers=caller.headers).json()
    assert not [u for u in back["units"] if u["status"] == "running"], back["units"]
    handed = [u for u in back["units"] if u["status"] == "queued" and u["started_at"] is not None]
    assert len(handed) == 1, back["units"]
    assert handed[0]["attempts"] == 0

    # Another worker takes it up; a cancel in the same stage stops it.
    _, worker = start()
    asked = time.monotonic()
    assert client.post(f"/v1/jobs/{job_id}/cancel", headers=caller.headers).status_code == 202
    worker.join(timeout=DEADLINE)
    cancelled = time.monotonic() - asked
    job = client.get(f"/v1/jobs/{job_id}", headers=caller.headers).json()
    print(f"{scenario.stage_id}: hand-back {handed_back:.2f} s, cancel {cancelled:.2f} s")
    assert job["status"] == "cancelled"
    assert job["ranking"] is None
    assert not [u for u in job["units"] if u["status"] in ("running", "queued")], job["units"]
    assert handed_back < GENEROUS
    assert cancelled < GENEROUS
