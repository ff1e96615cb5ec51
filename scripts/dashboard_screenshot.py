"""A screenshot of a job's page on a running service's dashboard for the README
(docs/dashboard-job.png), taken in headless Debian chromium through Playwright, as the browser
tests do.

    .venv/bin/python scripts/dashboard_screenshot.py http://127.0.0.1:PORT JOB_ID [--api-key KEY]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from playwright.sync_api import sync_playwright

DOCS = Path(__file__).resolve().parents[1] / "docs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("job")
    parser.add_argument("--api-key")
    args = parser.parse_args()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1100, "height": 800})
        if args.api_key:  # in this tab's sessionStorage before the first page asks for it
            page.add_init_script(f"sessionStorage.setItem('grace.apiKey', {json.dumps(args.api_key)})")
        page.goto(f"{args.url}/dashboard#/jobs/{args.job}")
        page.locator("#ranking-chart").wait_for(timeout=60_000)
        page.screenshot(path=str(DOCS / "dashboard-job.png"), full_page=True)
        browser.close()


if __name__ == "__main__":
    main()
