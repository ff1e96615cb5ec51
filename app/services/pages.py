"""Cursor pagination of a tenant's rows, newest first by ``(created_at, id)``: the cursor is the last
row seen, so pages stay stable while new rows arrive."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute, Session

from app.errors import ApiError
from grace_infra.db.models import ID_LENGTH
from grace_jobs.sanitize import text_problem


class Listed(Protocol):
    created_at: datetime
    id: str


Row = TypeVar("Row", bound=Listed)

# Bounds of a cursor's timestamp: every row was created inside them, and both survive conversion
# to UTC and binding to PostgreSQL.
CURSOR_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
CURSOR_LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def encode_cursor(row: Listed) -> str:
    raw = json.dumps([row.created_at.isoformat(), row.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (created_at, id) of a cursor :func:`encode_cursor` wrote. Anything else (wrong
    encoding, shape or types, a naive or out-of-range time, an id no row can have) is a 422."""

    def malformed(why: str) -> ApiError:
        return ApiError(
            422, "Validation Error", f"malformed cursor: {why}; pass next_cursor back as is", field="cursor"
        )

    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw.decode("utf-8"))  # decoded here: json.loads(bytes) also takes UTF-16
    except (ValueError, binascii.Error) as exc:
        raise malformed("not base64 of JSON") from exc
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
        raise malformed("not a [time, id] pair")
    if any(text_problem(v) for v in value):  # fromisoformat would take a trailing NUL
        raise malformed("it holds characters no cursor has")
    created_text, row_id = value
    try:
        created = datetime.fromisoformat(created_text)
    except ValueError as exc:
        raise malformed("its time is not ISO 8601") from exc
    if created.tzinfo is None:
        raise malformed("its time has no time zone")
    try:
        created = created.astimezone(UTC)
    except OverflowError as exc:
        raise malformed("its time is out of range") from exc
    if not CURSOR_EARLIEST <= created <= CURSOR_LATEST:
        raise malformed("its time is out of range")
    if not 1 <= len(row_id) <= ID_LENGTH:
        raise malformed("its id is not an id this service gives")
    return created, row_id


def newest_first(
    session: Session, query: Select[Row], model: Any, *, limit: int, cursor: str | None
) -> tuple[list[Row], str | None]:
    """One page of ``query`` (rows of ``model``, which has ``created_at`` and ``id``) and the
    cursor of the next, None on the last page."""
    created_at: InstrumentedAttribute[datetime] = model.created_at
    row_id: InstrumentedAttribute[str] = model.id
    if cursor is not None:
        created, last = decode_cursor(cursor)
        query = query.where(or_(created_at < created, and_(created_at == created, row_id < last)))
    rows = list(session.scalars(query.order_by(created_at.desc(), row_id.desc()).limit(limit + 1)))
    return rows[:limit], encode_cursor(rows[limit - 1]) if len(rows) > limit else None
