"""Where a person starts: GET / leads to the dashboard, and the start-up line names the
pages to open."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from structlog.testing import capture_logs

from app.factory import base_url
from tests.conftest import Harness, make_config, running
from tests.served import Served


@pytest.mark.both_stores
async def test_the_root_redirects_to_the_dashboard(api: Harness) -> None:
    home = await api.client.get("/")
    assert (home.status_code, home.headers["location"]) == (302, "/dashboard")
    page = await api.client.get("/", follow_redirects=True)
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"


async def test_the_start_up_line_names_the_dashboard_docs_and_health(db_path: Path) -> None:
    config = make_config(db_path, host="127.0.0.1", port=8123)
    with capture_logs() as captured:
        async with running(config):
            pass
    serving = [line for line in captured if line["event"] == "serving"]
    assert serving == [{
        "event": "serving", "log_level": "info", "url": "http://127.0.0.1:8123",
        "dashboard": "http://127.0.0.1:8123/dashboard",
        "docs": "http://127.0.0.1:8123/docs", "health": "http://127.0.0.1:8123/healthz"}]


@pytest.mark.parametrize(("host", "url"), [
    ("127.0.0.1", "http://127.0.0.1:8000"), ("0.0.0.0", "http://127.0.0.1:8000"),
    ("::", "http://[::1]:8000"), ("::1", "http://[::1]:8000"),
    ("events.example.com", "http://events.example.com:8000")])
def test_the_named_address_is_one_this_machine_can_open(host: str, url: str) -> None:
    assert base_url(host, 8000) == url


def test_the_served_process_names_pages_that_answer(tmp_path: Path) -> None:
    # The line a person reads in the terminal, from the real command.
    server = Served(tmp_path, "--db", str(tmp_path / "home.db"))
    try:
        deadline = time.monotonic() + 10
        while not (lines := [json.loads(line) for line in server.log_path.read_text().splitlines()
                             if '"serving"' in line]) and time.monotonic() < deadline:
            time.sleep(0.05)  # log lines reach the file from a writer thread
        [line] = lines
        assert line["url"] == server.url
        for name in ("dashboard", "docs", "health"):
            assert httpx.get(line[name]).status_code == 200
    finally:
        server.kill()
