"""The README's shell examples run as written.

Every ``curl`` in the README's bash blocks is run, in order, by bash against a real `grace serve`
(the embedded default, with keys required, as a production service has them) on the tiny models.
The test supplies only what the README tells the reader to take from an earlier answer: ``$JOB``
(the job a POST created, once it has ended), its ``$PROMPT_SET``, ``$DATASET``, ``$NEXT_CURSOR`` and
``$GRACE_API_KEY``.
Every ``grace`` command in those blocks is parsed by the CLI's own parser.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from grace_cli.main import build_parser
from grace_client import Client
from grace_engine.models.tiny_models import TinyModels
from tests.service.conftest import embedded_key, embedded_server, supplied_job

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
BASH_BLOCKS = re.findall(r"^```bash\n(.*?)^```", README, re.S | re.M)
STATUS = "\n__http_status__ "
# The README's own comments give these answers: cancelling a job that has ended is a 409.
EXPECTED = {"/cancel": 409}


def commands(prefix: str) -> list[str]:
    """Each command in the README's bash blocks that starts with ``prefix``, joined across its
    continuation lines and multi-line quotes (a command left open at a block's end fails)."""
    found = []
    for block in BASH_BLOCKS:
        lines = block.splitlines()
        i = 0
        while i < len(lines):
            if lines[i].lstrip().startswith(prefix):
                command = lines[i]
                while command.endswith("\\") or not _complete(command):
                    i += 1
                    assert i < len(lines), f"unterminated command in the README: {command}"
                    command += "\n" + lines[i]
                found.append(command.strip())
            i += 1
    return found


def _complete(command: str) -> bool:
    try:
        shlex.split(command, comments=True)
    except ValueError:  # an open quote: the command goes on on the next line
        return False
    return True


def test_the_readme_has_the_examples_this_test_runs() -> None:
    curls = commands("curl ")
    assert len(curls) >= 25, curls
    assert curls[0].startswith("curl -sS -X POST $GRACE/v1/jobs"), curls[0]
    assert len(commands("export GRACE=")) == 1
    assert len(commands("grace ")) >= 10


def test_every_grace_command_in_the_readme_parses() -> None:
    parser = build_parser()
    for command in commands("grace ") + commands(".venv/bin/grace "):
        words = shlex.split(command.replace("\\\n", " "), comments=True)  # bash joins continued lines
        try:
            parser.parse_args(words[1:])
        except SystemExit as exit:  # argparse's way of refusing a command line
            pytest.fail(f"`{command}` does not parse (exit {exit.code})")


def test_no_curl_example_ends_in_a_comment() -> None:
    """The test appends curl's own options to each command: a trailing comment would swallow them."""
    assert [c for c in commands("curl ") if "#" in c.splitlines()[-1]] == []


def _run(command: str, shell_env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """Run one README command as written (with ``set -u``, so an unset variable fails it) and
    return its HTTP status and body."""
    done = subprocess.run(
        ["bash", "-c", f"set -eu\n{command} -w '{STATUS}%{{http_code}}'"],
        env=shell_env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"`{command}` failed: {done.stderr}"
    body, _, status = done.stdout.rpartition(STATUS)
    return int(status), body


def test_every_curl_example_in_the_readme_runs_as_written(tiny: TinyModels, tmp_path: Path) -> None:
    key = embedded_key(tmp_path, "readme")
    with (
        embedded_server(
            tmp_path, tiny.root, env={"GRACE_AUTH": "on", "GRACE_METRICS_KEY": "ops-key"}
        ) as base,
        Client(base, api_key=key) as grace,
    ):
        # A job before the README's, so that the job listing has a next page for $NEXT_CURSOR.
        grace.wait(grace.create_job(supplied_job({"a": ["1", "2"], "b": ["3", "4"]}))["id"], timeout=600)
        (export,) = commands("export GRACE=")
        prelude = f"{export}\nGRACE={shlex.quote(base)}\n"  # the README's port is 8000; ours is free
        variables = {"GRACE_API_KEY": key, "GRACE_METRICS_KEY": "ops-key"}
        for command in commands("curl "):
            shell_env = {"PATH": os.environ["PATH"], **variables}
            status, body = _run(prelude + command, shell_env, tmp_path)
            expected = next((code for tail, code in EXPECTED.items() if tail in command.split("\n")[0]), None)
            if expected is not None:
                assert status == expected, f"`{command}` answered {status}, not {expected}: {body}"
            else:
                assert 200 <= status < 300, f"`{command}` answered {status}: {body}"
            answer = json.loads(body) if body.lstrip().startswith("{") else None
            if status == 202 and answer is not None and "links" in answer:  # a job was created
                ended = grace.wait(answer["id"], poll=0.2, timeout=900)
                assert ended["status"] == "succeeded", f"`{command}` made a job that ended {ended}"
                variables.update(JOB=ended["id"], NEXT_CURSOR=grace.list_jobs(limit=1)["next_cursor"])
                if ended["kind"] == "score":  # leaderboards are of scoring jobs
                    variables["PROMPT_SET"] = ended["prompt_set"]
                assert None not in variables.values(), variables
            elif status == 201 and answer is not None and "/v1/datasets" in command:
                variables["DATASET"] = answer["id"]
        mixed = [json.loads(line) for line in (tmp_path / "mixed.jsonl").read_text().splitlines()]
        assert mixed
        assert all(row["messages"][-1]["role"] == "assistant" for row in mixed)
