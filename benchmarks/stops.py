"""How soon a job stops when told, in each stage: SIGTERM to a real `grace worker` process, and a
cancel through the API. Goals (issue 29): a cancel within 3 s, a SIGTERM hand-back within 5 s.

The scenarios are the tests' (``tests/service/helpers.py``, ``STOP_SCENARIOS``): a job on the
tiny models made slow in one stage at a time (generation, gradients, GRACE's splits, the
bootstrap, distillation, evaluation). For each, on real PostgreSQL and Redis:

1. a worker process takes the job; once a unit is running in the stage, the worker gets SIGTERM.
   *Hand-back*: until no unit runs and the unit is queued again; *exit*: until the process ends.
2. a second worker takes the job up; once it is in the stage again, the job is cancelled through
   the API. *Cancel*: until the job is ``cancelled``.

Times are from the signal or the request to the state, polled every 50 ms through the API.

    python benchmarks/stops.py                 # every stage, 3 repeats (~5 min on 2 cores)
    python benchmarks/stops.py --repeats 1 --stages generate bootstrap

The last line printed is one JSON object (also written to --out).
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.main import create_app
from benchmarks.fanout import ROOT, _services
from grace_engine.models.tiny_models import TinyModels, build_tiny_models
from grace_infra.db.migrate import upgrade
from grace_infra.db.session import make_engine, make_session_factory
from grace_infra.settings import Settings
from grace_jobs.tenants import create_key
from tests.service.helpers import STOP_SCENARIOS, StopScenario, worker_process

CANCEL_GOAL, HANDBACK_GOAL = 3.0, 5.0
POLL = 0.05
TIMEOUT = 600.0


@dataclass
class Api:
    client: TestClient
    headers: dict[str, str]

    def job(self, job_id: str) -> dict[str, Any]:
        doc: dict[str, Any] = self.client.get(f"/v1/jobs/{job_id}", headers=self.headers).json()
        return doc

    def until(self, job_id: str, condition: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job["status"] in ("failed", "succeeded"):
                raise SystemExit(f"job {job_id} {job['status']} before it could be stopped: {job['error']}")
            if condition(job):
                return job
            time.sleep(POLL)
        raise SystemExit(f"job {job_id}: timed out")


def _in_stage(scenario: StopScenario) -> Callable[[dict[str, Any]], bool]:
    return lambda job: any(u["status"] == "running" and scenario.reached(u) for u in job["units"])


def _handed_back(job: dict[str, Any]) -> bool:
    return not [u for u in job["units"] if u["status"] == "running"]


def one_run(
    api: Api, scenario: StopScenario, tiny: TinyModels, settings: Settings, logs: Path
) -> dict[str, float]:
    accepted = api.client.post(scenario.path, json=scenario.body(tiny), headers=api.headers)
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["id"]
    log = logs / f"{scenario.stage_id}-{job_id}.log"
    with worker_process(settings, log) as worker:
        api.until(job_id, _in_stage(scenario))
        sent = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        api.until(job_id, _handed_back)
        handed_back = time.monotonic() - sent
        worker.wait(timeout=TIMEOUT)
        exited = time.monotonic() - sent
    with worker_process(settings, log):
        api.until(job_id, _in_stage(scenario))
        asked = time.monotonic()
        api.client.post(f"/v1/jobs/{job_id}/cancel", headers=api.headers)
        api.until(job_id, lambda j: j["status"] == "cancelled")
        cancelled = time.monotonic() - asked
    return {"handback_s": handed_back, "exit_s": exited, "cancel_s": cancelled}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stages", nargs="*", default=[s.stage_id for s in STOP_SCENARIOS])
    parser.add_argument("--database-url", help="an existing PostgreSQL (default: a throwaway one)")
    parser.add_argument("--redis-url", help="an existing Redis (default: a throwaway one)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "stops.json")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="grace-stops-"))
    tiny = build_tiny_models(work / "models")
    scenarios = [s for s in STOP_SCENARIOS if s.stage_id in args.stages]
    results: dict[str, dict[str, Any]] = {}
    with _services(args.database_url, args.redis_url) as (database_url, redis_url):
        upgrade(database_url)
        settings = Settings(
            database_url=database_url,
            redis_url=redis_url,
            auth="on",
            model_roots=[tiny.root],
            queue_name=f"grace-stops-{uuid.uuid4().hex[:8]}",
            heartbeat_seconds=0.5,
            stale_after_seconds=3.0,
        )
        with TestClient(create_app(settings)) as client:
            engine = make_engine(settings)
            with make_session_factory(engine)() as session:
                key = create_key(session=session, tenant_name=f"stops-{uuid.uuid4().hex[:8]}")
            engine.dispose()
            api = Api(client, {"Authorization": f"Bearer {key}"})
            for scenario in scenarios:
                runs = [one_run(api, scenario, tiny, settings, work) for _ in range(args.repeats)]
                summary = {
                    k: {
                        "median": round(statistics.median(r[k] for r in runs), 2),
                        "max": round(max(r[k] for r in runs), 2),
                    }
                    for k in runs[0]
                }
                results[scenario.stage_id] = summary
                print(
                    f"{scenario.stage_id:<10} "
                    + "  ".join(f"{k} {v['median']:.2f} s (max {v['max']:.2f})" for k, v in summary.items()),
                    flush=True,
                )
    report = {
        "repeats": args.repeats,
        "goals": {"cancel_s": CANCEL_GOAL, "handback_s": HANDBACK_GOAL},
        "stages": results,
        "met": all(
            r["cancel_s"]["max"] <= CANCEL_GOAL and r["handback_s"]["max"] <= HANDBACK_GOAL
            for r in results.values()
        ),
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
