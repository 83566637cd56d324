"""The rules on PostgreSQL, where the database decides them for every process serving it.

Two apps on one database stand for two nodes (or two workers): each has its own actors,
so only the database can keep them from both opening a window or both firing an event.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import httpx
import pytest

from app.config.schema import ConfigError, parse_config, with_server_overrides
from app.factory import build_store
from storage.postgres.schema import MIGRATIONS
from storage.postgres.store import PostgresStore, without_password
from storage.postgres.windows import WindowClaimer
from tests.conftest import (
    ADMIN_TOKEN,
    CID,
    TEST_CONFIG,
    FakeClock,
    Harness,
    error,
    make_config_for,
    postgres_store,
    running,
)

LOCKED = (403, error(403, "Concurrent event in progress"))
DUPLICATE = (400, error(400, "Duplicate event for this transaction_id"))


@pytest.fixture
async def nodes(pg_url: str) -> AsyncIterator[tuple[Harness, Harness]]:
    """Two apps on one database, on one fake clock (windows follow it)."""
    clock = FakeClock()
    config = make_config_for(pg_url)
    async with running(config, clock, postgres_store(pg_url, clock)) as one, \
            running(config, clock, postgres_store(pg_url, clock)) as two:
        yield one, two


async def answer(response: httpx.Response) -> tuple[int, object]:
    return response.status_code, response.json()


def test_a_postgresql_url_chooses_the_postgresql_store_and_a_path_keeps_sqlite() -> None:
    assert isinstance(build_store(make_config_for("postgresql://u@db.example:5432/ep")),
                      PostgresStore)
    assert not isinstance(build_store(make_config_for("events.db")), PostgresStore)


def test_write_behind_is_refused_with_postgresql_saying_why() -> None:
    text = TEST_CONFIG.replace(
        "[server]\n",
        '[server]\ndb = "postgresql://u@db.example/ep"\ndurability = "write-behind"\n', 1)
    with pytest.raises(ConfigError, match=r"server\.durability: write-behind is refused with"
                                          r" PostgreSQL"):
        parse_config(text, origin="test config")
    config = make_config_for("postgresql://u@db.example/ep")
    with pytest.raises(ConfigError, match="the database must decide before the answer"):
        with_server_overrides(config, "command line", durability="write-behind")


def test_logs_never_show_the_password() -> None:
    assert (without_password("postgresql://ep:s3cret@db.example:5432/ep")
            == "postgresql://ep:***@db.example:5432/ep")


async def test_migrations_run_once_whoever_opens_the_database(pg_empty_url: str) -> None:
    for _ in range(2):
        store = PostgresStore(pg_empty_url)
        await store.open()
        await store.close()
    conn = await asyncpg.connect(pg_empty_url)
    try:
        versions = [row[0] for row in await conn.fetch(
            "SELECT version FROM schema_version ORDER BY version")]
    finally:
        await conn.close()
    assert versions == list(range(1, len(MIGRATIONS) + 1))


async def test_a_window_is_claimed_once_by_whichever_process_asks_first(pg_url: str) -> None:
    clock = FakeClock()
    one, two = postgres_store(pg_url, clock), postgres_store(pg_url, clock)
    await one.open()
    await two.open()
    try:
        assert one.windows is not None and two.windows is not None
        until = clock.now() + timedelta(seconds=60)
        assert await one.windows.claim("t1", "quote_viewed", 60) == until
        assert await two.windows.claim("t1", "quote_viewed", 60) is None
        assert await one.windows.claim("t1", "quote_viewed", 60) is None
        # Another event, another transaction: windows of their own.
        assert await two.windows.claim("t1", "sale_completed", 60) == until
        assert await two.windows.claim("t2", "quote_viewed", 60) == until
        clock.advance(59)
        assert await two.windows.claim("t1", "quote_viewed", 60) is None
        clock.advance(1)
        assert await two.windows.claim("t1", "quote_viewed", 60) == until + timedelta(
            seconds=60)
    finally:
        await one.close()
        await two.close()


async def test_the_window_opened_on_one_node_locks_the_other(
        nodes: tuple[Harness, Harness]) -> None:
    one, two = nodes
    transaction_id = await one.click()
    assert (await one.fire(transaction_id)).status_code == 200
    assert await answer(await two.fire(transaction_id)) == LOCKED
    one.clock.advance(60)
    assert await answer(await two.fire(transaction_id)) == DUPLICATE


async def test_a_node_that_remembers_the_event_unfired_is_stopped_by_the_unique_index(
        nodes: tuple[Harness, Harness]) -> None:
    one, two = nodes
    transaction_id = await one.click()
    # Node two loads the transaction (nothing fired yet) and keeps it in memory.
    assert (await two.fire(transaction_id, "form_step")).status_code == 200
    assert (await one.fire(transaction_id)).status_code == 200
    one.clock.advance(60)
    assert await answer(await two.fire(transaction_id)) == DUPLICATE
    rows = await one.query("SELECT count(*) FROM events WHERE transaction_id = ?"
                           " AND event_id = 'quote_viewed'", transaction_id)
    assert rows == [(1,)]
    # Node two has read the transaction again: it knows the event fired.
    one.clock.advance(60)
    assert await answer(await two.fire(transaction_id)) == DUPLICATE


async def test_a_lead_made_on_one_node_is_found_on_the_other(
        nodes: tuple[Harness, Harness]) -> None:
    one, two = nodes
    transaction_id = await one.click()
    response = await two.fire(transaction_id)
    assert response.status_code == 200, response.text
    view = await two.view(transaction_id)
    assert [event["event_id"] for event in view["events"]] == ["quote_viewed"]


async def test_a_node_that_found_no_lead_finds_it_once_it_exists(
        nodes: tuple[Harness, Harness]) -> None:
    one, two = nodes
    body = {"cid": CID, "event_id": "quote_viewed", "transaction_id": "not-yet"}
    refused = await two.client.post("/api/event/trigger", json=body)
    assert refused.status_code == 400, refused.text
    store = one.services.store
    assert isinstance(store, PostgresStore)
    conn = await asyncpg.connect(store.url)
    try:
        await conn.execute(
            "INSERT INTO leads (transaction_id, cid, pid, fields, created_at)"
            " VALUES ('not-yet', $1, 'organic', '{}', '2026-11-28T12:00:00Z')", CID)
    finally:
        await conn.close()
    assert (await two.client.post("/api/event/trigger", json=body)).status_code == 200


async def test_100_identical_requests_split_across_two_nodes_fire_exactly_once(
        nodes: tuple[Harness, Harness]) -> None:
    one, two = nodes
    transaction_id = await one.click()
    responses = await asyncio.gather(*(
        (one if i % 2 else two).fire(transaction_id) for i in range(100)))
    codes = sorted(response.status_code for response in responses)
    assert codes.count(200) == 1
    assert set(codes) <= {200, 400, 403}
    assert await one.query("SELECT count(*) FROM events WHERE transaction_id = ?",
                           transaction_id) == [(1,)]


async def test_200_distinct_transactions_across_two_nodes_all_fire(
        nodes: tuple[Harness, Harness]) -> None:
    one, two = nodes
    transaction_ids = [await one.click() for _ in range(200)]
    responses = await asyncio.gather(*(
        (one if i % 2 else two).fire(transaction_id)
        for i, transaction_id in enumerate(transaction_ids)))
    assert [response.status_code for response in responses] == [200] * 200
    assert await one.query("SELECT count(*) FROM events") == [(200,)]


async def test_concurrent_events_share_commits(pg_url: str) -> None:
    clock = FakeClock()
    async with running(make_config_for(pg_url), clock, postgres_store(pg_url, clock)) as api:
        transaction_ids = [await api.click() for _ in range(50)]
        store = api.services.store
        assert isinstance(store, PostgresStore)
        before = store.writer.batches_committed
        responses = await asyncio.gather(*(api.fire(t) for t in transaction_ids))
        assert [response.status_code for response in responses] == [200] * 50
        after = store.writer.batches_committed
    # One transaction per batch, not per request.
    assert after - before < 50


async def test_what_postgresql_does_not_offer_is_a_clear_501_not_a_crash(
        nodes: tuple[Harness, Harness]) -> None:
    one, _ = nodes
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    backup = await one.client.post("/api/admin/backup", headers=auth)
    assert (backup.status_code, backup.json()) == (
        501, error(501, "Backups of a PostgreSQL database are taken with pg_dump"))


async def test_closed_windows_are_purged_and_open_ones_kept(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    await store.open()
    try:
        claimer = store.windows
        assert isinstance(claimer, WindowClaimer)
        assert await claimer.claim("t1", "open", 3600)
        assert await claimer.claim("t1", "closed", 0)
        assert await claimer.purge() == 1
        # The open one still holds; the purged one opens again.
        assert await claimer.claim("t1", "open", 3600) is None
        assert await claimer.claim("t1", "closed", 3600) is not None
    finally:
        await store.close()
