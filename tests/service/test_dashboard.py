"""The dashboard and the docs in a real headless Chromium (Debian's, driven by Playwright; its own
browser download is never used), against a real `grace serve`. Each test leaves a screenshot
under test-artifacts/; with GRACE_SCREENSHOTS=DIR some also save the README's (docs/screenshots/).

Two servers: `server`, the embedded default, whose in-process worker runs the jobs that must
finish (few and small: the machine has 2 cores); and `queue_server`, on PostgreSQL with a Redis
queue no worker reads, where jobs stay queued: free to create by the dozen, to list, cancel and
re-run. Its keys are on, so every call the page makes there carries the key."""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright
from sqlalchemy.orm import Session, sessionmaker

from grace_client import Client
from grace_engine.models.tiny_models import TinyModels
from grace_jobs.tenants import create_key
from tests.service.conftest import embedded_server, job_body, supplied_job
from tests.service.helpers import slow_job

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
SHOTS = os.environ.get("GRACE_SCREENSHOTS")  # a directory: the README's screenshots are written there
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
# The browser's time zone: not the machine's (UTC), so a time shown in UTC instead of the viewer's
# local time is caught. No daylight saving time there.
ZONE = "Asia/Kolkata"
RESPONSES = {"tutor": ["2 + 2 = 4", "4"], "noise": ["purple", "seven"]}

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="scripts/services.sh installs chromium")


def local(stamp: str) -> str:
    """An API timestamp as the dashboard shows it: the viewer's local time, to the second."""
    return datetime.fromisoformat(stamp).astimezone(ZoneInfo(ZONE)).strftime("%Y-%m-%d %H:%M:%S")


def shot(page: Page, name: str) -> None:
    """A screenshot for the README, when GRACE_SCREENSHOTS names a directory."""
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / name), full_page=True)


SCORED = [
    supplied_job(RESPONSES),
    supplied_job(RESPONSES, proj_dim=16, seed=1),
    supplied_job(RESPONSES, predictors=["student_nll"], seed=2),
]


@dataclass
class Servers:
    base: str  # the embedded server
    scored: list[str]  # the ids of the SCORED jobs, submitted as soon as it answered
    queue: str | None  # the queue server; None where there is no PostgreSQL and Redis to run it on


@pytest.fixture(scope="module")
def servers(
    tiny: TinyModels, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Servers]:
    """Both servers, started side by side (each imports its way up for seconds); the embedded
    one's worker is at once busy with the jobs `scored` waits for, while the tests that need no
    worker (this module's first) run."""
    with ExitStack() as queue_stack, ExitStack() as stack, ThreadPoolExecutor(1) as pool:
        queue = None
        if os.environ.get("GRACE_TEST_PG_ADMIN") and os.environ.get("GRACE_TEST_REDIS_URL"):
            env = {
                "GRACE_DATABASE_URL": request.getfixturevalue("database_url"),
                "GRACE_REDIS_URL": request.getfixturevalue("redis_url"),
                "GRACE_QUEUE_NAME": f"grace-dashboard-{uuid.uuid4().hex[:8]}",
                "GRACE_AUTH": "on",
            }
            started = embedded_server(tmp_path_factory.mktemp("queue"), tiny.root, env=env)
            queue = pool.submit(queue_stack.enter_context, started)
        base = stack.enter_context(embedded_server(tmp_path_factory.mktemp("dashboard"), tiny.root))
        with Client(base) as grace:
            ids = [grace.create_job(body)["id"] for body in SCORED]
        yield Servers(base, ids, None if queue is None else queue.result())


@pytest.fixture(scope="module")
def server(servers: Servers) -> str:
    """`grace serve`, the embedded default: SQLite, an in-process worker, no keys."""
    return servers.base


@pytest.fixture(scope="module")
def queue_server(servers: Servers, request: pytest.FixtureRequest) -> str:
    """`grace serve` on the test database and a queue of its own that no worker reads, keys on."""
    if servers.queue is None:
        request.getfixturevalue("database_url")  # skips (fails in CI) saying what is missing
        pytest.skip("PostgreSQL and Redis are not configured")
    return servers.queue


