"""``create_app()``: the FastAPI application. Heavy objects (DB engine, queue client, in-process
worker, reconciler, metrics registry) are built once in the lifespan, never at import time."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

import anyio
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_fastapi_instrumentator import Instrumentator

from app import contract, errors
from app.admission import Admission
from app.guard import InputGuard
from app.limits import BodySizeLimit
from app.metrics import JobMetrics
from app.request_ids import RequestIds
from app.routers import (
    dashboard,
    datasets,
    health,
    jobs,
    leaderboards,
    predictors,
    rankings,
    scaling,
    webhooks,
)
from app.routers.kinds import kind_router
from grace_infra import logs, tracing
from grace_infra.db.migrate import upgrade
from grace_infra.db.session import make_engine, make_session_factory
from grace_infra.queue import JobQueue, RedisJobQueue
from grace_infra.settings import Settings
from grace_jobs import kinds

log = logging.getLogger("grace.api")


def _operation_id(route: APIRoute) -> str:
    """Stable operation ids (the function names), so generated clients get readable methods."""
    return route.name


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings)
        session_factory = make_session_factory(engine)
        if settings.sqlalchemy_url.startswith("sqlite"):
            upgrade(
                settings.sqlalchemy_url
            )  # the embedded default migrates itself; production runs `grace migrate`
        embedded = None
        queue: JobQueue
        if settings.embedded:
            # The composition root of the embedded default: API and in-process worker in one
            # process. Imported here so that production API processes never load worker code.
            from workers.inprocess import start_embedded

            embedded = start_embedded(settings, session_factory)
            queue = embedded.queue
            log.info("embedded mode: %s, in-process worker", settings.sqlalchemy_url)
        else:
            queue = RedisJobQueue(settings)
        if not settings.auth_enabled:
            log.warning(
                "AUTH IS OFF: every request acts as tenant 'default'. Set GRACE_AUTH=on for shared use."
            )
        job_metrics = JobMetrics(session_factory, queue.depth)
        registry.register(job_metrics)
        # Threads above the admission limit: an admitted request never waits for one (app.admission).
        limiter = anyio.to_thread.current_default_thread_limiter()
        limiter.total_tokens = max(limiter.total_tokens, settings.request_concurrency + 8)
        app.state.settings = settings
        app.state.engine = engine
        app.state.session_factory = session_factory
        app.state.queue = queue
        try:
            yield
        finally:
            registry.unregister(job_metrics)
            if embedded is not None:
                embedded.close()
            else:
                queue.close()
            engine.dispose()

    # /docs and /redoc from the Swagger UI and ReDoc bundles packaged with fastapi-offline: the
    # default pages load them from a CDN, which leaves them blank on an offline host.
    app = FastAPIOffline(
        title="grace-service",
        version=version("grace-service"),  # the installed distribution's, as `grace --version` says
        summary="Rank candidate teacher LLMs for distilling a student, by the GRACE score.",
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
    )
    # One registry per app (tests build many apps in one process): HTTP requests by route, method
    # and status class, with latency and sizes (prometheus-fastapi-instrumentator, whose route
    # templates keep the label set bounded), the process's CPU, memory and GC, and, registered in
    # the lifespan, the jobs' own metrics.
    registry = CollectorRegistry()  # no auto_describe: collecting JobMetrics queries the database
    for collector in (ProcessCollector, PlatformCollector, GCCollector):
        collector(registry=registry)
    Instrumentator(registry=registry, excluded_handlers=[*contract.PUBLIC_PATHS]).instrument(app)
    tracing.configure(settings.tracing)
    if tracing.provider() is not None:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(
            app, tracer_provider=tracing.provider(), excluded_urls=",".join(contract.PUBLIC_PATHS)
        )
    app.state.metrics_registry = registry
    # The last added runs first: the size limit bounds what the guard reads.
    app.add_middleware(InputGuard)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(
        Admission, limit=settings.request_concurrency, wait_seconds=settings.request_wait_seconds
    )
    app.add_middleware(RequestIds)  # outermost: a refused body is logged with its id too
    errors.install(app)
    app.openapi = lambda: contract.openapi(app, secured=settings.auth_enabled)  # type: ignore[method-assign]
    for kind in kinds.enabled(settings.job_kinds):
        app.include_router(kind_router(kind))
    for module in (jobs, datasets, rankings, leaderboards, predictors, scaling, webhooks, health):
        app.include_router(module.router)
    dashboard.install(app)
    return app


def create_served_app() -> FastAPI:
    """The app each of several ``grace serve`` processes builds (``GRACE_API_PROCESSES``; uvicorn
    imports this factory in each): settings and the log format from the environment, as
    ``grace serve`` sets them up for its one process."""
    settings = Settings()
    logs.configure(settings.log_format)
    return create_app(settings)
