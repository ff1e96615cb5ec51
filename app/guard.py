"""The one input guard: text and numbers every request carries are checked here, before routing.

PostgreSQL cannot store U+0000 in ``text`` or ``jsonb``, UTF-8 cannot encode a lone UTF-16
surrogate, and JSON has no NaN, Infinity or overflowing numbers (Python's parser accepts all of
them). Rather than each field remembering each rule, this ASGI middleware checks every path
parameter, every query parameter and every string, key and number of a JSON body, and answers a
422 problem naming the first offending field (``candidates[0].name``, ``student``, ``job_id``).
Bodies are read once, within the size limit that wraps this middleware, and replayed unchanged.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.contract import match_path
from app.errors import problem
from app.limits import BodyTooLarge
from grace_jobs.sanitize import body_problems, text_problem


def _params_problems(scope: Scope) -> list[tuple[str, str]]:
    found = []
    path = scope.get("path", "")
    if text_problem(path):
        route = match_path(scope["app"], path)
        named = [(k, v) for k, v in (route.params if route else {}).items() if text_problem(v)]
        found += [(k, str(text_problem(v))) for k, v in named] or [("path", str(text_problem(path)))]
    query = scope.get("query_string", b"").decode("latin-1")
    for key, value in parse_qsl(query, keep_blank_values=True, errors="replace"):
        why = text_problem(key) or text_problem(value)
        if why:
            found.append((key if not text_problem(key) else "query", why))
    return found


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            kind: str = value.decode("latin-1").split(";", 1)[0].strip().lower()
            return kind == "application/json" or kind.endswith("+json")
    return False


class InputGuard:
    """ASGI middleware: refuse bad text and numbers in the path, query and JSON body (module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        found = _params_problems(scope)
        replay = receive
        if not found and _is_json(scope):
            chunks, more = [], True
            try:
                while more:
                    message = await receive()
                    if message["type"] != "http.request":
                        break
                    chunks.append(message.get("body", b""))
                    more = message.get("more_body", False)
            except BodyTooLarge as exc:  # raised by the size limit around this middleware
                await problem(Request(scope), 413, "Content Too Large", exc.detail)(scope, receive, send)
                return
            body = b"".join(chunks)
            found = body_problems(body)
            sent = False

            async def replay_body() -> Message:
                nonlocal sent
                if sent:
                    return await receive()
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}

            replay = replay_body
        if found:
            errors = [{"field": f, "message": m} for f, m in found]
            first = errors[0]
            response = problem(
                Request(scope),
                422,
                "Validation Error",
                f"{first['field']}: {first['message']}",
                errors=errors,
            )
            await response(scope, receive, send)
            return
        await self.app(scope, replay, send)
