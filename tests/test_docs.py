"""The README documents every setting and every endpoint (it is the operator's reference)."""

from __future__ import annotations

from pathlib import Path

from app.main import create_app
from grace_infra.settings import Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    missing = [
        f"GRACE_{name.upper()}" for name in Settings.model_fields if f"`GRACE_{name.upper()}`" not in README
    ]
    assert missing == []


def _operations() -> list[tuple[str, str]]:
    """Every operation of the API as (METHOD, path), from its OpenAPI document: FastAPI's route
    list no longer shows what an included router holds."""
    paths = create_app(Settings()).openapi()["paths"]
    operations = [(method.upper(), path) for path, ops in paths.items() for method in ops]
    assert len(operations) >= 20, operations
    return operations


def test_every_endpoint_has_a_curl_example() -> None:
    missing = []
    for method, path in _operations():
        stem = path.split("{")[0].rstrip("/")
        tail = path.rsplit("}", 1)[-1]  # e.g. /cancel, /ranking
        curls = [line for line in README.splitlines() if "curl" in line and stem in line and tail in line]
        if not any(("-X " in line) == (method != "GET") for line in curls):
            missing.append(f"{method} {path}")
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

    import grace_client.calls

    source = inspect.getsource(grace_client.calls)
    calls = {
        (method, re.sub(r"\{[^}]*\}", "{}", path))
        for method, path in re.findall(r'\("(GET|POST|DELETE|PUT|PATCH)", f?"([^"]+)"', source)
    }
    calls |= {("POST", path) for path in re.findall(r'_submission\("([^"]+)"', source)}
    missing = [
        f"{method} {path}"
        for method, path in _operations()
        if (method, re.sub(r"\{[^}]*\}", "{}", path)) not in calls
    ]
    assert missing == []
