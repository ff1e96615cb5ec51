"""The dependency direction of design.md §1, checked on what a fresh interpreter really imports:
the worker loads no web framework and nothing of ``app``, the job domain no web framework or
queue library, the shared infrastructure (``grace_infra``) nothing above it, and the engine none
of the service's infrastructure."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

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
        ("workers.main", {"fastapi", "starlette", "uvicorn", "app"}),
        ("grace_infra.db.models", {"fastapi", "starlette", "uvicorn", "app", "grace_jobs", "workers"}),
        ("grace_infra.queue", {"fastapi", "starlette", "uvicorn", "app", "grace_jobs", "workers"}),
        ("grace_jobs.lifecycle", {"fastapi", "starlette", "uvicorn", "dramatiq", "redis", "app", "workers"}),
        (
            "grace_jobs.requests",
            {"fastapi", "starlette", "uvicorn", "dramatiq", "redis", "sqlalchemy", "app", "workers"},
        ),
        # the typed client models are the API's own, yet load neither it nor the model stack
        (
            "grace_client.models",
            {"fastapi", "starlette", "uvicorn", "sqlalchemy", "torch", "numpy", "transformers", "workers"},
        ),
        (
            "grace_engine.pipelines.scoring",
            {"fastapi", "starlette", "sqlalchemy", "dramatiq", "redis", "app", "workers", "grace_infra"},
        ),
    ],
)
def test_imports_point_down(module: str, forbidden: set[str]) -> None:
    assert not {m.split(".")[0] for m in _modules(module)} & forbidden


def test_no_module_of_the_job_domain_or_the_workers_names_app() -> None:
    """What a fresh interpreter loads proves one entry point's imports; this reads every module's
    source, so a rarely imported one cannot reach up into the web layer either."""
    root = Path(__file__).resolve().parents[1]
    offenders = []
    for package in ("grace_jobs", "workers", "grace_infra", "grace_engine"):
        for path in sorted((root / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                    if isinstance(node, ast.ImportFrom) and node.level == 0
                    else []
                )
                offenders += [f"{path.relative_to(root)}: {n}" for n in names if n.split(".")[0] == "app"]
    assert not offenders


def test_the_api_process_never_loads_the_model_stack() -> None:
    """The API validates, stores and serves; it computes no gradient and fits no curve, so torch,
    transformers, ``scipy.stats`` and ``scipy.optimize`` (2 to 4 s together) stay out of its
    process start (grace_engine.science's docstring says how)."""
    heavy = ("torch", "transformers", "scipy.stats", "scipy.optimize")
    loaded = _modules("app.main")
    assert sorted(m for m in loaded if any(m == h or m.startswith(h + ".") for h in heavy)) == []
