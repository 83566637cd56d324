"""``event-postback serve --db postgresql://...``: the real process on PostgreSQL."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import CID, TEST_CONFIG
from tests.served import EXECUTABLE, Served


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "pg.toml"
    path.write_text(TEST_CONFIG)
    return path


@pytest.fixture
def servers() -> Iterator[list[Served]]:
    started: list[Served] = []
    yield started
    for server in started:
        server.kill()


def test_two_processes_on_one_database_share_its_rules(
        tmp_path: Path, config: Path, pg_url: str, servers: list[Served]) -> None:
    servers += [Served(tmp_path, "--config", str(config), "--db", pg_url, name=name)
                for name in ("one", "two")]
    one, two = (httpx.Client(base_url=server.url) for server in servers)
    with one, two:
        click = one.post("/api/click", json={"cid": CID})
        assert click.status_code == 200, click.text
        body = {"cid": CID, "event_id": "quote_viewed",
                "transaction_id": click.json()["data"]["transaction_id"]}
        assert two.post("/api/event/trigger", json=body).status_code == 200
        # The window two opened, in the database, holds for one as well.
        locked = one.post("/api/event/trigger", json=body)
        assert (locked.status_code, locked.json()["message"]) == (
            403, "Concurrent event in progress")
    assert b"postgresql://" in servers[0].log_path.read_bytes()


def test_serve_refuses_write_behind_on_postgresql_saying_why(pg_url: str) -> None:
    done = subprocess.run([str(EXECUTABLE), "serve", "--db", pg_url,
                           "--durability", "write-behind"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "write-behind is refused with PostgreSQL" in done.stderr


def test_the_report_command_says_reports_are_not_on_postgresql_yet(pg_url: str) -> None:
    done = subprocess.run([str(EXECUTABLE), "report", "--db", pg_url, "--from", "2026-11-01",
                           "--to", "2026-11-30"], capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stderr) == (
        2, "Reports are not available on PostgreSQL yet\n")
