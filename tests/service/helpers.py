"""What the service tests share beyond fixtures: real worker processes, polling a job to a
condition under a generous deadline, the demo job's body, and the engine's own ranking of a job
(what the service must give)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from grace_engine.models.tiny_models import TinyModels
from grace_engine.pipelines.context import EngineContext, JobInputs
from grace_engine.pipelines.results import RankingResult
from grace_engine.pipelines.scoring import rank_teachers
from grace_infra.settings import Settings
from grace_jobs.policy import policy_from
from grace_jobs.requests import JobCreate, engine_prompts
from tests.service.conftest import Caller

TERMINAL = {"succeeded", "failed", "cancelled"}


def settings_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRACE_")}
    env.update(
        GRACE_DATABASE_URL=str(settings.database_url),
        GRACE_REDIS_URL=str(settings.redis_url),
        GRACE_MODEL_ROOTS=os.pathsep.join(str(p) for p in settings.model_roots),
        GRACE_QUEUE_NAME=settings.queue_name,
        GRACE_HEARTBEAT_SECONDS=str(settings.heartbeat_seconds),
        GRACE_STALE_AFTER_SECONDS=str(settings.stale_after_seconds),
        GRACE_REQUEUE_QUEUED_AFTER_SECONDS=str(settings.requeue_queued_after_seconds),
        GRACE_RECONCILE_EVERY_SECONDS=str(settings.reconcile_every_seconds),
        GRACE_BROKER_HEARTBEAT_MS=str(settings.broker_heartbeat_ms),
        GRACE_WEBHOOK_ALLOW_PRIVATE=str(settings.webhook_allow_private).lower(),
        GRACE_WEBHOOK_BACKOFF_SECONDS=str(settings.webhook_backoff_seconds),
        GRACE_WEBHOOK_POLL_SECONDS=str(settings.webhook_poll_seconds),
        GRACE_JOB_KINDS=",".join(settings.job_kinds),
    )
    if settings.worker_alive_file is not None:
        env["GRACE_WORKER_ALIVE_FILE"] = str(settings.worker_alive_file)
    return env


@contextmanager
def worker_process(
    settings: Settings, log: Path, *, python_path: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A ``grace worker`` process on ``settings`` (``python_path``: a directory it also imports
    from, for a job kind module outside the package)."""
    env = settings_env(settings)
    if python_path is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(python_path), env.get("PYTHONPATH")) if p)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "grace_cli.main", "worker"],
            env=env,
            stdout=out,
            stderr=out,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# Conditions are polled, so a generous deadline costs nothing when the machine is fast and keeps a
# loaded one from failing a test that would have passed.
DEADLINE = 600.0


def wait_for(
    client: TestClient,
    caller: Caller,
    job_id: str,
    until: Callable[[dict[str, Any]], bool],
    timeout: float = DEADLINE,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}", headers=caller.headers).json()
        if until(job):
            return job
        time.sleep(0.1)
    raise AssertionError(f"timed out; last state {job['status']} {job['stage']} attempts={job['attempts']}")


def slow_job(tiny: TinyModels, candidates: int = 5) -> dict[str, Any]:
    """The demo job's first ``candidates`` (of 5; m = 4) on its first 12 prompts: a few seconds per
    unit on 2 cores, long enough to catch a unit mid-stage and short enough that tests which
    interrupt a job can also afford to wait for its end."""
    chosen = json.loads(tiny.candidates_file.read_text())["candidates"][:candidates]
    lines = tiny.prompts_file.read_text().splitlines()[:12]
    return {"student": "student", "candidates": chosen, "prompts": [json.loads(line) for line in lines]}