@pytest.fixture
def key(session_factory: sessionmaker[Session]) -> str:
    """An API key of a fresh tenant of `queue_server`: each test sees only its own jobs."""
    with session_factory() as session:
        return create_key(session=session, tenant_name=f"dash-{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1200, "height": 900}, timezone_id=ZONE)
    page = context.new_page()
    page.set_default_timeout(DEADLINE_MS)
    yield page
    ARTIFACTS.mkdir(exist_ok=True)
    # The whole dashboard page; of /docs and /redoc (pages of seconds to draw whole) what shows.
    whole = "/dashboard" in page.url
    page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=whole)
    context.close()


def keyed(page: Page, key: str) -> Page:
    """The page with `key` in its tab's sessionStorage before any of its pages asks for it."""
    page.add_init_script(f"sessionStorage.setItem('grace.apiKey', {json.dumps(key)})")
    return page


@dataclass
class Scored:
    """Three small finished jobs on the same prompts and responses: `a` (d = 32, seed 0), `b`
    (d = 16, seed 1: another configuration) and `c` (student NLL only: no mixed dataset)."""

    a: dict[str, Any]
    b: dict[str, Any]
    c: dict[str, Any]


@pytest.fixture(scope="module")
def scored(servers: Servers) -> Scored:
    with Client(servers.base) as grace:
        jobs = [grace.wait(i, poll=0.2, timeout=600) for i in servers.scored]
    assert [j["status"] for j in jobs] == ["succeeded"] * 3, jobs
    return Scored(*jobs)


def rows(page: Page) -> list[str]:
    ids: list[str] = page.locator("#jobs-body tr[data-job]").evaluate_all("rs => rs.map(r => r.dataset.job)")
    return ids


def wait_rows(page: Page, expected: list[str]) -> None:
    """Until the jobs table lists exactly `expected` (in any order)."""
    page.wait_for_function(
        """ids => {
             const got = [...document.querySelectorAll('#jobs-body tr[data-job]')].map(r => r.dataset.job);
             return got.length === ids.length && ids.every(i => got.includes(i));
           }""",
        arg=expected,
    )


def wait_hash(page: Page, prefix: str) -> str:
    page.wait_for_function("p => location.hash.startsWith(p)", arg=prefix)
    found: str = page.evaluate("location.hash")
    return found


def new_job_page(page: Page, old: str | None = None) -> str:
    """The job page the dashboard went to (another than `old`); its id."""
    page.wait_for_function(
        "old => location.hash.startsWith('#/jobs/') && location.hash !== '#/jobs/' + old", arg=old or ""
    )
    job_id = page.evaluate("decodeURIComponent(location.hash.slice('#/jobs/'.length))")
    expect(page.locator("#job-id")).to_have_text(job_id)
    page.locator("#job-status").wait_for()
    return str(job_id)


def whiskers_centred(page: Page, ranking: list[dict[str, Any]]) -> None:
    """Each std whisker of the ranking chart is centred on its dot, on a linear or a log axis."""
    geometry = page.locator("#ranking-chart g.candidate").evaluate_all(
        """gs => gs.map(g => {
             const at = (sel, a) => Number(g.querySelector(sel).getAttribute(a));
             return [at('line.whisker', 'x1'), at('line.whisker', 'x2'), at('circle.dot', 'cx')];
           })"""
    )
    for (x1, x2, cx), r in zip(geometry, ranking, strict=True):
        assert (x1 + x2) / 2 == pytest.approx(cx, abs=0.01), (r["name"], x1, x2, cx)
        assert (x2 > x1) == bool(r["grace_std"]), (r["name"], x1, x2)


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


