"""Fan-out: a scoring job's candidates are units of work of their own, spread over workers, each
with its own attempts and progress, and the ranking is assembled exactly once. Real worker
processes (``grace worker``) on real PostgreSQL and Redis; the guard itself under threads."""

from __future__ import annotations

import functools
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from app.services import jobs as job_service
from grace_engine.models.generation import Generated
from grace_engine.models.tiny_models import TinyModels
from grace_engine.progress import ProgressEvent
from grace_infra.db.base import utcnow
from grace_infra.db.models import Job, JobResult, JobUnit
from grace_infra.queue import RedisJobQueue
from grace_infra.settings import Settings
from grace_jobs import lifecycle
from grace_jobs.public import worker_label
from tests.service.conftest import Caller, supplied_job
from tests.service.helpers import DEADLINE, TERMINAL, engine_ranking, slow_job, wait_for, worker_process
from workers.runner import DbResponseStore, JobRunner, UnitSession


def _ready(*logs: Path) -> None:
    """Wait until every worker logging to ``logs`` consumes, so the first cannot take every unit
    before the second is up."""
    deadline = time.monotonic() + DEADLINE
    while not all(log.exists() and "consuming" in log.read_text() for log in logs):
        assert time.monotonic() < deadline, [log.read_text()[-2000:] for log in logs if log.exists()]
        time.sleep(0.2)


def _logs(*logs: Path) -> str:
    return "".join(log.read_text() for log in logs)


def _label(log: Path) -> str:
    """The label tenants see of the worker logging to ``log`` (its log names its id)."""
    found = re.search(r"worker (\S+) consuming", log.read_text())
    assert found is not None, log.read_text()[-2000:]
    label = worker_label(found.group(1))
    assert label is not None
    assert found.group(1) not in label  # the id itself (host:pid:tag) is not shown
    return label


def _on(label: str, unit: dict[str, Any]) -> bool:
    """Whether the unit ran (or runs) on the worker labelled ``label``."""
    return unit["worker_id"] == label


def test_two_workers_spread_a_four_candidate_job_and_assemble_it_once(
    client: TestClient,
    caller: Caller,
    settings: Settings,
    tiny: TinyModels,
    tmp_path: Path,
    session_factory: sessionmaker[Session],
) -> None:
    body = slow_job(tiny)
    body["candidates"] = body["candidates"][:4]
    logs = (tmp_path / "a.log", tmp_path / "b.log")
    with worker_process(settings, logs[0]), worker_process(settings, logs[1]):
        _ready(*logs)
        job_id = client.post("/v1/jobs", json=body, headers=caller.headers).json()["id"]
        job = wait_for(client, caller, job_id, lambda j: j["status"] in TERMINAL)
    text = _logs(*logs)
    assert job["status"] == "succeeded", text[-3000:]
    names = [c["name"] for c in body["candidates"]]
    units = job["units"]
    assert [u["candidate"] for u in units] == names
    assert all(u["status"] == "succeeded" and u["attempts"] == 1 for u in units), units
    workers = {u["worker_id"] for u in units}
    assert len(workers) == 2, units  # spread over both
    assert job["assembled_by"] in workers
    assert text.count(f"job {job_id} assembly by") == 1, text[-3000:]
    for u in units:  # each unit reports its own candidate's progress, to the end
        (progress,) = u["progress"].values()
        assert set(u["progress"]) == {u["candidate"]}
        assert progress["gradients"]["done"] == progress["gradients"]["total"] > 0
    # The assembled ranking is the one a single engine call gives on the same responses (read
    # from the workers' store; test_worker checks generation itself): one projection for all units.
    with session_factory() as session:
        stored = session.get(Job, job_id)
        assert stored is not None
        tenant = stored.tenant_id

    class StoredOnly(DbResponseStore):
        def put(self, key: str, generated: Generated) -> None:
            raise AssertionError(f"responses generated again: {key}")

    expected = engine_ranking(
        body, settings, responses=StoredOnly(session_factory, tenant, lambda step, _what: step())
    )
    assert [r["name"] for r in job["ranking"]] == [r.name for r in expected.ranking]
    for got, want in zip(job["ranking"], expected.ranking_rows(), strict=True):
        assert got["grace"] == pytest.approx(want["grace"], rel=1e-5)
        assert got["p_top1"] == pytest.approx(want["p_top1"], abs=1e-9)
        assert got["gap"] == (None if want["gap"] is None else pytest.approx(want["gap"], rel=1e-6))
    assert sum(r["p_top1"] for r in job["ranking"]) == pytest.approx(1.0, abs=1e-9)
    assert job["proj_dim"] == expected.config.proj_dim


