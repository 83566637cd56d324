"""``event-postback endpoints [list|resume|test]`` and ``postbacks recover``: what the
endpoints API shows and does, from the command line, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.config.schema import parse_config, with_server_overrides
from tests.conftest import ADMIN_TOKEN, CID, PID, FakeClock, postgres_store, running
from tests.receiver import Answer, Receiver
from tests.served import EXECUTABLE, Served
from tests.test_postbacks import convert, postbacks

CONFIG = """
[server]
admin_token = "{token}"

[delivery]
max_attempts = 1

[[sources]]
pid = "{pid}"

[[campaigns]]
cid = "{cid}"

[[campaigns.events]]
event_id = "sale_completed"
conversion = true

[[campaigns.postbacks]]
name = "gone"
url = "{url}/gone?tid={{transaction_id}}"

[[campaigns.postbacks]]
name = "refusing"
url = "{url}/refusing?tid={{transaction_id}}"
"""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running_receiver:
        yield running_receiver


def config_file(tmp_path: Path, receiver: Receiver) -> Path:
    path = tmp_path / "endpoints.toml"
    path.write_text(CONFIG.format(token=ADMIN_TOKEN, pid=PID, cid=CID, url=receiver.url))
    return path


def _deliver_once(path: Path, db: str, receiver: Receiver) -> None:
    """One conversion: ``gone`` answers 410 (paused), ``refusing`` 400 (a dead letter)."""
    receiver.script("/gone", Answer(410))
    receiver.script("/refusing", Answer(400))

    async def play() -> None:
        config = with_server_overrides(parse_config(path.read_text(), origin="test"), "test",
                                       db=db)
        clock = FakeClock()
        store = postgres_store(db, clock) if db.startswith("postgresql") else None
        async with running(config, clock, store) as api:
            await convert(api)
            await api.services.dispatcher.drain()
            assert sorted(row["status"] for row in await postbacks(api)) == [
                "failed", "paused"]
    asyncio.run(play())


def run(*argv: str) -> tuple[int, str, str]:
    done = subprocess.run([str(EXECUTABLE), *argv], capture_output=True, text=True,
                          timeout=60)
    return done.returncode, done.stdout, done.stderr


def test_list_resume_and_recover_change_the_database(
    db: str, tmp_path: Path, receiver: Receiver
) -> None:
    path = config_file(tmp_path, receiver)
    _deliver_once(path, db, receiver)
    flags = ("--config", str(path), "--db", db)
    code, out, err = run("endpoints", "list", *flags)
    assert (code, err) == (0, "")
    header, *rows = [line.split() for line in out.splitlines()]
    assert header == ["name", "state", "failures", "last_status", "pending", "paused",
                      "delivered", "failed", "success_24h"]
    assert sorted(rows) == [["gone", "paused", "1", "410", "0", "1", "0", "0"],
                            ["refusing", "active", "1", "400", "0", "0", "0", "1"]]

    assert run("endpoints", "resume", "gone", *flags) == (
        0, "gone: resumed, 1 postback due now\n", "")
    assert run("endpoints", "resume", "nope", *flags) == (
        2, "", "nope: endpoint not found\n")

    recover = ("postbacks", "recover", "--from", "2026-11-28T00:00:00Z", "--to",
               "2026-11-29T00:00:00+00:00")
    assert run(*recover, "--endpoint", "gone", *flags) == (
        0, "0 postbacks due now\n", "")
    assert run(*recover, "--endpoint", "refusing", *flags) == (
        0, "1 postback due now\n", "")
    code, out, _ = run("endpoints", "list", *flags)
    assert sorted(line.split()[:6] for line in out.splitlines()[1:]) == [
        ["gone", "active", "0", "410", "1", "0"], ["refusing", "active", "1", "400", "1", "0"]]


def test_recover_refuses_times_without_an_offset_or_out_of_order() -> None:
    assert run("postbacks", "recover", "--from", "2026-11-28", "--to",
               "2026-11-29T00:00:00Z") == (
        2, "", "--from: expected an ISO 8601 time with its offset, such as "
               "2026-12-02T15:00:00Z\n")
    assert run("postbacks", "recover", "--from", "2026-11-29T00:00:00Z", "--to",
               "2026-11-28T00:00:00Z") == (2, "", "--to: must be later than --from\n")


def test_test_prints_the_exchange_and_exits_by_the_answer(
    tmp_path: Path, receiver: Receiver
) -> None:
    path = config_file(tmp_path, receiver)
    receiver.script("/gone", Answer(202, body="taken", headers={"X-Seen": "yes"}))
    code, out, err = run("endpoints", "test", "gone", "--config", str(path))
    assert (code, err) == (0, "")
    [received] = receiver.of("/gone")
    request, answer, body = out.split("\n\n")
    assert request.splitlines()[0] == f"GET {received.url}"
    assert received.query["tid"][0].startswith("test-")
    assert answer.splitlines()[0].startswith("202 in ")
    assert "x-seen: yes" in answer.splitlines()
    assert body == "taken\n"

    receiver.script("/gone", Answer(500))
    assert run("endpoints", "test", "gone", "--config", str(path))[0] == 1
    assert run("endpoints", "test", "nope", "--config", str(path)) == (
        2, "", "nope: endpoint not found\n")
    # Nothing is stored, not even a database file.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["endpoints.toml"]


def test_an_unreachable_endpoint_is_a_failed_test_with_its_error(
    tmp_path: Path
) -> None:
    path = tmp_path / "nowhere.toml"
    path.write_text(CONFIG.format(token=ADMIN_TOKEN, pid=PID, cid=CID,
                                  url="http://127.0.0.1:9"))
    code, out, err = run("endpoints", "test", "gone", "--config", str(path))
    assert code == 1
    assert out.startswith("GET http://127.0.0.1:9/gone?tid=test-")
    assert err.startswith("gone: ConnectError: ")


def test_a_served_database_file_is_refused_with_the_route_to_use(
    tmp_path: Path, receiver: Receiver
) -> None:
    path = config_file(tmp_path, receiver)
    db = str(tmp_path / "served.db")
    server = Served(tmp_path, "--config", str(path), "--db", db)
    try:
        listed = run("endpoints", "list", "--config", str(path), "--db", db)
        resumed = run("endpoints", "resume", "gone", "--config", str(path),
                      "--db", db)
    finally:
        server.kill()
    assert listed[:2] == (3, "")
    assert listed[2].endswith(": use GET /api/endpoints while it is served\n")
    assert resumed[:2] == (3, "")
    assert resumed[2].endswith(": use POST /api/endpoints/gone/resume while it is served\n")
