"""``event-postback serve --db postgresql://...``: the real process on PostgreSQL."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.config.schema import parse_config, with_server_overrides
from tests.conftest import CID, TEST_CONFIG, FakeClock, postgres_store, running
from tests.served import EXECUTABLE, Served
from tests.test_reports import CONFIG as REPORTED
from tests.test_reports import get, play


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


def test_the_report_command_reads_a_postgresql_database_even_while_it_is_served(
        tmp_path: Path, pg_url: str, servers: list[Served]) -> None:
    async def played() -> str:
        clock = FakeClock()
        config = with_server_overrides(parse_config(REPORTED, origin="test"), "test",
                                       db=pg_url)
        async with running(config, clock, postgres_store(pg_url, clock)) as harness:
            await play(harness)
            response = await get(harness, group_by="cid,day", tz="America/New_York",
                                 format="csv")
            return response.text.replace("\r\n", "\n")

    expected = asyncio.run(played())
    servers.append(Served(tmp_path, "--db", pg_url))
    done = subprocess.run([str(EXECUTABLE), "report", "--db", pg_url, "--from", "2026-11-28",
                           "--to", "2026-11-30", "--group-by", "cid,day", "--tz",
                           "America/New_York", "--csv"],
                          capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.replace("\r\n", "\n") == expected
    assert expected.count("\n") == 8  # the header, 6 rows and the totals