def _supplied(n_prompts: int, texts: list[str], names: tuple[str, ...] = ("a", "b")) -> dict[str, Any]:
    prompts = [
        {"id": f"p{i}", "prompt": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(n_prompts)
    ]
    candidates = [{"name": n, "responses": {p["id"]: texts for p in prompts}} for n in names]
    return {"student": "student", "candidates": candidates, "prompts": prompts}


def _validation(**settings: Any) -> dict[str, Any]:
    n_eval = settings.pop("n_eval", 4)
    eval_set = [
        {
            "prompt": f"What is {i} + {i}?",
            "solution": f"{i} + {i} = {2 * i}. #### {2 * i}",
            "answer": str(2 * i),
        }
        for i in range(n_eval)
    ]
    body = _supplied(8, ["The answer is 4.", "4"])
    body["scoring"] = {"responses_per_prompt": 2, "proj_dim": 16, "bootstrap": 0}
    return {**body, "eval": eval_set, "train_seeds": [0], **settings}


def _started(stage: str) -> Callable[[dict[str, Any]], bool]:
    """A unit in ``stage`` that has done some of it (its count has moved past 0)."""

    def reached(unit: dict[str, Any]) -> bool:
        counts = [(c.get(stage) or {}).get("done", 0) for c in unit["progress"].values()]
        return unit["stage"] == stage and max(counts, default=0) > 0

    return reached


@dataclass(frozen=True)
class StopScenario:
    """A job slow in one stage: where it is submitted, its body, and when a running unit is in
    that stage (``reached``, given the unit's JSON)."""

    stage_id: str
    path: str
    body: Callable[[TinyModels], dict[str, Any]]
    reached: Callable[[dict[str, Any]], bool]


def _stage_is(stage: str) -> Callable[[dict[str, Any]], bool]:
    return lambda unit: unit["stage"] == stage


LONG = "Tom has 3 apples and buys 5 more, so he has 3 + 5 = 8 apples. " * 12
STOP_SCENARIOS = (
    StopScenario("generate", "/v1/jobs", slow_job, _stage_is("generate")),
    StopScenario(
        "gradients",
        "/v1/jobs",
        lambda _: {**_supplied(96, [LONG] * 4), "scoring": {"responses_per_prompt": 4}},
        _stage_is("gradients"),
    ),
    StopScenario(
        "splits",
        "/v1/jobs",
        lambda _: {
            **_supplied(16, ["four", "4", "It is 4.", "2 + 2 = 4"]),
            "scoring": {"responses_per_prompt": 4, "proj_dim": 512, "n_splits": 1000, "bootstrap": 0},
        },
        _started("score"),
    ),
    StopScenario(
        "bootstrap",
        "/v1/jobs",
        lambda _: {
            **_supplied(16, ["four", "4", "It is 4.", "2 + 2 = 4"]),
            "scoring": {"responses_per_prompt": 4, "proj_dim": 64, "n_splits": 20, "bootstrap": 2000},
        },
        _started("uncertainty"),
    ),
    StopScenario(
        "distil",
        "/v1/validations",
        lambda _: _validation(distill={"method": "full", "max_steps": 5000, "batch_size": 4}, accuracy=False),
        _stage_is("distil"),
    ),
    StopScenario(
        "evaluate",
        "/v1/validations",
        lambda _: _validation(
            distill={"method": "full", "max_steps": 1, "batch_size": 4}, n_eval=300, eval_max_tokens=256
        ),
        _stage_is("evaluate"),
    ),
)


def start_slow_job(client: TestClient, caller: Caller, tiny: TinyModels, candidates: int = 5) -> str:
    """Submit the slow job and return once a worker is in the middle of it."""
    body = slow_job(tiny, candidates)
    job_id: str = client.post("/v1/jobs", json=body, headers=caller.headers).json()["id"]
    wait_for(
        client, caller, job_id, lambda j: j["status"] == "running" and j["stage"] in ("generate", "gradients")
    )
    return job_id


def succeeded_through_worker(
    client: TestClient,
    caller: Caller,
    settings: Settings,
    log: Path,
    path: str,
    body: dict[str, Any],
    timeout: float = DEADLINE,
) -> dict[str, Any]:
    """POST ``body`` to ``path`` with a real worker running; the finished job, which must have
    succeeded (the worker's log tail otherwise)."""
    with worker_process(settings, log):
        accepted = client.post(path, json=body, headers=caller.headers)
        assert accepted.status_code == 202, accepted.text
        job = wait_for(client, caller, accepted.json()["id"], lambda j: j["status"] in TERMINAL, timeout)
    assert job["status"] == "succeeded", log.read_text()[-3000:]
    return job


def assert_fanned_out(job: dict[str, Any], names: list[str], stages: set[str]) -> None:
    """An influence or validation job with several candidates: a unit per candidate did its part
    (reported as ``stages``), then the whole-job unit, released by the last of them, did the rest."""
    *candidates, whole = job["units"]
    assert [u["candidate"] for u in candidates] == names
    assert whole["candidate"] is None
    assert all(u["status"] == "succeeded" and u["attempts"] == 1 for u in job["units"]), job["units"]
    assert whole["started_at"] >= max(u["finished_at"] for u in candidates)
    for u in candidates:  # its own candidate's work, nothing else
        assert set(u["progress"]) == {u["candidate"]}
        done = {stage for stage, done in u["progress"][u["candidate"]].items() if done is not None}
        assert done == stages, u["progress"]


def engine_ranking(body: dict[str, Any], settings: Settings, responses: Any = None) -> RankingResult:
    """What one engine call in this process ranks for the job ``body``: what the service must give.
    ``responses`` (a response store) lets it read the responses a worker generated instead of
    generating them again."""
    request = JobCreate.model_validate(body)
    return rank_teachers(
        JobInputs(
            engine_prompts(request.prompts or []),
            [c.to_engine() for c in request.candidates],
            request.student,
        ),
        request.scoring.to_engine(),
        EngineContext(policy=policy_from(settings), responses=responses),
    )