def test_submit_from_json_shows_the_field_of_a_422_then_opens_the_job(
    queue_server: str, key: str, page: Page
) -> None:
    keyed(page, key).goto(f"{queue_server}/dashboard#/submit")
    body = job_body()
    body["candidates"][0]["temperature"] = 99
    page.fill("#job-json", json.dumps(body))
    page.click("#json-form button[type=submit]")
    field = page.locator('#submit-error li[data-field="candidates[0].temperature"]')
    field.wait_for()
    assert "less than or equal to 10" in field.inner_text()
    assert (
        page.locator("#submit-error p").inner_text().startswith("Validation Error: candidates[0].temperature")
    )
    assert page.evaluate("location.hash") == "#/submit"  # nothing was created
    body["candidates"][0]["temperature"] = 0.7
    page.fill("#job-json", json.dumps(body))
    page.click("#json-form button[type=submit]")
    job_id = new_job_page(page)
    with Client(queue_server, api_key=key) as grace:
        stored = grace.request("GET", f"/v1/jobs/{job_id}/request").json()
        assert grace.list_jobs()["data"][0]["id"] == job_id  # the one job of this tenant
    assert stored["candidates"][0]["temperature"] == 0.7
    assert stored["prompts"] == body["prompts"]


def test_submit_from_the_form_with_pasted_prompts_or_a_dataset(
    queue_server: str, key: str, page: Page
) -> None:
    with Client(queue_server, api_key=key) as grace:
        dataset = grace.create_dataset([{"prompt": f"What is {i} + {i}?"} for i in range(4)], name="sums")
    keyed(page, key).goto(f"{queue_server}/dashboard#/submit")
    form = page.locator("#submit-form")
    form.locator("[name=student]").fill("student")
    form.locator("[name=candidates]").fill("tutor=tutor@0.3\n\n noise = noise \nhot=tutor@1.5")
    form.locator("[name=prompts]").fill("What is 2 + 2?\nWhat is 3 + 5?\n\nName a colour.")
    form.locator("[name=m]").fill("3")
    form.locator("[name=proj_dim]").fill("16")
    form.locator("[name=max_tokens]").fill("32")  # the tiny teachers' context is short
    shot(page, "dashboard-submit.png")
    form.locator("button[type=submit]").click()
    first = new_job_page(page)
    # The same form with a dataset id (offered from the tenant's datasets) and d left to "auto".
    page.goto(f"{queue_server}/dashboard#/submit")
    page.locator(f'#datasets option[value="{dataset["id"]}"]').wait_for(state="attached")
    form.locator("[name=student]").fill("student")
    form.locator("[name=candidates]").fill("tutor=tutor")
    form.locator("[name=max_tokens]").fill("32")
    form.locator("[name=dataset_id]").fill(dataset["id"])
    form.locator("[name=prompts]").fill("a prompt as well")
    form.locator("button[type=submit]").click()
    expect(page.locator("#form-error")).to_contain_text("not both")  # checked before sending
    form.locator("[name=prompts]").fill("")
    form.locator("button[type=submit]").click()
    second = new_job_page(page, first)
    with Client(queue_server, api_key=key) as grace:
        one, two = (grace.request("GET", f"/v1/jobs/{j}/request").json() for j in (first, second))
    assert [(c["name"], c["model"], c["temperature"], c["max_tokens"]) for c in one["candidates"]] == [
        ("tutor", "tutor", 0.3, 32),
        ("noise", "noise", 0.6, 32),  # the default temperature
        ("hot", "tutor", 1.5, 32),
    ]
    assert [p["prompt"] for p in one["prompts"]] == ["What is 2 + 2?", "What is 3 + 5?", "Name a colour."]
    assert (one["scoring"]["responses_per_prompt"], one["scoring"]["proj_dim"], one["dataset_id"]) == (
        3,
        16,
        None,
    )
    assert (two["dataset_id"], two["prompts"], two["scoring"]["proj_dim"]) == (dataset["id"], None, "auto")
    assert two["scoring"]["responses_per_prompt"] == 4


