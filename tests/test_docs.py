"""The README documents every setting and every endpoint (it is the operator's reference)."""

from __future__ import annotations

from pathlib import Path

from fastapi.routing import APIRoute

from app.config import Settings
from app.main import create_app

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    missing = [
        f"GRACE_{name.upper()}" for name in Settings.model_fields if f"`GRACE_{name.upper()}`" not in README
    ]
    assert missing == []


def test_every_endpoint_has_a_curl_example() -> None:
    app = create_app(Settings())
    missing = []
    for route in app.routes:
        if not isinstance(route, APIRoute):
            continue
        stem = route.path.split("{")[0].rstrip("/")
        tail = route.path.rsplit("}", 1)[-1]  # e.g. /cancel, /ranking
        if not any(stem in line and tail in line for line in README.splitlines() if "curl" in line):
            missing.append(f"{sorted(route.methods)} {route.path}")
    assert missing == []
