"""The embedded default: `grace serve` with no database or Redis configured runs the whole service
(SQLite, in-process worker, auth off and saying so) in one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from grace_client import Client
from grace_engine.models.tiny_models import TinyModels
from tests.service.conftest import embedded_server, job_body, supplied_job


def run_grace(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "grace_cli.main", *args], capture_output=True, text=True, timeout=120, env=env
    )


def grace(*args: str, env: dict[str, str] | None = None) -> str:
    """The stdout of a ``grace`` command that must succeed."""
    done = run_grace(*args, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_version_and_key_administration(tmp_path: Path) -> None:
    assert grace("--version").startswith("grace ")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRACE_")}
    env["GRACE_DATA_DIR"] = str(tmp_path / "data")
    grace("migrate", env=env)
    key = grace("keys", "create", "--tenant", "lab", env=env).strip()
    listed = grace("keys", "list", "--tenant", "lab", env=env)
    assert f"{key[:10]}..." in listed
    assert "active" in listed
    grace("keys", "revoke", key[:10], env=env)
    assert "revoked" in grace("keys", "list", "--tenant", "lab", env=env)
    assert run_grace("keys", "revoke", key[:10], env=env).returncode == 2  # no active key left
    assert grace("keys", "webhook-secret", "--tenant", "lab", env=env).startswith("whsec_")
    assert run_grace("keys", "list", "--tenant", "nobody", env=env).returncode == 2


def test_grace_serve_with_no_configuration_completes_a_job(tiny: TinyModels, tmp_path: Path) -> None:
    with embedded_server(tmp_path, tiny.root) as base:
        client = Client(base)  # no API key: the embedded default runs with auth off
        job = client.wait(client.create_job(job_body())["id"], poll=0.2)
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
        # The rest of the CLI's service commands, on grace_client.
        assert job["id"] in grace("jobs", "list", "--url", base).split()
        # Pages: the listing prints the next page's cursor, which --cursor takes.
        newer = client.wait(
            client.create_job(supplied_job({"a": ["4", "4"], "b": ["x", "y"]}))["id"], poll=0.2
        )
        first = run_grace("jobs", "list", "--limit", "1", "--url", base)
        assert first.stdout.split()[0] == newer["id"]
        cursor = first.stderr.strip().rsplit("--cursor ", 1)[1]
        assert (
            grace("jobs", "list", "--limit", "1", "--cursor", cursor, "--url", base).split()[0] == job["id"]
        )
        show = grace("jobs", "show", job["id"], "--url", base)
        assert show.splitlines()[0].split()[:3] == [job["id"], "score", "succeeded"]
        assert job["ranking"][0]["name"] in show
        # The mixed-teacher dataset, to standard output or a file.
        exported = [
            json.loads(line) for line in grace("jobs", "dataset", job["id"], "--url", base).splitlines()
        ]
        assert len(exported) == len(job_body()["prompts"])
        assert {e["teacher"] for e in exported} <= {"tutor", "noise"}
        saved = tmp_path / "mixed.jsonl"
        grace("jobs", "dataset", job["id"], "--out", str(saved), "--url", base)
        assert [json.loads(line) for line in saved.read_text().splitlines()] == exported
        prompts = tmp_path / "prompts.jsonl"
        prompts.write_text('{"id": "a", "prompt": "1 + 1?"}\n{"id": "b", "prompt": "2 + 2?"}\n')
        dataset_id = grace("datasets", "upload", str(prompts), "--url", base).strip()
        assert dataset_id in grace("datasets", "list", "--url", base)
        # submit scores a stored dataset, and takes every scoring option as a flag.
        supplied = tmp_path / "supplied.json"
        supplied.write_text(
            json.dumps(
                [
                    {"name": "right", "responses": {"a": ["2", "It is 2."], "b": ["4", "It is 4."]}},
                    {"name": "wrong", "responses": {"a": ["7", "purple"], "b": ["9", "seven"]}},
                ]
            )
        )
        flags = [
            "-m",
            "2",
            "--proj-dim",
            "8",
            "--predictors",
            "grace",
            "student_nll",
            "--rank-by",
            "student_nll",
        ]
        ranked = grace(
            *("submit", "--dataset-id", dataset_id, "--candidates", str(supplied), "--student", "student"),
            *(*flags, "--quiet", "--url", base),
        )
        assert ranked.splitlines()[0].split()[:2] == ["rank", "candidate"], ranked
        assert "Ranked by student_nll" in ranked
        grace("datasets", "delete", dataset_id, "--url", base)
        assert dataset_id not in grace("datasets", "list", "--url", base)
        refused = run_grace("jobs", "cancel", job["id"], "--url", base)
        assert refused.returncode == 2
        assert "409" in refused.stderr, refused.stderr
    assert "AUTH IS OFF" in (tmp_path / "serve.log").read_text()
