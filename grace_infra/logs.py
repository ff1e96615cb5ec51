"""One log format for a whole process (the app, uvicorn, Dramatiq, the worker), text for a terminal
or JSON lines for a log pipeline (``GRACE_LOG_FORMAT``). Every record carries the id of the request
and of the job it belongs to, from context variables: each thread and task keeps its own, and
Starlette copies them into the threads that run sync endpoints."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Literal

request_id: ContextVar[str | None] = ContextVar("grace_request_id", default=None)
job_id: ContextVar[str | None] = ContextVar("grace_job_id", default=None)

TEXT = "%(asctime)s %(levelname)s %(name)s%(ids)s: %(message)s"
# python-json-logger writes each named field, then every extra the record carries.
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(job_id)s"


class _Ids(logging.Filter):
    """Puts the current request and job ids on each record (``ids``: the text form, or empty)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ids = {"request_id": request_id.get(), "job_id": job_id.get()}
        record.__dict__.update(ids)
        text = " ".join(f"{k.removesuffix('_id')}={v}" for k, v in ids.items() if v)
        record.ids = f" [{text}]" if text else ""
        return True


def configure(fmt: Literal["text", "json"] = "text", level: int = logging.INFO) -> None:
    """Send every logger's records (and warnings) to stderr in ``fmt``: the root handler, with
    uvicorn's own handlers removed so that its records take the same path."""
    handler = logging.StreamHandler()
    handler.addFilter(_Ids())
    if fmt == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(
            JsonFormatter(
                JSON_FIELDS,
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                reserved_attrs=[*logging.LogRecord("", 0, "", 0, "", None, None).__dict__, "ids"],
            )
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.captureWarnings(True)  # a library's warning is a record in the same format, not a bare line
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True


@contextmanager
def job_context(job: str) -> Iterator[None]:
    """Records logged inside carry ``job``'s id."""
    token = job_id.set(job)
    try:
        yield
    finally:
        job_id.reset(token)
