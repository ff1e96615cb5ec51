"""Engine and session factory. One engine per process, built by whoever owns the process
(the API's lifespan, the worker's main), never at import time."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from grace_infra.settings import Settings

POOL_CONNECTIONS = 30  # per process on PostgreSQL; admission keeps API requests below it


def make_engine(settings: Settings) -> Engine:
    url = settings.sqlalchemy_url
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")  # readers do not block the worker's writes
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    # A bounded connect: an attempt that hangs (a server starting or stopping under load) must fail
    # and be retried, or a worker's heartbeat thread stalls and a live worker looks dead. Every
    # connection stays pooled: an overflow connection is closed on return, so each burst of more
    # requests than the pool kept would open (and authenticate) its connections again.
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=POOL_CONNECTIONS,
        max_overflow=0,
        connect_args={"connect_timeout": 10},
    )


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
