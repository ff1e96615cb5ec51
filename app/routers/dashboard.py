"""/dashboard: the page served by the app itself, with its assets packaged (no CDN). It calls the
public API from the browser with the key the user enters (kept in sessionStorage, never a URL)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

ASSETS = Path(__file__).resolve().parents[1] / "dashboard"
# Only this origin's scripts and styles (inline style attributes draw the progress bars); no
# framing, so the page cannot be overlaid to harvest a key.
POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
)
# On every dashboard response, the static files too: /dashboard/static/index.html is the working
# page as well, and a framed copy of it would harvest keys as the page itself would.
HEADERS = {
    "Content-Security-Policy": POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

router = APIRouter(include_in_schema=False)


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard() -> HTMLResponse:
    return HTMLResponse(
        (ASSETS / "index.html").read_text("utf-8"),
        headers={**HEADERS, "Cache-Control": "no-cache"},
    )


class _Assets(StaticFiles):
    """The packaged assets, each served with the dashboard's headers (a 304 too)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(HEADERS)
        return response


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/dashboard/static", _Assets(directory=ASSETS), name="dashboard-static")
