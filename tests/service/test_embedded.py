"""The embedded default: `grace serve` with no database or Redis configured runs the whole service
(SQLite, in-process worker, auth off and saying so) in one process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from grace_cli.client import Client
from grace_engine.tiny_models import TinyModels
from tests.service.conftest import job_body


def test_grace_serve_with_no_configuration_completes_a_job(tiny: TinyModels, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRACE_")}
    env.update(GRACE_DATA_DIR=str(tmp_path / "data"), GRACE_MODEL_ROOTS=str(tiny.root))
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "grace_cli.main", "serve", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=out,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                with urllib.request.urlopen(f"{base}/readyz", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert server.poll() is None, log.read_text()
                time.sleep(0.1)
        else:
            raise AssertionError("the service never became ready:\n" + log.read_text())
        client = Client(base)  # no API key: the embedded default runs with auth off
        job = client.wait(client.submit(job_body()), poll=0.2)
        assert job["status"] == "succeeded", job
        assert [r["name"] for r in job["ranking"]][-1] == "noise"
        assert (tmp_path / "data" / "grace.db").is_file()
    finally:
        server.terminate()
        server.wait(timeout=20)
    assert "AUTH IS OFF" in log.read_text()