def test_cancel_a_queued_job_from_its_page(queue_server: str, key: str, page: Page) -> None:
    with Client(queue_server, api_key=key) as grace:
        job = grace.get_job(grace.create_job(job_body())["id"])
    keyed(page, key).goto(f"{queue_server}/dashboard#/jobs/{job['id']}")
    page.locator("#timeline").wait_for()
    # Not started: each unit is a "queued" row of the timeline, and nothing to download yet.
    queued = page.locator('#timeline .unit-row[data-status="queued"]')
    assert queued.count() == len(job["units"]) == 2
    texts = queued.evaluate_all("gs => gs.map(g => [...g.querySelectorAll('text')].map(t => t.textContent))")
    assert texts == [["tutor", "queued"], ["noise", "queued"]]
    counters = page.locator("#job-counters")
    assert (counters.get_attribute("data-units-done"), counters.get_attribute("data-units-queued")) == (
        "0",
        "2",
    )
    assert "ETA –" in counters.inner_text()
    assert page.locator('#timestamps tr[data-key="created"] td').first.inner_text() == local(
        job["created_at"]
    )
    assert page.locator('[data-download="chat"]').get_attribute("title") == (
        "results exist once the job has succeeded"
    )
    page.click('[data-action="cancel"]')
    expect(page.locator("#job-status")).to_have_text("cancelled")
    with Client(queue_server, api_key=key) as grace:
        assert grace.get_job(job["id"])["status"] == "cancelled"
    expect(page.locator('[data-action="cancel"]')).to_have_count(0)  # nothing left to cancel
    assert page.locator('#timeline .unit-row[data-status="cancelled"]').count() == 2


def test_rerun_a_job_as_it_was_or_edited_first(queue_server: str, key: str, page: Page) -> None:
    with Client(queue_server, api_key=key) as grace:
        original = grace.create_job(job_body())["id"]
        stored = grace.request("GET", f"/v1/jobs/{original}/request").json()
    keyed(page, key).goto(f"{queue_server}/dashboard#/jobs/{original}")
    page.click('[data-action="rerun"]')
    again = new_job_page(page, original)
    # Edit first: the submit page opens with the stored submission, every default filled in.
    page.click("#job-edit")
    assert wait_hash(page, "#/submit") == f"#/submit?from={again}"
    text = page.locator("#job-json")
    expect(text).not_to_have_value("")
    prefilled = json.loads(text.input_value())
    assert prefilled == stored
    assert page.locator("#json-form select[name=kind]").input_value() == "score"
    prefilled["scoring"]["seed"] = 7
    text.fill(json.dumps(prefilled))
    page.click("#json-form button[type=submit]")
    edited = new_job_page(page, again)
    with Client(queue_server, api_key=key) as grace:
        bodies = {j: grace.request("GET", f"/v1/jobs/{j}/request").json() for j in (again, edited)}
        listed = {j["id"] for j in grace.list_jobs()["data"]}
    assert listed == {original, again, edited}
    assert bodies[again] == stored
    assert bodies[edited] == {**stored, "scoring": {**stored["scoring"], "seed": 7}}
    assert page.locator('#config tr[data-key="seed"] td').inner_text() == "7"


