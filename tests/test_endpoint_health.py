"""Postback endpoints with health: failures in a row pause one, a 410 at once; its
postbacks wait as ``paused`` until an operator resumes it; a 429/503 Retry-After holds
every postback to it; dead letters of a time range can be recovered.

Served through the app with a real local receiver, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from structlog.testing import capture_logs

from actors.clock import utc_text
from app.config.schema import Config, ConfigError, parse_config, with_server_overrides
from storage.sqlite.schema import migrate
from tests.conftest import (
    ADMIN_TOKEN,
    BACKENDS,
    CID,
    PID,
    FakeClock,
    Harness,
    postgres_store,
    running,
    running_on,
)
from tests.receiver import Answer, Receiver
from tests.schemas import sqlite_at
from tests.test_postbacks import AUTH, convert, postback_config, postbacks
from tests.test_reload import reload, serving_on

BUYER = "/buyer"
SERVER_ERROR = Answer(500)
NAMED = """
[[campaigns.postbacks]]
name = "acme"
url = "{url}/buyer?tid={{transaction_id}}"
"""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running_receiver:
        yield running_receiver


def config(receiver: Receiver, db_path: Path, **delivery: Any) -> Config:
    """One attempt each (every failure is one postback's dead letter, counted once); an
    endpoint pauses after 10 failures in a row spanning an hour."""
    base = postback_config(receiver, db_path, postbacks=NAMED.format(url=receiver.url))
    settings = {"max_attempts": 1, "pause_after": 10, "pause_min_hours": 1.0} | delivery
    return msgspec.structs.replace(
        base, delivery=msgspec.structs.replace(base.delivery, **settings))


@pytest.fixture(params=BACKENDS)
async def api(request: pytest.FixtureRequest, receiver: Receiver,
              db_path: Path) -> AsyncIterator[Harness]:
    async with running_on(request, config(receiver, db_path)) as harness:
        yield harness


async def endpoint(api: Harness, name: str = "acme") -> dict[str, Any]:
    response = await api.client.get("/api/endpoints", headers=AUTH)
    assert response.status_code == 200, response.text
    [found] = [view for view in response.json()["data"] if view["name"] == name]
    return found  # type: ignore[no-any-return]


async def buyer_statuses(api: Harness) -> list[str]:
    return [p["status"] for p in reversed(await postbacks(api)) if p["kind"] == "buyer"]


async def failing(api: Harness, receiver: Receiver, times: int,
                  answer: Answer = SERVER_ERROR) -> None:
    """``times`` conversions whose buyer postback fails once each."""
    receiver.script(BUYER, *[answer] * times)
    for _ in range(times):
        await convert(api)
        await api.services.dispatcher.drain()


async def resume(api: Harness, name: str = "acme") -> dict[str, Any]:
    response = await api.client.post(f"/api/endpoints/{name}/resume", headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


# Pausing


async def test_failures_in_a_row_pause_the_endpoint_only_once_they_span_the_minimum(
    api: Harness, receiver: Receiver
) -> None:
    await failing(api, receiver, 10)
    health = await endpoint(api)
    # Ten in a row, but all within the hour: not yet.
    assert (health["state"], health["consecutive_failures"]) == ("active", 10)
    api.clock.advance(3600)
    await failing(api, receiver, 1)
    health = await endpoint(api)
    assert (health["state"], health["paused_reason"]) == ("paused", "failures")
    assert health["last_error"] == "HTTP 500"
    # The next conversion's postback waits, unsent; the source's endpoint is not touched.
    sent = len(receiver.of(BUYER))
    await convert(api)
    await api.services.dispatcher.drain()
    assert len(receiver.of(BUYER)) == sent
    assert (await buyer_statuses(api))[-1] == "paused"
    assert (await endpoint(api, _source_name(receiver)))["state"] == "active"


def _source_name(receiver: Receiver) -> str:
    return receiver.url.split("://", 1)[1].lower() + "/source"


async def test_a_delivery_between_failures_starts_the_count_again(
    api: Harness, receiver: Receiver
) -> None:
    await failing(api, receiver, 9)
    await convert(api)  # answered 200: the scripted failures are used up
    await api.services.dispatcher.drain()
    api.clock.advance(7200)
    await failing(api, receiver, 9)
    health = await endpoint(api)
    assert (health["state"], health["consecutive_failures"]) == ("active", 9)


async def test_resume_delivers_every_paused_postback_once(
    api: Harness, receiver: Receiver
) -> None:
    await failing(api, receiver, 10)
    api.clock.advance(3600)
    await failing(api, receiver, 1)
    for _ in range(3):
        await convert(api)
    await api.services.dispatcher.drain()
    assert (await buyer_statuses(api))[-3:] == ["paused"] * 3
    sent = len(receiver.of(BUYER))

    assert (await resume(api)) == {"requeued": 3, "endpoint": "acme"}
    await api.services.dispatcher.drain()
    api.clock.advance(3600)
    await api.services.dispatcher.drain()
    assert len(receiver.of(BUYER)) == sent + 3
    assert (await buyer_statuses(api))[-3:] == ["delivered"] * 3
    health = await endpoint(api)
    assert (health["state"], health["consecutive_failures"]) == ("active", 0)
    # A second resume finds nothing left to send.
    assert (await resume(api))["requeued"] == 0


async def test_a_410_pauses_its_endpoint_at_once_and_its_postback_waits_with_it(
    api: Harness, receiver: Receiver
) -> None:
    with capture_logs() as logs:
        await failing(api, receiver, 1, Answer(410))
        await convert(api)  # stored paused, unsent: no second warning
        await api.services.dispatcher.drain()
    assert [(line["log_level"], line["endpoint"]) for line in logs
            if line["event"] == "postback_endpoint_paused"] == [
        ("warning", receiver.url.split("://", 1)[1] + "/buyer")]
    health = await endpoint(api)
    assert (health["state"], health["paused_reason"], health["last_status_code"]) == (
        "paused", "gone", 410)
    assert await buyer_statuses(api) == ["paused", "paused"]
    assert (await resume(api))["requeued"] == 2
    await api.services.dispatcher.drain()
    assert await buyer_statuses(api) == ["delivered", "delivered"]
    assert len(receiver.of(BUYER)) == 3


async def test_a_delivery_answered_while_its_endpoint_paused_counts_as_delivered(
    api: Harness, receiver: Receiver
) -> None:
    # The first request to arrive is answered 200 half a second later; meanwhile the
    # second gets a 410, which pauses the endpoint under the first one's feet.
    receiver.script(BUYER, Answer(200, delay=0.5), Answer(410))
    await convert(api)
    await convert(api)
    await api.services.dispatcher.drain()
    assert sorted(await buyer_statuses(api)) == ["delivered", "paused"]
    assert (await resume(api))["requeued"] == 1  # the 410's, not the one delivered
    await api.services.dispatcher.drain()
    assert await buyer_statuses(api) == ["delivered", "delivered"]
    assert len(receiver.of(BUYER)) == 3


async def test_pause_after_0_never_pauses_and_a_410_is_a_dead_letter(
    receiver: Receiver, db_path: Path, backend: pytest.FixtureRequest
) -> None:
    off = config(receiver, db_path, pause_after=0)
    async with running_on(backend, off) as api:
        await failing(api, receiver, 12)
        await failing(api, receiver, 1, Answer(410))
        health = await endpoint(api)
        assert (health["state"], health["consecutive_failures"]) == ("active", 13)
        assert set(await buyer_statuses(api)) == {"failed"}


async def test_the_metrics_show_which_endpoint_is_paused(
    api: Harness, receiver: Receiver
) -> None:
    await failing(api, receiver, 1, Answer(410))
    text = (await api.client.get("/metrics", headers=AUTH)).text
    assert 'event_postback_endpoint_paused{endpoint="acme"} 1.0' in text
    assert 'event_postback_postbacks{status="paused"} 1.0' in text


# Receivers' signals


async def test_a_retry_after_holds_every_postback_to_the_endpoint(
    receiver: Receiver, db_path: Path, backend: pytest.FixtureRequest
) -> None:
    async with running_on(backend, config(receiver, db_path, max_attempts=8)) as api:
        receiver.script(BUYER, Answer(500), Answer(429, headers={"Retry-After": "3"}))
        await convert(api)  # fails with a 500: its retry is due within 1.2 s
        await api.services.dispatcher.drain()
        await convert(api)  # answered 429 Retry-After: 3
        await api.services.dispatcher.drain()
        await convert(api)  # stored while the endpoint waits
        await api.services.dispatcher.drain()
        assert len(receiver.of(BUYER)) == 2
        asked = api.clock.now() + timedelta(seconds=3)
        due = [datetime.fromisoformat(p["next_attempt_at"]) for p in await postbacks(api)
               if p["kind"] == "buyer"]
        assert len(due) == 3 and all(moment >= asked for moment in due), due
        api.clock.advance(2.9)
        await api.services.dispatcher.drain()
        assert len(receiver.of(BUYER)) == 2
        api.clock.advance(0.2)
        await api.services.dispatcher.drain()
        assert await buyer_statuses(api) == ["delivered"] * 3


# Recover


async def test_recover_requeues_exactly_the_dead_letters_created_in_the_range(
    api: Harness, receiver: Receiver
) -> None:
    start = api.clock.now()
    for _ in range(3):
        await failing(api, receiver, 1, Answer(400))
        api.clock.advance(600)
    assert await buyer_statuses(api) == ["failed"] * 3
    params = {"from": utc_text(start + timedelta(seconds=300)),
              "to": utc_text(start + timedelta(seconds=900))}
    other = await api.client.post("/api/postbacks/recover", headers=AUTH,
                                  params=params | {"endpoint": _source_name(receiver)})
    assert other.json()["data"]["requeued"] == 0
    response = await api.client.post("/api/postbacks/recover", headers=AUTH,
                                      params=params | {"endpoint": "acme"})
    assert response.status_code == 200, response.text
    assert response.json()["data"]["requeued"] == 1
    await api.services.dispatcher.drain()
    assert await buyer_statuses(api) == ["failed", "delivered", "failed"]
    # Every endpoint when none is named; an offset is read as such.
    everything = await api.client.post("/api/postbacks/recover", headers=AUTH, params={
        "from": (start - timedelta(hours=1)).astimezone().isoformat(),
        "to": utc_text(api.clock.now())})
    assert everything.json()["data"]["requeued"] == 2


@pytest.mark.parametrize(("params", "message"), [
    ({"to": "2026-12-02T15:00:00Z"}, "from is required"),
    ({"from": "2026-12-02T15:00:00", "to": "2026-12-02T16:00:00Z"}, "Invalid from"),
    ({"from": "yesterday", "to": "2026-12-02T16:00:00Z"}, "Invalid from"),
    ({"from": "0001-01-01T00:00:00+01:00", "to": "2026-12-02T16:00:00Z"}, "Invalid from"),
    ({"from": "2026-12-02T15:00:00Z", "to": "9999-12-31T23:59:59-01:00"}, "Invalid to"),
    ({"from": "2026-12-02T16:00:00Z", "to": "2026-12-02T15:00:00Z"}, "Invalid to"),
    ({"from": "2026-12-02T15:00:00Z", "to": "2026-12-02T16:00:00Z", "endpoint": "nope"},
     "Endpoint not found"),
])
async def test_recover_refuses_a_range_it_cannot_read(
    api: Harness, params: dict[str, str], message: str
) -> None:
    response = await api.client.post("/api/postbacks/recover", headers=AUTH, params=params)
    assert response.status_code in (400, 404)
    assert response.json()["message"] == message


async def test_operator_routes_need_the_admin_token(api: Harness) -> None:
    assert (await api.client.get("/api/endpoints")).status_code == 401
    assert (await api.client.post("/api/endpoints/acme/resume")).status_code == 401
    unknown = await api.client.post("/api/endpoints/nope/resume", headers=AUTH)
    assert (unknown.status_code, unknown.json()["message"]) == (404, "Endpoint not found")


async def test_the_endpoint_list_counts_postbacks_and_the_days_success_rate(
    api: Harness, receiver: Receiver
) -> None:
    await failing(api, receiver, 1)
    await convert(api)
    await convert(api)
    await api.services.dispatcher.drain()
    health = await endpoint(api)
    assert health["postbacks"] == {"failed": 1, "delivered": 2}
    assert (health["attempts_24h"], health["delivered_24h"]) == (3, 2)
    assert health["success_rate_24h"] == "0.6667"
    assert health["last_success_at"] is not None and health["last_failure_at"] is not None
    # A name is the host and path when the entry has none.
    assert (await endpoint(api, _source_name(receiver)))["endpoint"] == _source_name(receiver)
    api.clock.advance(25 * 3600)
    health = await endpoint(api)
    assert (health["attempts_24h"], health["success_rate_24h"]) == (0, None)


# Every node


async def test_a_pause_decided_on_one_node_holds_on_the_other(
    receiver: Receiver, db_path: Path, pg_url: str
) -> None:
    shared = with_server_overrides(config(receiver, db_path), "test", db=pg_url)
    clock = FakeClock()
    async with running(shared, clock, postgres_store(pg_url, clock)) as one, \
            running(shared, clock, postgres_store(pg_url, clock)) as two:
        await failing(one, receiver, 1, Answer(410))
        assert (await endpoint(two))["state"] == "paused"
        await convert(two)
        await two.services.dispatcher.drain()
        await one.services.dispatcher.drain()
        assert len(receiver.of(BUYER)) == 1
        assert await buyer_statuses(two) == ["paused", "paused"]
        assert (await resume(two))["requeued"] == 2
        await two.services.dispatcher.drain()
        await one.services.dispatcher.drain()
        assert await buyer_statuses(one) == ["delivered", "delivered"]
        assert len(receiver.of(BUYER)) == 3


# Config and schema


@pytest.mark.parametrize(("postbacks_toml", "diagnosis"), [
    ('[[campaigns.postbacks]]\nname = "a"\nurl = "https://x.example/pb"\n'
     '[[campaigns.postbacks]]\nname = "b"\nurl = "https://x.example/pb?e=2"\n',
     "campaigns[0].postbacks[1].name: 'x.example/pb' is already named 'a'"),
    ('[[campaigns.postbacks]]\nname = "a"\nurl = "https://x.example/one"\n'
     '[[campaigns.postbacks]]\nname = "a"\nurl = "https://x.example/two"\n',
     "campaigns[0].postbacks[1].name: 'a' names two endpoints"),
])
def test_a_name_stands_for_one_endpoint(postbacks_toml: str, diagnosis: str) -> None:
    text = f"""
[[campaigns]]
cid = "c"
[[campaigns.events]]
event_id = "sale"
conversion = true
{postbacks_toml}
"""
    with pytest.raises(ConfigError) as raised:
        parse_config(text, origin="t")
    assert diagnosis in str(raised.value)


def test_the_upgrade_keeps_every_postback_and_names_its_endpoint(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    sqlite_at(conn, 10)
    conn.execute(
        "INSERT INTO postbacks (transaction_id, cid, pid, event_id, kind, method, url, host,"
        " status, attempts, max_attempts, next_attempt_at, created_at, updated_at) VALUES"
        " ('t', 'c', 'p', 'e', 'buyer', 'GET', 'https://Buyer.example/pb?x=1',"
        " 'buyer.example', 'failed', 1, 1, 'z', 'z', 'z')")
    conn.execute("INSERT INTO postback_attempts (postback_id, attempt, started_at, url,"
                 " latency_ms) VALUES (1, 1, 'z', 'u', 1.0)")
    migrate(conn)
    assert conn.execute("SELECT endpoint, status FROM postbacks").fetchall() == [
        ("buyer.example/pb", "failed")]
    assert conn.execute("SELECT count(*) FROM postback_attempts").fetchone() == (1,)
    conn.execute("UPDATE postbacks SET status = 'paused'")  # the new status is allowed
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []


# After a reload


async def test_a_reload_changes_when_an_endpoint_pauses_and_what_it_is_called(
    tmp_path: Path, db: str, receiver: Receiver
) -> None:
    def text(pause_after: int, name: str) -> str:
        return (f'[server]\nadmin_token = "{ADMIN_TOKEN}"\n'
                f"[delivery]\nmax_attempts = 1\npause_after = {pause_after}\n"
                f'pause_min_hours = 0\n[[sources]]\npid = "{PID}"\n'
                f'[[campaigns]]\ncid = "{CID}"\n'
                '[[campaigns.events]]\nevent_id = "sale"\nconversion = true\n'
                f'[[campaigns.postbacks]]\nname = "{name}"\nurl = "{receiver.url}/buyer"\n')

    receiver.script(BUYER, *[SERVER_ERROR] * 3)
    async with serving_on(tmp_path, text(5, "acme"), db) as (client, path):
        async def failures(name: str) -> tuple[str, int]:
            found = (await client.get("/api/endpoints", headers=AUTH)).json()["data"]
            [view] = [view for view in found if view["name"] == name]
            return view["state"], view["consecutive_failures"]

        async def one_sale(name: str, expected: tuple[str, int]) -> None:
            click = await client.post("/api/click", json={"cid": CID, "pid": PID})
            await client.post("/api/event/trigger", json={
                "cid": CID, "event_id": "sale", "pid": PID, "revenue": "5",
                "transaction_id": click.json()["data"]["transaction_id"]})
            for _ in range(200):
                if await failures(name) == expected:
                    return
                await asyncio.sleep(0.02)
            raise AssertionError(await failures(name))

        await one_sale("acme", ("active", 1))
        await one_sale("acme", ("active", 2))
        path.write_text(text(3, "buyer"))
        assert (await reload(client)).status_code == 200
        # The count is the endpoint's, whatever it is called; the new limit applies.
        await one_sale("buyer", ("paused", 3))
        await one_sale("buyer", ("paused", 3))  # stored paused, not sent
        assert len(receiver.of(BUYER)) == 3
        resumed = await client.post("/api/endpoints/buyer/resume", headers=AUTH)
        assert resumed.json()["data"]["requeued"] == 1
        await one_sale("buyer", ("active", 0))
        for _ in range(200):  # the resumed postback and the new sale's, each once
            if len(receiver.of(BUYER)) >= 5:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
        assert len(receiver.of(BUYER)) == 5
