"""The real ``event-postback serve`` process: demo config, crashes, signals, logs."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import httpx
import pytest

from tests.served import EXECUTABLE, Served

CID, PID = "cmp_9z8y7x6w", "src_abc123"
DEMO_TOKEN = {"Authorization": "Bearer change-me"}


@pytest.fixture
def servers() -> Iterator[list[Served]]:
    started: list[Served] = []
    yield started
    for server in started:
        server.kill()


def rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


async def fire_conversions(url: str, count: int) -> list[str]:
    """Click `count` leads, then convert them all at once; returns their transaction ids."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        clicks = await asyncio.gather(*(
            client.post("/api/click", json={"cid": CID, "pid": PID}) for _ in range(count)))
        ids = [click.json()["data"]["transaction_id"] for click in clicks]
        answers = await asyncio.gather(*(
            client.post("/api/event/trigger", json={
                "cid": CID, "event_id": "sale_completed", "transaction_id": transaction_id,
                "pid": PID, "revenue": "45.00"})
            for transaction_id in ids))
        assert [answer.status_code for answer in answers] == [200] * count
    return ids


def test_demo_config_serves_the_seed_examples_after_a_click(
    tmp_path: Path, servers: list[Served]
) -> None:
    server = Served(tmp_path, "--db", str(tmp_path / "demo.db"))
    servers.append(server)
    with httpx.Client(base_url=server.url) as client:
        click = client.post("/api/click", json={"cid": CID, "pid": PID})
        transaction_id = click.json()["data"]["transaction_id"]
        # The seed's two curl examples, with the minted transaction id.
        quote = client.post("/api/event/trigger", headers={"Content-Type": "application/json"},
                            content=json.dumps({"cid": CID, "event_id": "quote_viewed",
                                                "transaction_id": transaction_id, "pid": PID}))
        sale = client.post("/api/event/trigger", headers={"Content-Type": "application/json"},
                           content='{"cid": "%s", "event_id": "sale_completed", '
                                   '"transaction_id": "%s", "pid": "%s", "revenue": 45.00}'
                                   % (CID, transaction_id, PID))
        assert quote.json() == {
            "status": 200, "type": "success", "message": "Event triggered successfully",
            "data": {"cid": CID, "pid": PID, "transaction_id": transaction_id,
                     "conversion_id": "", "conversion": False}}
        assert sale.status_code == 200
        assert sale.json()["data"]["conversion"] is True
        view = client.get(f"/api/transactions/{transaction_id}", headers=DEMO_TOKEN).json()
        assert [(e["event_id"], e["revenue"], e["payout"]) for e in view["data"]["events"]] == [
            ("quote_viewed", None, None), ("sale_completed", "45.00", "22.50")]


def test_kill_9_right_after_the_answers_loses_nothing_in_commit_mode(
    tmp_path: Path, servers: list[Served]
) -> None:
    db = tmp_path / "crash.db"
    server = Served(tmp_path, "--db", str(db), "--durability", "commit")
    servers.append(server)
    ids = asyncio.run(fire_conversions(server.url, 40))
    server.signal(signal.SIGKILL)
    assert server.wait() == -signal.SIGKILL

    restarted = Served(tmp_path, "--db", str(db), name="restarted")
    servers.append(restarted)
    with httpx.Client(base_url=restarted.url) as client:
        for transaction_id in ids:
            view = client.get(f"/api/transactions/{transaction_id}", headers=DEMO_TOKEN)
            [event] = view.json()["data"]["events"]
            assert (event["event_id"], event["revenue"]) == ("sale_completed", "45.00")
        again = client.post("/api/event/trigger", json={
            "cid": CID, "event_id": "sale_completed", "transaction_id": ids[0], "pid": PID,
            "revenue": 45})
        assert again.json()["message"] == "Duplicate event for this transaction_id"


def test_kill_9_in_write_behind_mode_can_lose_what_was_not_yet_flushed(
    tmp_path: Path, servers: list[Served]
) -> None:
    # The risk the manual states for write-behind; also shows the crash test can see a loss.
    db = tmp_path / "risky.db"
    config = tmp_path / "risky.toml"
    config.write_text('[server]\ndurability = "write-behind"\nflush_ms = 60000\n'
                      '[[campaigns]]\ncid = "cmp_9z8y7x6w"\n')
    server = Served(tmp_path, "--config", str(config), "--db", str(db))
    servers.append(server)
    with httpx.Client(base_url=server.url) as client:
        assert client.post("/api/click", json={"cid": CID}).status_code == 200
    server.signal(signal.SIGKILL)
    server.wait()
    assert rows(db, "SELECT count(*) FROM leads") == [(0,)]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_flushes_write_behind_writes_and_exits_0(
    tmp_path: Path, servers: list[Served], signum: int
) -> None:
    db = tmp_path / "graceful.db"
    # A long flush interval: nothing reaches the file before the signal.
    config = tmp_path / "slow.toml"
    demo = resources.files("app").joinpath("demo.toml").read_text()
    config.write_text(demo.replace("[server]", "[server]\nflush_ms = 60000"))
    server = Served(tmp_path, "--config", str(config), "--db", str(db),
                    "--durability", "write-behind")
    servers.append(server)
    # Nothing reaches the file within the flush interval (the kill -9 test above shows it),
    # so what the file holds afterwards was written by the graceful stop.
    ids = asyncio.run(fire_conversions(server.url, 20))

    server.signal(signum)
    assert server.wait() == 0
    assert rows(db, "SELECT count(*) FROM events") == [(20,)]
    assert rows(db, "SELECT count(*) FROM leads") == [(20,)]
    stored = {row[0] for row in rows(db, "SELECT transaction_id FROM events")}
    assert stored == set(ids)


def test_log_lines_are_json_with_the_request_fields(
    tmp_path: Path, servers: list[Served]
) -> None:
    server = Served(tmp_path, "--db", str(tmp_path / "log.db"))
    servers.append(server)
    with httpx.Client(base_url=server.url) as client:
        transaction_id = client.post("/api/click", json={"cid": CID}).json()["data"][
            "transaction_id"]
        client.post("/api/event/trigger", json={"cid": CID, "event_id": "quote_viewed",
                                                "transaction_id": transaction_id})
    server.signal(signal.SIGTERM)
    assert server.wait() == 0
    lines = [json.loads(line) for line in server.log_path.read_text().splitlines()]
    [event_line] = [line for line in lines if line.get("route") == "/api/event/trigger"]
    assert {key: event_line[key] for key in ("event", "status", "outcome", "cid", "event_id",
                                             "transaction_id")} == {
        "event": "request", "status": 200, "outcome": "fired", "cid": CID,
        "event_id": "quote_viewed", "transaction_id": transaction_id}
    assert {"request_id", "latency_ms", "timestamp", "level"} <= set(event_line)


def test_serve_with_a_broken_config_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[[campaigns]]\ncid = "a"\n[[campaigns]]\ncid = "a"\n')
    for command in (["serve", "--config", str(config)], ["check-config", str(config)]):
        result = subprocess.run([str(EXECUTABLE), *command], capture_output=True, text=True,
                                timeout=30)
        assert result.returncode == 2
        assert result.stderr == (
            f"{config}: campaigns[1].cid: duplicate cid 'a' (also campaigns[0])\n")