def test_the_jobs_list_filters_searches_and_pages(queue_server: str, key: str, page: Page) -> None:
    with Client(queue_server, api_key=key) as grace:
        scores = [grace.create_job(job_body())["id"] for _ in range(26)]
        tutors = [grace.create_job(job_body(student="tutor"))["id"] for _ in range(2)]
        validations = [
            grace.create_validation_job({**job_body(), "eval": [{"prompt": "1 + 1?", "solution": "2"}]})["id"]
            for _ in range(2)
        ]
        cancelled = scores[:3]
        for job_id in cancelled:
            grace.cancel_job(job_id)
        jobs = {j["id"]: j for j in grace.list_jobs(limit=100)["data"]}
    everything = scores + tutors + validations
    assert set(jobs) == set(everything)
    assert len(everything) == 30
    keyed(page, key).goto(f"{queue_server}/dashboard#/jobs")
    # Pages of 25, newest first: next, then back to the same first page.
    page.wait_for_function("() => document.querySelectorAll('#jobs-body tr[data-job]').length === 25")
    one = rows(page)
    assert one[0] == everything[-1]
    sample = page.locator(f'tr[data-job="{one[0]}"]')
    assert sample.locator("td.created").inner_text() == local(jobs[one[0]]["created_at"])  # local time
    assert sample.locator("td.duration").inner_text() == "–"  # never started
    page.click("#page-next")
    page.wait_for_function("() => document.querySelectorAll('#jobs-body tr[data-job]').length === 5")
    two = rows(page)
    assert set(one) | set(two) == set(everything)
    assert not set(one) & set(two)
    expect(page.locator("#page-info")).to_have_text("page 2")
    expect(page.locator("#page-next")).to_be_disabled()
    page.click("#page-back")
    wait_rows(page, one)
    expect(page.locator("#page-back")).to_be_disabled()
    # Filters: by status, by kind; kept in the address, so a reload keeps them.
    page.select_option("#jobs-filter select[name=status]", "cancelled")
    wait_rows(page, cancelled)
    assert wait_hash(page, "#/jobs?") == "#/jobs?status=cancelled"
    page.reload()
    wait_rows(page, cancelled)
    assert page.locator("#jobs-filter select[name=status]").input_value() == "cancelled"
    page.select_option("#jobs-filter select[name=status]", "")
    page.select_option("#jobs-filter select[name=kind]", "validation")
    wait_rows(page, validations)
    page.select_option("#jobs-filter select[name=kind]", "score")
    wait_rows(page, [j for j in everything if j not in validations][-25:])
    shot(page, "dashboard-jobs.png")
    page.select_option("#jobs-filter select[name=kind]", "")
    # Search: part of the student's name, or an id's beginning.
    page.fill("#jobs-filter input[name=q]", "UTO")
    wait_rows(page, tutors)
    assert page.evaluate("location.hash") == "#/jobs?q=UTO"
    page.fill("#jobs-filter input[name=q]", scores[5][:8])
    wait_rows(page, [scores[5]])
    page.fill("#jobs-filter input[name=q]", "no-such-job")
    expect(page.locator("#jobs-body")).to_have_text("No job matches these filters.")


def test_with_keys_required_the_key_is_asked_for_once_and_kept_in_the_tab(
    browser: Browser, queue_server: str, key: str
) -> None:
    with Client(queue_server, api_key=key) as grace:
        job = grace.create_job(supplied_job({"a": ["1", "2"], "b": ["3", "4"]}))
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(DEADLINE_MS)
    requests: list[tuple[str, str | None]] = []
    page.on("request", lambda r: requests.append((r.url, r.headers.get("authorization"))))
    try:
        page.goto(f"{queue_server}/dashboard")
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


def test_a_finished_job_appears_with_its_id_and_its_chart(server: str, page: Page, scored: Scored) -> None:
    job = scored.a
    console_errors: list[str] = []
    missing: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
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
    whiskers_centred(page, job["ranking"])
    assert page.locator("#scores tbody tr").count() == 2
    assert "g-norm" in page.locator("#scores thead").inner_text().lower()
    # P(top-1) reads as the CLI shows it, a percentage; G-Norm (~1e-4) keeps 3 significant digits.
    header = page.locator("#scores thead th").all_inner_texts()

    def column(title: str) -> list[str]:
        found = [i for i, h in enumerate(header) if h.strip().lower() == title.lower()]  # CSS upper-cases
        assert found, header
        cells: list[str] = page.locator(f"#scores tbody td:nth-child({found[0] + 1})").all_inner_texts()
        return cells

    assert all(re.fullmatch(r"\d{1,3}%", c) for c in column("P(top-1) at n/2")), column("P(top-1) at n/2")
    for cell, r in zip(column("G-Norm"), job["ranking"], strict=True):
        assert float(cell) == pytest.approx(r["values"]["g_norm"], rel=5e-3), (cell, r["values"])
    assert console_errors == []  # no script error
    assert missing == []  # no favicon 404, nor any other
    # The verdict: the leader's margin over the runner-up, its interval and the test, as the API has them.
    u, second = job["uncertainty"], job["ranking"][1]
    verdict = page.locator("#verdict").inner_text()
    assert verdict.startswith("Settled" if u["settled"] else "Not settled"), verdict
    assert f"{u['leader']} leads {u['runner_up']}" in verdict
    shown = [float(v) for v in page.locator("#verdict-interval").inner_text().strip("[]").split(", ")]
    assert shown == pytest.approx(second["gap_interval"], rel=5e-3)
    assert shown[0] <= float(page.locator("#verdict-gap").inner_text()) <= shown[1]
    assert "signed-rank p" in verdict


