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
        if not isinstance(route, APIRoute) or route.path.endswith("oauth2-redirect"):
            continue
        stem = route.path.split("{")[0].rstrip("/")
        tail = route.path.rsplit("}", 1)[-1]  # e.g. /cancel, /ranking
        if not any(stem in line and tail in line for line in README.splitlines() if "curl" in line):
            missing.append(f"{sorted(route.methods)} {route.path}")
    assert missing == []


def test_docs_pages_load_only_packaged_assets() -> None:
    """/docs and /redoc name no CDN: every script and stylesheet they load is served by the app
    (the browser test renders them with the network cut off)."""
    import re

    from fastapi.testclient import TestClient

    client = TestClient(create_app(Settings()))  # no lifespan: the pages need no database
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        assets = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert assets, html
        for url in assets:
            assert url.startswith("/"), f"{page} loads {url} from elsewhere"
            fetched = client.get(url)
            assert fetched.status_code == 200, url
            assert len(fetched.content) > 1000 or url.endswith(".png"), url


def test_the_public_client_has_a_method_for_every_endpoint() -> None:
    """grace_client covers the API: each operation's method and path (parameters as ``{}``) is
    requested somewhere in the client's source."""
    import inspect
    import re

    import grace_client.client

    source = inspect.getsource(grace_client.client)
    calls = {
        (method, re.sub(r"\{[^}]*\}", "{}", path))
        for method, path in re.findall(r'\("(GET|POST|DELETE|PUT|PATCH)", f?"([^"]+)"', source)
    }
    calls |= {("POST", path) for path in re.findall(r'_submit\("([^"]+)"', source)}
    app = create_app(Settings())
    missing = [
        f"{method} {route.path}"
        for route in app.routes
        if isinstance(route, APIRoute) and route.path.startswith(("/v1/", "/healthz", "/readyz", "/metrics"))
        for method in sorted(route.methods - {"HEAD", "OPTIONS"})
        if (method, re.sub(r"\{[^}]*\}", "{}", route.path)) not in calls
    ]
    assert missing == []
