"""/dashboard: the page served by the app itself, with its assets packaged (no CDN). It calls the
public API from the browser with the key the user enters (kept in sessionStorage, never a URL)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = Path(__file__).resolve().parents[1] / "dashboard"
# Only this origin's scripts and styles (inline style attributes draw the progress bars); no
# framing, so the page cannot be overlaid to harvest a key.
POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "frame-ancestors 'none'"
)

router = APIRouter(include_in_schema=False)


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard() -> HTMLResponse:
    return HTMLResponse(
        (ASSETS / "index.html").read_text("utf-8"),
        headers={"Content-Security-Policy": POLICY, "Cache-Control": "no-cache"},
    )


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/dashboard/static", StaticFiles(directory=ASSETS), name="dashboard-static")