def test_a_jobs_page_shows_its_configuration_timeline_and_downloads(
    server: str, page: Page, scored: Scored
) -> None:
    job = scored.a
    page.goto(f"{server}/dashboard#/jobs/{job['id']}")
    page.locator("#config").wait_for()
    page.locator("#job-downloads").wait_for()

    def config(key: str) -> str:
        text: str = page.locator(f'#config tr[data-key="{key}"] td').inner_text()
        return text

    # The resolved configuration, from the stored submission (defaults filled in).
    assert (config("m"), config("d"), config("seed")) == ("2", "32", "0")
    assert (config("n_splits"), config("test_fraction")) == ("10", "0.1")
    assert (config("predictors"), config("rank_by")) == ("all", "grace (default)")
    assert config("prompts") == "6 inline"
    candidates = page.locator("#candidates tbody tr").evaluate_all(
        "rs => rs.map(r => [...r.cells].slice(0, 2).map(c => c.innerText))"
    )
    assert candidates == [["tutor", "supplied"], ["noise", "supplied"]]
    # Timestamps in the viewer's local time, and how long it ran.
    for stamp in ("created", "started", "finished"):
        assert page.locator(f'#timestamps tr[data-key="{stamp}"] td').first.inner_text() == local(
            job[f"{stamp}_at"]
        )
    ran = page.locator('#timestamps tr[data-key="finished"] .duration').inner_text()
    took = (
        datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["started_at"])
    ).total_seconds()
    assert re.fullmatch(r"\d+(\.\d)? s", ran), ran
    assert float(ran[:-2]) == pytest.approx(took, abs=1), (ran, took)
    # A bar per unit on one time axis: they ran one after the other on the one worker.
    bars = page.locator("#timeline rect.unit").evaluate_all(
        "rs => rs.map(r => [r.dataset.status, Number(r.getAttribute('x')), Number(r.getAttribute('width'))])"
    )
    assert [b[0] for b in bars] == ["succeeded"] * len(job["units"]) == ["succeeded"] * 2
    starts = sorted(range(2), key=lambda i: job["units"][i]["started_at"])
    first, second = bars[starts[0]], bars[starts[1]]
    assert first[1] + first[2] <= second[1] + 0.5  # the second starts where (or after) the first ended
    counters = page.locator("#job-counters")
    assert counters.get_attribute("data-units-done") == counters.get_attribute("data-units-total") == "2"
    assert counters.get_attribute("data-responses") == str(job["examples_scored"]) == "24"
    assert "Cancel" not in page.locator("#job-actions").inner_text()  # finished: nothing to cancel
    shot(page, "dashboard-job-view.png")
    # Downloads, fetched with the key and saved: the ranking's JSON and the mixed dataset in both forms.
    with page.expect_download() as result:
        page.click('[data-download="result"]')
    ranking = json.loads(Path(result.value.path()).read_text())
    assert result.value.suggested_filename == f"grace-ranking-{job['id']}.json"
    assert ranking["job_id"] == job["id"]
    assert [r["name"] for r in ranking["ranking"]] == [r["name"] for r in job["ranking"]]
    for form, keys in (("chat", {"messages"}), ("prompt_completion", {"prompt", "completion"})):
        with page.expect_download() as got:
            page.click(f'[data-download="{form}"]')
        lines = [json.loads(line) for line in Path(got.value.path()).read_text().splitlines()]
        assert len(lines) == 6, lines  # one example per prompt
        assert all(keys <= set(line) and line["teacher"] in RESPONSES for line in lines), lines[0]
    # The job's leaderboard, from a succeeded score job.
    page.click("#job-leaderboard")
    page.locator("#leaderboard").wait_for()
    assert f"dataset={job['prompt_set']}" in page.evaluate("location.hash")
    # A job without a gradient predictor has no mixed dataset: the API's 409 turns its buttons off, with why.
    page.goto(f"{server}/dashboard#/jobs/{scored.c['id']}")
    page.locator("#job-downloads").wait_for()
    assert page.locator('#config tr[data-key="predictors"] td').inner_text() == "student_nll"
    page.click('[data-download="chat"]')
    expect(page.locator('[data-download="chat"]')).to_be_disabled()
    expect(page.locator('[data-download="prompt_completion"]')).to_be_disabled()
    expect(page.locator("#download-note")).to_contain_text("no mixed dataset")
    expect(page.locator('[data-download="result"]')).to_be_enabled()


