"""The embedded default: `grace serve` with no database or Redis configured runs the whole service
(SQLite, in-process worker, auth off and saying so) in one process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from grace_cli.client import Client
from grace_engine.tiny_models import TinyModels
from tests.service.conftest import embedded_server, job_body


def test_grace_serve_with_no_configuration_completes_a_job(tiny: TinyModels, tmp_path: Path) -> None:
    with embedded_server(tmp_path, tiny.root) as base:
        client = Client(base)  # no API key: the embedded default runs with auth off
        job = client.wait(client.submit(job_body()), poll=0.2)
        assert job["status"] == "succeeded", job
        assert [r["name"] for r in job["ranking"]][-1] == "noise"
        assert (tmp_path / "data" / "grace.db").is_file()
        shown = subprocess.run(
            [
                *(sys.executable, "-m", "grace_cli.main", "leaderboard"),
                *("--url", base, "--student", "student", "--dataset", job["prompt_set"]),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert shown.returncode == 0, shown.stderr
        lines = shown.stdout.splitlines()
        assert lines[2].split()[:2] == ["1", job["ranking"][0]["name"]], shown.stdout
        assert lines[-1].split()[:2] == ["2", "noise"], shown.stdout
    assert "AUTH IS OFF" in (tmp_path / "serve.log").read_text()