def test_a_killed_worker_costs_only_the_unit_it_was_running(
    client: TestClient,
    caller: Caller,
    settings: Settings,
    tiny: TinyModels,
    tmp_path: Path,
    session_factory: sessionmaker[Session],
) -> None:
    """kill -9 of a worker that has finished one unit and is in the middle of another: the finished
    unit is kept (attempt 1, its worker), the other worker re-runs the lost one (attempt 2), every
    other unit ran once, and the job is assembled once: its results written once."""
    logs = (tmp_path / "a.log", tmp_path / "b.log")
    with worker_process(settings, logs[0]) as victim, worker_process(settings, logs[1]):
        _ready(*logs)
        victim_label = _label(logs[0])
        job_id = client.post("/v1/jobs", json=slow_job(tiny), headers=caller.headers).json()["id"]

        def mid_job(j: dict[str, Any]) -> bool:
            assert j["status"] not in TERMINAL, "the job ended before the victim was caught mid-unit"
            mine = [u for u in j["units"] if _on(victim_label, u)]
            return any(u["status"] == "succeeded" for u in mine) and any(
                u["status"] == "running" and u["stage"] in ("generate", "gradients") for u in mine
            )

        before = wait_for(client, caller, job_id, mid_job)
        victim.kill()  # SIGKILL: no cleanup, no ack, the heartbeat just stops
        victim.wait()
        job = wait_for(client, caller, job_id, lambda j: j["status"] in TERMINAL)
    text = _logs(*logs)
    assert job["status"] == "succeeded", text[-3000:]
    kept = [u["candidate"] for u in before["units"] if _on(victim_label, u) and u["status"] == "succeeded"]
    units = {u["candidate"]: u for u in job["units"]}
    for name in kept:  # finished before the kill: not done again
        assert units[name]["attempts"] == 1, units[name]
        assert _on(victim_label, units[name]), units[name]
    rerun = [u for u in units.values() if u["attempts"] == 2]
    assert len(rerun) == 1, job["units"]  # only the unit the victim was running
    assert not _on(victim_label, rerun[0])
    assert all(u["attempts"] == 1 for u in units.values() if u is not rerun[0])
    assert all(u["status"] == "succeeded" for u in units.values())
    assert job["attempts"] == 2
    assert text.count(f"job {job_id} assembly by") == 1, text[-3000:]
    assert len(job["ranking"]) == 5
    with session_factory() as session:
        rows = session.scalar(select(func.count()).select_from(JobResult).where(JobResult.job_id == job_id))
    assert rows == 5


def test_cancel_stops_every_unit(
    client: TestClient, caller: Caller, settings: Settings, tiny: TinyModels, tmp_path: Path
) -> None:
    logs = (tmp_path / "a.log", tmp_path / "b.log")
    with worker_process(settings, logs[0]), worker_process(settings, logs[1]):
        _ready(*logs)
        job_id = client.post("/v1/jobs", json=slow_job(tiny), headers=caller.headers).json()["id"]
        wait_for(
            client,
            caller,
            job_id,
            lambda j: len({u["worker_id"] for u in j["units"] if u["status"] == "running"}) == 2,
        )
        r = client.post(f"/v1/jobs/{job_id}/cancel", headers=caller.headers)
        assert r.status_code == 202
        job = wait_for(client, caller, job_id, lambda j: j["status"] in TERMINAL)
    assert job["status"] == "cancelled", _logs(*logs)[-3000:]
    assert job["ranking"] is None
    states = [u["status"] for u in job["units"]]
    assert set(states) <= {"succeeded", "cancelled"}, states
    assert states.count("cancelled") >= 2  # both running units stopped, and any not yet started


ROUNDS = 8