def test_a_running_jobs_progress_and_counters_advance_on_screen(
    server: str, page: Page, tiny: TinyModels
) -> None:
    with Client(server) as grace:
        job_id = grace.create_job(slow_job(tiny))["id"]
        page.goto(f"{server}/dashboard#/jobs/{job_id}")
        seen: list[str] = []
        snapshots: list[dict[str, Any]] = []
        deadline = time.monotonic() + DEADLINE_MS / 1000 * 5
        while time.monotonic() < deadline:
            # One look at the page, taken at once: the header's counters, the progress, the bars.
            now = page.evaluate(
                """() => {
                     const c = document.getElementById('job-counters');
                     if (!c) return null;
                     const all = (sel) => [...document.querySelectorAll(sel)];
                     return { ...c.dataset, status: document.getElementById('job-status').textContent,
                              counts: all('#job-progress .count').map(e => e.textContent).join('|'),
                              bars: all('#timeline rect.unit').map(r => r.dataset.status),
                              etaText: document.getElementById('job-eta')?.textContent ?? null };
                   }"""
            )
            if now:
                snapshots.append(now)
                if now["counts"] and (not seen or seen[-1] != now["counts"]):
                    seen.append(now["counts"])
                if now["status"] == "succeeded":
                    break
            time.sleep(0.2)
        final = grace.get_job(job_id)
    assert final["status"] == "succeeded", final
    assert page.locator("#job-status").inner_text() == "succeeded"  # with no reload
    assert len(seen) >= 3, seen  # the counts changed on screen while it ran
    page.locator("#ranking-chart").wait_for()
    # The d it resolved "auto" to, once it has run (the configuration was drawn while it ran).
    d = page.locator('#config tr[data-key="d"] td').inner_text()
    assert d == f"{final['proj_dim']} (auto)", d
    graces = [r["grace"] for r in final["ranking"]]
    wide = min(graces) > 0 and max(graces) / min(graces) > 10  # noise far behind: a log axis
    assert page.locator("#ranking-chart").get_attribute("data-scale") == ("log" if wide else "linear")
    whiskers_centred(page, final["ranking"])
    running = [s for s in snapshots if s["status"] == "running"]
    total = len(final["units"])
    assert total == 5
    assert all(int(s["unitsTotal"]) == total for s in snapshots)
    # Units part done: the responses scored so far are counted (it used to say 0 until the end).
    partway = [s for s in running if 0 < int(s["unitsDone"]) < total]
    assert partway, running
    assert all(int(s["responses"]) > 0 for s in partway), partway
    assert all(int(s["unitsQueued"]) + int(s["unitsRunning"]) + int(s["unitsDone"]) == total for s in running)
    assert any(s["bars"].count("running") == 1 for s in running)  # the running unit's bar grows
    # An ETA once some work is done; none before.
    assert any(re.fullmatch(r"\d.* s", s["etaText"] or "") for s in running), running
    assert all(s["etaText"] == "–" for s in running if not s["counts"])
    last = snapshots[-1]
    assert int(last["unitsDone"]) == total
    assert int(last["responses"]) == final["examples_scored"] > 0


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
    # The configuration lists each model candidate with its temperature.
    page.locator("#candidates").wait_for()
    assert page.locator('#candidates tr[data-candidate="tutor@0.3"] td').all_inner_texts()[1:3] == [
        "tutor",
        "0.3",
    ]
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


