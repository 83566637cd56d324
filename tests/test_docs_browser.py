"""GET /docs in headless Chromium: the vendored viewer renders the spec, all from the service.

The screenshot is kept in tests/artifacts/docs.png. Skipped, saying so, without Chromium.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TEST_CONFIG
from tests.served import Served
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS

playwright_api = pytest.importorskip(
    "playwright.sync_api",
    reason="the playwright package is not installed: `make test` installs the dev extras")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium found: `make chromium` installs Debian's (.ci/run does), or set "
           "EVENT_POSTBACK_CHROMIUM to a Chromium binary")

ARTIFACTS = Path(__file__).parent / "artifacts"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    config = tmp_path / "config.toml"
    config.write_text(TEST_CONFIG.replace(
        "[server]\n", f'[server]\ndb = "{tmp_path / "docs.db"}"\n', 1))
    server = Served(tmp_path, "--config", str(config))
    yield server
    server.kill()


def test_docs_page_renders_every_route_with_nothing_fetched_elsewhere(served: Served) -> None:
    requested: list[str] = []
    refused: list[str] = []

    def only_the_service(route: Any) -> None:
        url = route.request.url
        requested.append(url)
        if url.startswith(f"{served.url}/") or url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            refused.append(url)
            route.abort()

    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.route("**/*", only_the_service)
            page.goto(f"{served.url}/docs")
            page.get_by_role("heading", name="Event Postback API").first.wait_for(
                timeout=20_000)
            # Each operation is a section headed by its summary.
            for summary in ("Fire an event against a lead", "Prometheus metrics (text format)",
                            "Read the config file again and swap it in"):
                page.get_by_role("heading", name=summary).first.wait_for()
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "docs.png"))
        finally:
            browser.close()
    assert refused == []
    assert f"{served.url}/openapi.json" in requested
    assert f"{served.url}/docs/redoc.standalone.js" in requested
    assert (ARTIFACTS / "docs.png").stat().st_size > 10_000
