"""The dependency direction of design.md §1, checked on what a fresh interpreter really imports:
the worker loads no web framework, the job domain no web framework or queue library, and the
engine none of the service's infrastructure."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _modules(module: str) -> set[str]:
    """Every module in sys.modules after importing ``module`` in a fresh interpreter."""
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    return set(json.loads(done.stdout))


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("workers.main", {"fastapi", "starlette", "uvicorn"}),
        ("grace_jobs.lifecycle", {"fastapi", "starlette", "uvicorn", "dramatiq", "redis"}),
        ("grace_jobs.requests", {"fastapi", "starlette", "uvicorn", "dramatiq", "redis", "sqlalchemy"}),
        (
            "grace_engine.scoring",
            {"fastapi", "starlette", "sqlalchemy", "dramatiq", "redis", "app", "workers"},
        ),
    ],
)
def test_imports_point_down(module: str, forbidden: set[str]) -> None:
    assert not {m.split(".")[0] for m in _modules(module)} & forbidden


def test_the_worker_uses_only_the_shared_infrastructure_of_app() -> None:
    """app.config, app.db and app.queue are framework-free and shared; nothing else of app."""
    loaded = {m for m in _modules("workers.main") if m.startswith("app.")}
    assert loaded, "expected the shared settings and ORM"
    assert all(m.split(".")[1] in {"config", "db", "queue"} for m in loaded), sorted(loaded)