def test_two_jobs_compare_side_by_side(server: str, page: Page, scored: Scored) -> None:
    a, b = scored.a, scored.b
    page.goto(f"{server}/dashboard#/jobs/{a['id']}")
    page.fill("#compare-form input[name=b]", b["id"])
    page.click("#compare-form button")
    page.locator("#compare-table").wait_for()
    assert wait_hash(page, "#/compare?") == f"#/compare?a={a['id']}&b={b['id']}"
    ra, rb = ({r["name"]: r for r in j["ranking"]} for j in (a, b))
    for name in RESPONSES:
        row = page.locator(f'#compare-table tr[data-candidate="{name}"]')
        cell = {k: row.locator(f"td.{k}").inner_text() for k in ("rank-a", "rank-b", "delta-rank")}
        assert (cell["rank-a"], cell["rank-b"]) == (str(ra[name]["rank"]), str(rb[name]["rank"]))
        assert int(cell["delta-rank"].lstrip("+")) == rb[name]["rank"] - ra[name]["rank"]
        assert float(row.locator("td.grace-a").inner_text()) == pytest.approx(ra[name]["grace"], rel=5e-3)
        assert float(row.locator("td.grace-b").inner_text()) == pytest.approx(rb[name]["grace"], rel=5e-3)
        delta = float(row.locator("td.delta-grace").inner_text())
        assert delta == pytest.approx(rb[name]["grace"] - ra[name]["grace"], rel=5e-3)
    # Their configurations differ in d and the seed, nothing else of `scoring`.
    differ = page.locator("#compare-config tbody tr").evaluate_all(
        "rs => rs.map(r => [r.dataset.key, r.cells[1].innerText, r.cells[2].innerText])"
    )
    assert sorted(differ) == [["proj_dim", "32", "16"], ["seed", "0", "1"]]
    shot(page, "dashboard-compare.png")


def test_the_leaderboard_picker_lists_a_students_boards(server: str, page: Page, scored: Scored) -> None:
    with Client(server) as grace:
        boards = grace.request("GET", "/v1/leaderboards/boards", params={"student": "student"}).json()["data"]
        (mine,) = [x for x in boards if x["latest_job_id"] == scored.b["id"]]  # d = 16, seed 1: B's alone
        board = grace.get_leaderboard("student", mine["prompt_set"], comparison=mine["comparison"])
    assert len(board["comparisons"]) >= 2  # A's configuration too
    page.goto(f"{server}/dashboard#/leaderboard")
    page.fill("input[name=student]", "student")
    page.keyboard.press("Tab")  # the student entered: its boards are listed, no dataset needed
    page.locator("#boards a.board").first.wait_for()
    listed = page.locator("#boards a.board").evaluate_all(
        "as => as.map(a => [a.dataset.promptSet, a.dataset.comparison])"
    )
    assert listed == [[x["prompt_set"], x["comparison"]] for x in boards]
    choice = page.locator(f'#boards a.board[data-comparison="{mine["comparison"]}"]')
    assert "m 2 · d 16 · seed 1 · 1 job" in choice.inner_text()
    assert mine["prompt_set"][:8] in choice.inner_text()
    choice.click()
    page.locator("#leaderboard").wait_for()
    hash_ = page.evaluate("location.hash")
    assert f"dataset={mine['prompt_set']}" in hash_
    assert f"comparison={mine['comparison']}" in hash_
    # Which configuration the board shows, and that the prompt set has others.
    shown = page.locator("#board-config")
    assert shown.get_attribute("data-comparison") == mine["comparison"]
    assert "m 2 · d 16 · seed 1" in shown.inner_text()
    others = page.locator("#board-others a").evaluate_all("as => as.map(a => a.dataset.comparison)")
    assert sorted(others) == sorted(c for c in board["comparisons"] if c != mine["comparison"])
    jobs = page.locator("#leaderboard tbody a").evaluate_all("as => as.map(a => a.getAttribute('href'))")
    assert jobs == [f"#/jobs/{scored.b['id']}"] * 2  # B's scores, not A's
    assert page.locator(f'#boards a.board.current[data-comparison="{mine["comparison"]}"]').count() == 1
