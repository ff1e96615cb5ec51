"""The dashboard and the docs in a real headless Chromium (Debian's, driven by Playwright; its own
browser download is never used), against a real `grace serve`. Each test leaves a screenshot
under test-artifacts/."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Route, sync_playwright

from grace_client import Client
from grace_engine.models.tiny_models import TinyModels
from tests.service.conftest import embedded_key, embedded_server, job_body, supplied_job
from tests.service.helpers import slow_job

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
# What the probe of this machine found Chromium needs to start headless and quiet here: without the
# background-networking flags it keeps dialling hosts this closed network refuses.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DEADLINE_MS = 120_000

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="scripts/services.sh installs chromium")


@pytest.fixture(scope="module")
def server(tiny: TinyModels, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with embedded_server(tmp_path_factory.mktemp("dashboard"), tiny.root) as base:
        yield base


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(DEADLINE_MS)
    yield page
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()


def test_a_finished_job_appears_with_its_id_and_its_chart(server: str, page: Page) -> None:
    with Client(server) as grace:
        body = supplied_job({"tutor": ["2 + 2 = 4", "4"], "noise": ["purple", "seven"]})
        job = grace.wait(grace.create_job(body)["id"], poll=0.2, timeout=600)
    assert job["status"] == "succeeded", job
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.goto(f"{server}/dashboard")
    row = page.locator(f'tr[data-job="{job["id"]}"]')
    row.wait_for()
    assert "succeeded" in row.inner_text()
    row.get_by_role("link").click()
    page.locator("#ranking-chart").wait_for()
    assert page.locator("#job-id").inner_text() == job["id"]
    names = page.locator("#ranking-chart g.candidate").evaluate_all("gs => gs.map(g => g.dataset.name)")
    assert names == [r["name"] for r in job["ranking"]]
    assert page.locator("#ranking-chart circle.dot").count() == 2
    # The dots sit where their GRACE puts them, on a log axis when the values span over a decade.
    xs = page.locator("#ranking-chart circle.dot").evaluate_all(
        "cs => cs.map(c => Number(c.getAttribute('cx')))"
    )
    graces = [r["grace"] for r in job["ranking"]]
    assert xs[0] != xs[1]
    assert (xs[0] < xs[1]) == (graces[0] < graces[1])
    wide = min(graces) > 0 and max(graces) / min(graces) > 10
    assert page.locator("#ranking-chart").get_attribute("data-scale") == ("log" if wide else "linear")
    assert page.locator("#scores tbody tr").count() == 2
    assert "g-norm" in page.locator("#scores thead").inner_text().lower()
    # P(top-1) reads as the CLI shows it, a percentage; G-Norm (~1e-4) keeps its digits.
    header = page.locator("#scores thead th").all_inner_texts()
    for title, check in (("P(top-1) at n/2", lambda c: c.endswith("%")), ("G-Norm", lambda c: float(c) != 0)):
        column = [
            i for i, h in enumerate(header) if h.strip().lower() == title.lower()
        ]  # CSS upper-cases them
        assert column, header
        cells = page.locator(f"#scores tbody td:nth-child({column[0] + 1})").all_inner_texts()
        assert all(check(c) for c in cells), (title, cells)
    assert console_errors == []  # no favicon 404, no script error
    # The verdict: the leader's margin over the runner-up, its interval and the test, as the API has them.
    u, second = job["uncertainty"], job["ranking"][1]
    verdict = page.locator("#verdict").inner_text()
    assert verdict.startswith("Settled" if u["settled"] else "Not settled"), verdict
    assert f"{u['leader']} leads {u['runner_up']}" in verdict
    shown = [float(v) for v in page.locator("#verdict-interval").inner_text().strip("[]").split(", ")]
    assert shown == pytest.approx(second["gap_interval"], rel=5e-3)
    assert shown[0] <= float(page.locator("#verdict-gap").inner_text()) <= shown[1]
    assert "signed-rank p" in verdict


def test_a_running_jobs_progress_advances_on_screen(server: str, page: Page, tiny: TinyModels) -> None:
    with Client(server) as grace:
        job_id = grace.create_job(slow_job(tiny))["id"]
        page.goto(f"{server}/dashboard#/jobs/{job_id}")
        seen: list[str] = []
        deadline = time.monotonic() + DEADLINE_MS / 1000 * 5
        while time.monotonic() < deadline:
            status = page.locator("#job-status")
            text = status.inner_text() if status.count() else ""
            counts = page.locator("#job-progress .count").all_inner_texts()
            if counts and (not seen or seen[-1] != "|".join(counts)):
                seen.append("|".join(counts))
            if text == "succeeded":
                break
            time.sleep(0.2)
        final = grace.get_job(job_id)
    assert final["status"] == "succeeded", final
    assert page.locator("#job-status").inner_text() == "succeeded"  # with no reload
    assert len(seen) >= 3, seen  # the counts changed on screen while it ran
    page.locator("#ranking-chart").wait_for()


def test_the_guidance_shows_on_the_job_and_on_its_leaderboard(server: str, page: Page) -> None:
    body = job_body(
        candidates=[
            {"name": "tutor", "model": "tutor", "temperatures": [0.3, 1.0], "max_tokens": 24},
            {"name": "parrot", "model": "parrot", "max_tokens": 24},
            {"name": "noise", "model": "noise", "max_tokens": 24},
        ],
        scoring={"responses_per_prompt": 2, "proj_dim": 32, "max_params": 10**9},
    )
    with Client(server) as grace:
        job = grace.wait(grace.create_job(body)["id"], poll=0.2, timeout=600)
    assert job["status"] == "succeeded", job
    g = job["guidance"]
    page.goto(f"{server}/dashboard#/jobs/{job['id']}")
    card = page.locator("#guidance")
    card.wait_for()
    text = card.inner_text()
    (tutor,) = [c for c in g["best_temperature"] if c["model"] == "tutor"]
    assert f"{tutor['temperature']:g} ({tutor['candidate']}, rank {tutor['rank']}; tried 0.3, 1)" in text
    for family in g["best_per_family"]:
        assert f"{family['candidate']} (rank {family['rank']} of {family['n_candidates']}" in text
    assert f"{g['under_max_params']['candidate']} (rank 1" in text  # everything fits under 1B
    # The leaderboard's form asks for a size limit and the board answers under it.
    small = min(c["params"] for c in g["best_per_family"] if c["params"] is not None)
    page.goto(f"{server}/dashboard#/leaderboard")
    page.fill("input[name=student]", "student")
    page.fill("input[name=dataset]", job["prompt_set"])
    page.fill("input[name=max_params]", str(small))
    page.click("#board-form button")
    page.locator("#leaderboard").wait_for()
    with Client(server) as grace:
        board = grace.get_leaderboard("student", job["prompt_set"], max_params=small)
    pick = board["guidance"]["under_max_params"]["candidate"]
    assert pick is not None
    assert f"{pick} (rank" in page.locator("#guidance").inner_text()


def _offline(page: Page, base: str) -> list[str]:
    """Cut the page off from everything but the service; returns what it tried to reach."""
    blocked: list[str] = []

    def only_local(route: Route) -> None:
        if route.request.url.startswith(base):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    page.route(re.compile(".*"), only_local)
    return blocked


def test_docs_render_their_operations_with_the_network_cut_off(server: str, page: Page) -> None:
    blocked = _offline(page, server)
    page.goto(f"{server}/docs")
    page.locator(".opblock").first.wait_for()
    operations: list[Any] = page.locator(".opblock-summary-path").all_inner_texts()
    assert "/v1/jobs" in operations
    assert "/v1/leaderboards" in operations
    assert len(operations) >= 20
    page.goto(f"{server}/redoc")
    page.get_by_text("Create Job").first.wait_for(state="attached")  # ReDoc drew the operations
    # Nothing the pages need came from outside; ReDoc's bundle only links its "powered by" badge.
    assert [u for u in blocked if not u.endswith("/redoc/logo-mini.svg")] == []


def test_with_keys_required_the_key_is_asked_for_once_and_kept_in_the_tab(
    browser: Browser, tiny: TinyModels, tmp_path: Path
) -> None:
    key = embedded_key(tmp_path, "dash")
    with (
        embedded_server(tmp_path, tiny.root, env={"GRACE_AUTH": "on"}) as base,
        Client(base, api_key=key) as grace,
    ):
        job = grace.wait(
            grace.create_job(supplied_job({"a": ["1", "2"], "b": ["3", "4"]}))["id"], timeout=600
        )
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(DEADLINE_MS)
        requests: list[tuple[str, str | None]] = []
        page.on("request", lambda r: requests.append((r.url, r.headers.get("authorization"))))
        try:
            page.goto(f"{base}/dashboard")
            page.locator("#key-form").wait_for()  # a 401 asked for the key
            assert "API key" in page.locator("#view").inner_text()
            page.fill("#key", "gk_not-a-key")
            page.click("#key-form button")
            page.locator("#key-form").wait_for()  # a wrong key is asked for again, and dropped
            assert page.evaluate("sessionStorage.getItem('grace.apiKey')") is None
            page.fill("#key", key)
            page.click("#key-form button")
            page.locator(f'tr[data-job="{job["id"]}"]').wait_for()
            assert page.locator("#key-form").is_hidden()
            assert page.evaluate("sessionStorage.getItem('grace.apiKey')") == key
            page.reload()  # kept for the tab: not asked again
            page.locator(f'tr[data-job="{job["id"]}"]').wait_for()
            assert page.locator("#key-form").is_hidden()
            page.click("#forget")
            page.locator("#key-form").wait_for()
            assert page.evaluate("sessionStorage.getItem('grace.apiKey')") is None
        finally:
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "test_api_key_prompt.png"), full_page=True)
            context.close()
    assert all(key not in url for url, _ in requests)  # never in a URL
    api_calls = [auth for url, auth in requests if "/v1/" in url]
    assert f"Bearer {key}" in api_calls
    assert api_calls[0] is None  # nothing was sent before the key was entered
