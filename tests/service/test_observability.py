"""What operators watch: one log format for the whole server with the request's and the job's id
on each record, the request id echoed to the caller, and one trace from the API to the worker."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import httpx
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from app.main import create_app
from grace_client import TERMINAL, Client
from grace_engine.models.tiny_models import TinyModels
from grace_infra import tracing
from grace_infra.settings import Settings
from tests.service.conftest import embedded_server, supplied_job


def test_json_logs_carry_request_and_job_ids_in_one_format(tiny: TinyModels, tmp_path: Path) -> None:
    body = supplied_job({"good": ["2 + 2 = 4", "4"], "bad": ["no", "5"]})
    with (
        embedded_server(tmp_path, tiny.root, env={"GRACE_LOG_FORMAT": "json"}) as base,
        Client(base) as grace,
    ):
        accepted = grace.request("POST", "/v1/jobs", json=body, headers={"X-Request-ID": "trace-me-1"})
        assert accepted.headers["X-Request-ID"] == "trace-me-1"
        job_id = accepted.json()["id"]
        assert grace.wait(job_id, timeout=600)["status"] == "succeeded"
        fresh = grace.request("GET", "/healthz").headers["X-Request-ID"]
        forged = grace.request("GET", "/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
        assert forged.headers["X-Request-ID"] not in ("bad id\twith spaces", fresh)  # a new one instead
    lines = [line for line in (tmp_path / "serve.log").read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line: uvicorn's, the app's, the worker's
    assert {"time", "level", "logger", "message", "request_id", "job_id"} <= set(records[0])
    assert any(r["logger"].startswith("uvicorn") for r in records)
    access = [r for r in records if r["logger"] == "grace.access" and r["request_id"] == "trace-me-1"]
    assert [(r["method"], r["path"], r["status"]) for r in access] == [("POST", "/v1/jobs", 202)]
    worker = [r for r in records if r["job_id"] == job_id and r["logger"].startswith("grace.worker")]
    assert worker, "the in-process worker's records name the job they are about"


def test_several_api_processes_log_in_the_one_format(
    tiny: TinyModels, tmp_path: Path, database_url: str, redis_url: str
) -> None:
    """``GRACE_API_PROCESSES=2``: uvicorn builds the app in each child process, which sets up the
    configured log format itself; a plain-text line from a child would break a JSON log pipeline."""
    env = {
        "GRACE_LOG_FORMAT": "json",
        "GRACE_API_PROCESSES": "2",
        "GRACE_DATABASE_URL": database_url,
        "GRACE_REDIS_URL": redis_url,
        "GRACE_QUEUE_NAME": f"grace-processes-{uuid.uuid4().hex[:8]}",  # no worker reads it
        "GRACE_AUTH": "off",
    }
    ids = [f"process-{i}" for i in range(8)]
    with embedded_server(tmp_path, tiny.root, env=env) as base:
        for request_id in ids:  # each on a new connection, so both processes take some
            assert httpx.get(f"{base}/v1/jobs", headers={"X-Request-ID": request_id}).status_code == 200
    records = [json.loads(line) for line in (tmp_path / "serve.log").read_text().splitlines() if line.strip()]
    access = {r["request_id"] for r in records if r["logger"] == "grace.access"}
    assert set(ids) <= access
    started = [
        r for r in records if r["logger"].startswith("uvicorn") and "Started server process" in r["message"]
    ]
    assert len(started) == 2


def test_a_trace_spans_the_api_and_the_worker_for_one_job(tiny: TinyModels, tmp_path: Path) -> None:
    """With tracing on, the POST that creates a job and the unit the (in-process) worker runs for
    it are one trace: the unit's span is a child of the request's. Exported in memory here."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    settings = Settings(
        database_url=None, redis_url=None, data_dir=tmp_path / "data", model_roots=[tiny.root], tracing="otlp"
    )
    try:
        with TestClient(create_app(settings)) as client:
            job_id = client.post("/v1/jobs", json=supplied_job({"a": ["1", "2"], "b": ["3", "4"]})).json()[
                "id"
            ]
            deadline = time.monotonic() + 600
            while client.get(f"/v1/jobs/{job_id}").json()["status"] not in TERMINAL:
                assert time.monotonic() < deadline
                time.sleep(0.1)
            assert client.get("/readyz").status_code == 200
    finally:
        tracing.install(None)
    spans = exporter.get_finished_spans()
    (submit,) = [
        s
        for s in spans
        if s.kind == SpanKind.SERVER
        and s.attributes is not None
        and s.attributes.get("http.route") == "/v1/jobs"
        and s.attributes.get("http.request.method", s.attributes.get("http.method")) == "POST"
    ]
    units = [
        s for s in spans if s.name == "grace.unit" and s.attributes and s.attributes["grace.job_id"] == job_id
    ]
    assert len(units) == 2  # one per candidate
    for unit in units:
        assert unit.context is not None
        assert submit.context is not None
        assert unit.context.trace_id == submit.context.trace_id
        assert unit.parent is not None
        assert unit.parent.span_id == submit.context.span_id
    assert not any(s.attributes and s.attributes.get("http.route") == "/readyz" for s in spans)  # probes
