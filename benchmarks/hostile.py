"""How fast absurd requests are refused, on the embedded app in process (no network).

    .venv/bin/python benchmarks/hostile.py

Targets (issue 13): a 5,000-scenario plan refused in under 2 s; a body of 10^6 prompts refused
without validating them (it took 8.7 s and 1.2 GB before the input guard). Also timed: JSON nested
200,000 deep, and a full plan (four scenarios) under extreme coefficients, which took 1.4-2.4 s
while the optimiser's absolute tolerance could not be met.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastapi.testclient import TestClient

from app.main import create_app
from grace_infra.settings import Settings


def _timed(client: TestClient, path: str, body: bytes) -> dict[str, object]:
    started = time.perf_counter()
    r = client.post(path, content=body, headers={"Content-Type": "application/json"})
    return {
        "path": path,
        "body_mb": round(len(body) / 1e6, 1),
        "status": r.status_code,
        "field": r.json().get("errors", [{}])[0].get("field") if r.status_code >= 400 else None,
        "seconds": round(time.perf_counter() - started, 3),
    }


def main() -> None:
    with TestClient(create_app(Settings(data_dir=Path(tempfile.mkdtemp())))) as client:
        prompts = {
            "student": "s",
            "candidates": [{"name": "a", "model": "m"}],
            "prompts": [{"prompt": "a"}] * 10**6,
        }
        plan = {"n_student": 1e8, "compute_flops": 1e21, "scenarios": ["best_case"] * 5000}
        extreme = {"n_student": 1e8, "compute_flops": 1e21, "coefficients": {"A": 1e30}}
        deep = b'{"prompts": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
        runs = [
            _timed(client, "/v1/jobs", json.dumps(prompts).encode()),
            _timed(client, "/v1/scaling-law/plan", json.dumps(plan).encode()),
            _timed(client, "/v1/jobs", deep),
            _timed(client, "/v1/scaling-law/plan", json.dumps(extreme).encode()),
        ]
    for r in runs:
        print(f"{r['path']:<22} {r['body_mb']:>5} MB -> {r['status']} ({r['field']}) in {r['seconds']} s")
    out = Path(__file__).resolve().parent / "hostile.json"
    out.write_text(json.dumps(runs, indent=2) + "\n", "utf-8")


if __name__ == "__main__":
    main()
