"""A client generated from ``/openapi.json`` by a widely used third-party generator
(openapi-python-client) submits a job, waits for it, reads its ranking and its dataset, and meets the
errors as the document describes them: what a platform team's generated client does."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from app.main import create_app
from grace_engine.models.tiny_models import TinyModels
from grace_infra.settings import Settings
from tests.service.conftest import embedded_key, embedded_server, supplied_job

PACKAGE = "grace_generated"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ModuleType, str]]:
    """The generated package (imported) and what the generator printed. Generated from the embedded
    server's document, as a user would: it is the same document whatever the auth setting."""
    root = tmp_path_factory.mktemp("generated")
    spec = root / "openapi.json"
    spec.write_text(json.dumps(create_app(Settings(auth="off")).openapi()))
    done = subprocess.run(
        [
            *(sys.executable, "-m", "openapi_python_client", "generate", "--path", str(spec)),
            *("--meta", "none", "--output-path", str(root / PACKAGE)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=root,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module(PACKAGE), done.stdout + done.stderr
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def _module(package: ModuleType, name: str) -> Any:
    return importlib.import_module(f"{package.__name__}.{name}")


def test_the_generator_keeps_every_operation(generated: tuple[ModuleType, str]) -> None:
    package, printed = generated
    # It warns about what it drops (a body it cannot parse, a content type it does not know).
    assert "Cannot parse" not in printed, printed
    assert "Unable to parse" not in printed, printed
    document = create_app(Settings(auth="off")).openapi()
    operations = {op["operationId"] for path in document["paths"].values() for op in path.values()}
    # The cross-field rules it cannot read stay in the document, for people and for tools.
    job = document["components"]["schemas"]["JobCreate"]
    assert job["x-exactly-one"] == [["prompts"], ["dataset_id"]]
    assert "exactly one of `prompts` or `dataset_id`" in job["description"]
    api = Path(package.__file__).parent / "api"
    assert {p.stem for p in api.rglob("*.py") if p.stem != "__init__"} == operations


def test_a_generated_client_submits_waits_and_reads_the_ranking(
    generated: tuple[ModuleType, str], tiny: TinyModels, tmp_path: Path
) -> None:
    package, _ = generated
    jobs = {name: _module(package, f"api.jobs.{name}") for name in ("create_job", "get_job", "get_ranking")}
    dataset = _module(package, "api.jobs.get_mixed_dataset")
    models = _module(package, "models")
    key = embedded_key(tmp_path, "generated")
    body = supplied_job({"good": ["2 + 2 = 4", "4"], "bad": ["no", "5"]})
    with (
        embedded_server(tmp_path, tiny.root, env={"GRACE_AUTH": "on"}) as base,
        package.AuthenticatedClient(base_url=base, token=key, timeout=30) as client,
        package.Client(base_url=base, timeout=30) as anonymous,
    ):
        accepted = jobs["create_job"].sync_detailed(client=client, body=models.JobCreate.from_dict(body))
        assert accepted.status_code == 202, accepted.content
        job_id = accepted.parsed.id
        assert accepted.headers["location"].endswith(f"/v1/jobs/{job_id}")
        deadline = time.monotonic() + 600
        while str((job := jobs["get_job"].sync(job_id, client=client)).status) not in (
            "succeeded",
            "failed",
        ):
            assert time.monotonic() < deadline, job
            time.sleep(0.2)
        assert str(job.status) == "succeeded", job
        ranking = jobs["get_ranking"].sync(job_id, client=client)
        assert {r.name for r in ranking.ranking} == {"good", "bad"}
        assert [r.rank for r in ranking.ranking] == [1, 2]
        mixed = dataset.sync(job_id, client=client).payload.read().decode()
        assert [json.loads(line)["prompt_id"] for line in mixed.splitlines()] == [
            p["id"] for p in body["prompts"]
        ]

        as_bytes = httpx.get(
            f"{base}/v1/jobs/{job_id}/dataset",
            headers={"Accept": "application/octet-stream", "Authorization": f"Bearer {key}"},
        )
        assert as_bytes.headers["content-type"] == "application/octet-stream"
        assert as_bytes.text == mixed

        # The errors are typed Problems naming what went wrong, as the document promises.
        both = jobs["create_job"].sync_detailed(
            client=client, body=models.JobCreate.from_dict({**body, "dataset_id": "d"})
        )
        assert both.status_code == 422
        assert isinstance(both.parsed, models.Problem)
        assert "exactly one of 'prompts' or 'dataset_id'" in json.dumps(both.parsed.to_dict())
        missing = jobs["get_job"].sync_detailed("no-such-job", client=client)
        assert (missing.status_code, type(missing.parsed)) == (404, models.Problem)
        refused = jobs["get_job"].sync_detailed(job_id, client=anonymous)
        assert (refused.status_code, type(refused.parsed)) == (401, models.Problem)