def _finish_together(
    client: TestClient, caller: Caller, session_factory: sessionmaker[Session]
) -> tuple[str, list[str], list[str]]:
    """One race: a two-unit job whose units two workers finish at the same instant and whose
    results both then try to write at the same instant. The job id, the two finish outcomes
    followed by the two write outcomes, and which workers' writes ran."""
    body = supplied_job({"a": ["x", "y"], "b": ["y", "z"]})
    job_id: str = client.post("/v1/jobs", json=body, headers=caller.headers).json()["id"]
    workers = ("w-1", "w-2")
    for position, worker in enumerate(workers):
        with session_factory() as session:
            assert lifecycle.claim(session, job_id, position, worker, stale_after_seconds=60, max_attempts=3)
    barrier = threading.Barrier(2)
    finished: list[str] = []
    wrote: list[str] = []
    written: list[str] = []

    def finish(position: int) -> None:
        worker = workers[position]
        barrier.wait()
        with session_factory() as session:
            finished.append(lifecycle.unit_done(session, job_id, position, worker, {}))
        barrier.wait()
        with session_factory() as session:
            wrote.append(lifecycle.succeed(session, job_id, worker, lambda job: written.append(worker)))

    threads = [threading.Thread(target=finish, args=(p,)) for p in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=DEADLINE)
    return job_id, finished + wrote, written


def test_units_finishing_together_assemble_exactly_once(
    client: TestClient, caller: Caller, session_factory: sessionmaker[Session]
) -> None:
    """Over and over: exactly one of two units finishing together sees the job complete, exactly
    one of two writers writes, and no finish is lost."""
    for _ in range(ROUNDS):
        job_id, outcomes, written = _finish_together(client, caller, session_factory)
        assert sorted(outcomes[:2]) == ["assemble", "running"], outcomes
        assert sorted(outcomes[2:]) == ["duplicate", "succeeded"], outcomes
        assert len(written) == 1
        job = client.get(f"/v1/jobs/{job_id}", headers=caller.headers).json()
        assert job["status"] == "succeeded"
        assert job["assembled_by"] == worker_label(written[0])  # tenants see the writer's label
        assert [u["status"] for u in job["units"]] == ["succeeded", "succeeded"]


def _blocked_on_job_row(
    session_factory: sessionmaker[Session], job_id: str, write: Callable[[], None]
) -> list[str]:
    """Run ``write`` (a transaction on the job and its units) in a thread while another transaction
    holds the job's row; once it waits for that row, which of the job's unit rows it already holds
    (those another transaction cannot lock). Empty when it takes the job's row first."""
    with session_factory() as holder, session_factory() as probe:
        holder.execute(update(Job).where(Job.id == job_id).values(updated_at=utcnow()))
        thread = threading.Thread(target=write)
        thread.start()
        deadline = time.monotonic() + DEADLINE
        waiting = text("SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = 'transactionid'")
        while not probe.scalar(waiting):
            assert time.monotonic() < deadline, "the write never waited for the job's row"
            time.sleep(0.05)
        held = []
        for unit in probe.scalars(select(JobUnit).where(JobUnit.job_id == job_id)).all():
            try:
                with probe.begin_nested():
                    probe.execute(
                        select(JobUnit.id).where(JobUnit.id == unit.id).with_for_update(nowait=True)
                    )
            except OperationalError:
                held.append(lifecycle.unit_key(job_id, unit.position))
        probe.rollback()
        holder.rollback()
        thread.join(timeout=DEADLINE)
    return held


def test_writes_to_a_job_and_its_units_take_the_job_row_first(
    client: TestClient, caller: Caller, settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    """Every transition takes a job's row, then its units'. The API marking units sent and a unit's
    progress write touch both too, and in the other order they deadlock with a claim (found by
    benchmarks/fanout.py as a 503 on POST /v1/jobs): neither may hold a unit row while it waits."""
    body = supplied_job({"a": ["x", "y"], "b": ["y", "z"]})
    job_id = client.post("/v1/jobs", json=body, headers=caller.headers).json()["id"]
    queue = RedisJobQueue(settings)

    def mark_sent() -> None:
        with session_factory() as session:
            job = session.get(Job, job_id)
            assert job is not None
            job_service.enqueue(session=session, job=job, queue=queue)

    assert _blocked_on_job_row(session_factory, job_id, mark_sent) == []
    runner = JobRunner(settings, session_factory, worker_id="w-order")
    assert runner.claim(job_id, 0)
    unit = UnitSession(runner, job_id, 0)
    report = functools.partial(unit.update, ProgressEvent("gradients", 1, 4, "a"))
    assert _blocked_on_job_row(session_factory, job_id, report) == []
    queue.close()
