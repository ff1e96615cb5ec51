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


def test_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"postgres", "redis", "migrate", "api", "worker"}
    for name in ("postgres", "redis", "api"):
        assert "healthcheck" in compose["services"][name], name
    assert {"pgdata", "redisdata", "models"} <= set(compose["volumes"])
    devices = compose["services"]["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert compose["services"]["worker"]["build"]["args"]["EXTRAS"] == "[gpu]"


def test_migrations_run_before_the_api_and_workers(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["migrate"]["command"] == ["grace", "migrate"]
    for name in ("api", "worker"):
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
    expand = lambda v: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", v)  # noqa: E731 - compose's ${VAR:-default}
    settings = Settings(**{k.removeprefix("GRACE_").lower(): expand(v) for k, v in env.items()})
    assert settings.database_url is not None
    assert settings.database_url.startswith("postgresql+psycopg://grace:grace@postgres")
    assert settings.auth_enabled
    assert not settings.embedded


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
