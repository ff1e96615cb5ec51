"""docker-compose.yml and the Dockerfile cannot run here (no Docker engine), so this keeps them
consistent with the code: service names, GRACE_* variables against the settings class, commands
against the real CLI parser, health checks, volumes and the GPU reservation."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from grace_cli.main import build_parser
from grace_infra.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def _workers(compose: dict[str, Any]) -> dict[str, Any]:
    return {n: s for n, s in compose["services"].items() if n.startswith("worker-gpu")}


def test_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) - set(_workers(compose)) == {"postgres", "redis", "migrate", "api"}
    for name in ("postgres", "redis", "api"):
        assert "healthcheck" in services[name], name
    assert {"pgdata", "redisdata"} <= set(compose["volumes"])
    # The API and the migration get the CPU image; workers the GPU one (vLLM and its torch).
    for name in ("api", "migrate"):
        assert services[name]["build"]["args"]["FLAVOUR"] == "cpu", name


def test_one_worker_per_gpu_with_shared_memory_and_a_health_check(compose: dict[str, Any]) -> None:
    workers = _workers(compose)
    assert workers
    gpus = []
    for name, worker in workers.items():
        assert worker["build"]["args"]["FLAVOUR"] == "gpu", name
        (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
        assert device["capabilities"] == ["gpu"]
        assert "count" not in device, f"{name}: count would let every worker take the same GPU"
        assert name == f"worker-gpu{device['device_ids'][0]}"
        gpus += device["device_ids"]
        assert worker.get("ipc") == "host" or worker.get("shm_size"), f"{name}: vLLM needs shared memory"
        alive = worker["environment"]["GRACE_WORKER_ALIVE_FILE"]
        assert alive in " ".join(worker["healthcheck"]["test"]), (
            "the health check tests the file the worker touches"
        )
    assert len(gpus) == len(set(gpus))


def test_models_are_a_read_only_bind_mount_of_a_required_folder(compose: dict[str, Any]) -> None:
    for name in ("api", *_workers(compose)):
        (mount,) = compose["services"][name]["volumes"]
        assert mount["type"] == "bind"
        assert mount["read_only"] is True
        assert mount["target"] == "/models"
        assert mount["source"].startswith("${GRACE_MODELS_DIR:?"), (
            "no default: an empty folder serves nothing"
        )


def test_secrets_are_required_never_defaulted() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for secret in ("POSTGRES_PASSWORD", "REDIS_PASSWORD"):
        uses = re.findall(rf"\$\{{{secret}([^}}]*)\}}", text)
        assert uses, secret
        assert all(use.startswith(":?") for use in uses), (secret, uses)
    redis = yaml.safe_load(text)["services"]["redis"]
    assert "--requirepass" in redis["command"]
    assert "REDISCLI_AUTH" in redis["environment"]  # the health check's redis-cli authenticates


def test_migrations_run_before_the_api_and_workers(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["migrate"]["command"] == ["grace", "migrate"]
    for name in ("api", *_workers(compose)):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_environment_matches_the_settings_class(compose: dict[str, Any]) -> None:
    fields = set(Settings.model_fields)
    seen = 0
    for name, service in compose["services"].items():
        for key in service.get("environment", {}):
            if key.startswith("GRACE_"):
                seen += 1
                assert key.removeprefix("GRACE_").lower() in fields, f"{name}: {key} is not a setting"
    assert seen >= 8
    env = compose["services"]["api"]["environment"]
    expand = lambda v: re.sub(r"\$\{\w+:\?[^}]*\}", "secret", v)  # noqa: E731 - compose's ${VAR:?required}
    settings = Settings(**{k.removeprefix("GRACE_").lower(): expand(v) for k, v in env.items()})
    assert settings.database_url is not None
    assert settings.database_url.startswith("postgresql+psycopg://grace:secret@postgres")
    assert settings.redis_url == "redis://:secret@redis:6379/0"
    assert settings.auth_enabled
    assert not settings.embedded
    assert settings.api_processes == 2  # one process serves on about one core


def test_commands_parse_with_the_real_cli(compose: dict[str, Any]) -> None:
    parser = build_parser()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "grace" in scripts
    for _name, service in compose["services"].items():
        command = service.get("command")
        if command and command[0] == "grace":
            parser.parse_args(command[1:])  # exits (fails the test) on an unknown command or flag


def test_dockerfile_copies_what_the_package_needs() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = {src for line in re.findall(r"^COPY (.+)$", dockerfile, flags=re.M) for src in line.split()[:-1]}
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"][
        "include"
    ]
    for pattern in packages:
        assert pattern.rstrip("*") in copied, pattern
    assert {"migrations", "alembic.ini", "pyproject.toml"} <= copied
    cmd = re.search(r'^CMD \["grace", (.*)\]', dockerfile, flags=re.M)
    assert cmd is not None
    build_parser().parse_args([a.strip().strip('"') for a in cmd.group(1).split(",")])


def test_dockerfile_installs_dependencies_before_the_code_and_one_torch_per_flavour() -> None:
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    first_code = min(i for i, line in enumerate(lines) if line.startswith("COPY grace_"))
    requirements = [i for i, line in enumerate(lines) if "pip install -r /tmp/requirements.txt" in line]
    assert len(requirements) == 2
    assert max(requirements) < first_code
    assert "RUN pip install --no-deps -e ." in lines[first_code:]
    stages = re.split(r"^FROM ", "\n".join(lines), flags=re.M)
    cpu = next(s for s in stages if " AS deps-cpu" in s.splitlines()[0])
    gpu = next(s for s in stages if " AS deps-gpu" in s.splitlines()[0])
    assert "download.pytorch.org/whl/cpu" in cpu
    gpu_runs = [line for line in gpu.splitlines() if line.startswith("RUN ")]
    assert not any("torch" in line for line in gpu_runs), "the worker's torch is the one vLLM pins"
    assert "VLLM_SPEC" in gpu_runs[0]
    assert "requirements.txt" in gpu_runs[1]
