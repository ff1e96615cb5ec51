"""A job kind is one module: a toy ``echo`` kind, written outside the package into a temporary
directory and registered through the setting alone, gets its routes from the registry, fans out
through the real queue into a unit per candidate on a worker process, is assembled, and is read
back. No file of the service changes for it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient

from app.main import create_app
from grace_engine.models.tiny_models import TinyModels
from grace_jobs import kinds
from tests.service.conftest import Caller, service_settings, supplied_job
from tests.service.helpers import TERMINAL, wait_for, worker_process

ECHO = '''
"""A toy job kind: one unit per candidate returns its response count; the last one to finish
assembles the counts."""

from typing import Any

from pydantic import BaseModel
from sqlalchemy.orm import Session

from grace_engine.models.data import Prompt
from grace_engine.pipelines.context import EngineContext
from grace_engine.pipelines.prepare import prepare_candidate
from grace_infra.db.models import Job
from grace_jobs.kinds.base import FanOut, JobKind, UnitResults
from grace_jobs.requests import JobCreate


class EchoPublic(BaseModel):
    job_id: str
    responses: dict[str, int]


class Echo(JobKind[JobCreate, dict[str, int]]):
    name = "echo"
    request = JobCreate
    path = "/v1/echo"
    operation = "echo_job"
    summary = "Count each candidate's responses."
    public = EchoPublic
    result_summary = "Each candidate's response count."

    def fan_out(self, request: JobCreate, *, gradient_store: bool) -> FanOut:
        return FanOut.ASSEMBLED

    def run_candidate(
        self, request: JobCreate, prompts: list[Prompt], name: str, ctx: EngineContext
    ) -> dict[str, Any]:
        job = prepare_candidate(request.inputs(prompts), request.scoring.to_engine(), ctx, name)
        return {"responses": sum(len(group) for group in job.generated[0].texts)}

    def run_whole(
        self, request: JobCreate, prompts: list[Prompt], units: UnitResults, ctx: EngineContext
    ) -> dict[str, int]:
        return {name: int(unit["responses"]) for name, unit in units.items()}

    def write(self, session: Session, job: Job, request: JobCreate, result: dict[str, int]) -> None:
        job.result = {"responses": result}
        job.examples_scored = sum(result.values())


KIND = Echo()
'''


def test_a_new_job_kind_is_one_module(
    database_url: str, redis_url: str, tiny: TinyModels, caller: Caller, tmp_path: Path
) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "echo_kind.py").write_text(ECHO)
    repo = Path(__file__).resolve().parents[2]
    before = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True).stdout
    sys.path.insert(0, str(plugins))
    try:
        settings = service_settings(database_url, redis_url, tiny.root, job_kinds=["echo_kind"])
        assert [k.name for k in kinds.enabled(settings.job_kinds)][-1] == "echo"
        body = supplied_job(
            {"short": ["4", "5"], "long": ["The answer is 4.", "It is 5."], "third": ["x", "y"]}
        )
        with (
            TestClient(create_app(settings)) as client,
            worker_process(settings, tmp_path / "worker.log", python_path=plugins),
        ):
            accepted = client.post("/v1/echo", json=body, headers=caller.headers)
            assert accepted.status_code == 202, accepted.text
            job_id = accepted.json()["id"]
            job = wait_for(client, caller, job_id, lambda j: j["status"] in TERMINAL)
            assert job["status"] == "succeeded", (tmp_path / "worker.log").read_text()[-3000:]
            result = client.get(f"/v1/jobs/{job_id}/echo", headers=caller.headers)
            openapi = client.get("/openapi.json").json()
    finally:
        sys.path.remove(str(plugins))
    assert result.status_code == 200, result.text
    assert result.json() == {"job_id": job_id, "responses": {"short": 12, "long": 12, "third": 12}}  # 6 x 2
    assert job["kind"] == "echo"
    assert [u["candidate"] for u in job["units"]] == ["short", "long", "third"]  # a unit each
    assert all(u["status"] == "succeeded" for u in job["units"])
    assert job["examples_scored"] == 36
    assert {"/v1/echo", "/v1/jobs/{job_id}/echo"} <= set(openapi["paths"])
    assert openapi["paths"]["/v1/echo"]["post"]["operationId"] == "create_echo_job"
    # The kind lives outside the package, and the service's files are as they were.
    assert not (repo / "grace_jobs" / "kinds" / "echo_kind.py").exists()
    after = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True).stdout
    assert after == before
