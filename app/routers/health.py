"""/healthz (process up), /readyz (database, migrations, queue), /metrics (Prometheus)."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from app.deps import SettingsDep
from app.errors import ApiError, problem
from grace_infra.db.migrate import at_head

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", response_model=None)
def readyz(request: Request) -> Response | dict[str, object]:
    state = request.app.state
    checks: dict[str, str] = {}
    try:
        with state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
        checks["migrations"] = "ok" if at_head(state.engine) else "behind: run `grace migrate`"
    except Exception as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
        checks["migrations"] = "unknown"
    checks["queue"] = "ok" if state.queue.ping() else "unreachable"
    if all(v == "ok" for v in checks.values()):
        return {"status": "ready", "checks": checks}
    return problem(
        request,
        503,
        "Service Unavailable",
        "not ready: " + ", ".join(f"{k} {v}" for k, v in checks.items() if v != "ok"),
        checks=checks,
    )


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(request: Request, settings: SettingsDep) -> Response:
    """Prometheus metrics. Their figures span every tenant, so where API keys are required they
    answer only the operator's ``GRACE_METRICS_KEY``, never a tenant's key. The key is read here,
    not declared: the document's bearer scheme is the tenants' API key, which this route refuses."""
    if settings.auth_enabled:
        expected = settings.metrics_key
        if expected is None:
            raise ApiError(403, "Forbidden", "metrics are off here: set GRACE_METRICS_KEY and scrape with it")
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        given = token.strip() if scheme.lower() == "bearer" else ""
        if not hmac.compare_digest(given.encode(), expected.get_secret_value().encode()):
            raise ApiError(
                401,
                "Unauthorized",
                "send 'Authorization: Bearer <GRACE_METRICS_KEY>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
    return Response(generate_latest(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST)
