"""Reports on PostgreSQL: the same answers as SQLite, roll-ups exact with several writers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from actors.clock import utc_text
from app.config.schema import parse_config, with_server_overrides
from storage.errors import DuplicateEvent
from storage.postgres import rollups
from storage.postgres.reports import raw_figures, rollup_figures
from storage.postgres.store import PostgresStore
from storage.records import ConversionChange, LeadChange, LeadRow
from storage.reports import ReportSpan
from tests.conftest import FakeClock, Harness, postgres_store, running
from tests.schemas import postgres_back_to
from tests.test_reports import CONFIG, Scenario, get, play
from tests.test_rollups import rollups_match
from tests.test_writer import event, lead


def _config(db: str) -> Any:
    return with_server_overrides(parse_config(CONFIG, origin="test"), "test", db=db)


@pytest.fixture
async def on_postgres(pg_url: str) -> AsyncIterator[Harness]:
    clock = FakeClock()
    async with running(_config(pg_url), clock, postgres_store(pg_url, clock)) as harness:
        yield harness


# Whole-hour zones read the roll-ups; Kolkata (+05:30), Kathmandu (+05:45) and Lord Howe
# (+10:30 then +11 from early October) read the rows.
ASKED: list[dict[str, Any]] = [
    {"group_by": group_by, "tz": tz}
    for tz in ("UTC", "America/New_York", "Asia/Kolkata", "Asia/Kathmandu",
               "Australia/Lord_Howe")
    for group_by in ("day", "hour", "cid,pid,event_id", "pid,day")
] + [
    {"group_by": "cid", "cid": "cmp_b", "format": "csv"},
    {"group_by": "day,event_id", "event_id": ["sale", "lead_sold"], "tz": "Asia/Kolkata",
     "format": "csv"},
    {"group_by": "hour", "pid": "src_b", "tz": "Asia/Kathmandu", "format": "csv"},
    {"group_by": "day", "from": "2026-11-29", "to": "2026-11-29", "format": "csv"},
]


async def test_the_same_scenario_gives_the_same_reports_on_sqlite_and_postgresql(
        tmp_path: Path, on_postgres: Harness) -> None:
    async with running(_config(str(tmp_path / "r.db")), FakeClock()) as on_sqlite:
        await play(on_sqlite)
        await play(on_postgres)
        for params in ASKED:
            lite, pg = await get(on_sqlite, **params), await get(on_postgres, **params)
            assert lite.status_code == pg.status_code == 200, pg.text
            assert lite.headers["content-type"] == pg.headers["content-type"]
            assert pg.text == lite.text, params
    kolkata = (await get(on_postgres, group_by="hour", tz="Asia/Kolkata")).json()["data"]
    # The first click, at 12:00 UTC, is 17:30 in Kolkata.
    assert kolkata["rows"][0]["hour"] == "2026-11-28T17:00+05:30"
    assert kolkata["totals"]["clicks"] == 4


async def test_a_half_hour_zone_reads_the_rows_and_a_whole_hour_zone_the_rollups(
        on_postgres: Harness) -> None:
    s = Scenario(on_postgres)
    s.at("2026-11-28T18:45:00")
    await s.click("cmp_a", "src_a")
    # Only in the roll-ups: what reads them says 101, what reads the rows says 1.
    await on_postgres.query("UPDATE stats SET clicks = 101 WHERE clicks = 1")
    kolkata = await get(on_postgres, group_by="day,hour", tz="Asia/Kolkata")
    assert [(row["day"], row["hour"], row["clicks"])
            for row in kolkata.json()["data"]["rows"]] == [
        ("2026-11-29", "2026-11-29T00:00+05:30", 1)]
    utc = await get(on_postgres, group_by="day")
    assert utc.json()["data"]["totals"]["clicks"] == 101


async def test_the_exact_queries_agree_with_the_rollups_on_whole_hours(
        on_postgres: Harness) -> None:
    await play(on_postgres)
    store = on_postgres.services.store
    assert isinstance(store, PostgresStore)
    spans = [ReportSpan(start="2026-11-28T00:00:00.000000Z", end="2026-12-02T00:00:00.000000Z",
                        width=width, hourly=True, keys=keys, **filters)
             for width in (0, 13)
             for keys in ((), ("cid",), ("pid", "event_id"))
             for filters in ({}, {"pids": ("src_b",)}, {"event_ids": ("sale",)})]
    async with store._db().acquire() as conn:
        for span in spans:
            exact, summed = await raw_figures(conn, span), await rollup_figures(conn, span)
            assert sorted(exact.events) == sorted(summed.events), span
            assert sorted(exact.conversions) == sorted(summed.conversions), span
            assert sorted(exact.reversals) == sorted(summed.reversals), span
            assert (sorted(exact.leads) if exact.leads is not None else None) == (
                sorted(summed.leads) if summed.leads is not None else None), span
    assert exact.events and exact.conversions and exact.reversals


async def test_the_migration_builds_the_rollups_from_the_rows_stored_before_it(
        pg_url: str) -> None:
    clock = FakeClock()
    async with running(_config(pg_url), clock, postgres_store(pg_url, clock)) as harness:
        await play(harness)
        kept = await rollups_match(harness)
        before = (await get(harness, group_by="cid,day")).text
    conn = await asyncpg.connect(pg_url)
    try:
        # The database as version 2 left it: the same rows, no roll-ups.
        await conn.execute(postgres_back_to(2))
        assert await conn.fetchval("SELECT max(version) FROM schema_version") == 2
        assert await conn.fetchval("SELECT to_regclass('stats')") is None
    finally:
        await conn.close()
    async with running(_config(pg_url), clock, postgres_store(pg_url, clock)) as harness:
        assert await rollups_match(harness) == kept
        assert (await get(harness, group_by="cid,day")).text == before
    assert len(kept) > 10


@pytest.fixture
async def nodes(pg_url: str) -> AsyncIterator[tuple[Harness, Harness]]:
    """Two apps (two processes' worth of stores) on one database and one clock."""
    clock = FakeClock()
    config = _config(pg_url)
    async with running(config, clock, postgres_store(pg_url, clock)) as one, \
            running(config, clock, postgres_store(pg_url, clock)) as two:
        yield one, two


async def test_two_stores_writing_one_database_keep_the_rollups_exact(
        nodes: tuple[Harness, Harness]) -> None:
    one, two = nodes
    s1, s2 = Scenario(one), Scenario(two)
    leads = await asyncio.gather(*(s.click("cmp_a", "src_a") for s in (s1, s2) * 10))
    # Each lead's cost set by both at once (two events: each has its own lock window).
    await asyncio.gather(*(
        s.fire(transaction_id, "cmp_a", event_id, "src_a", cost=n + 100 * k,
               cost_operation="override")
        for n, transaction_id in enumerate(leads)
        for k, (s, event_id) in enumerate(((s1, "form_step"), (s2, "quote_viewed")))))
    sold = await asyncio.gather(*(
        s1.fire(transaction_id, "cmp_a", "lead_sold", "src_a", revenue=10 + n)
        for n, transaction_id in enumerate(leads)))
    # Decided on the other node, several at once; then half of them reversed.
    await asyncio.gather(*(s2.change(conversion_id, ("approve", "reject")[n % 2])
                           for n, conversion_id in enumerate(sold)))
    await asyncio.gather(*(s1.change(conversion_id, "reverse") for conversion_id in sold[::4]))
    found = await rollups_match(one)
    assert sum(row[0] for row in found.values()) == 20
    response = await get(one, group_by="cid")
    assert response.json()["data"]["totals"]["reversals"] == 5
    assert (await get(two, group_by="cid")).text == response.text


async def _waiting_for_a_lock(conn: asyncpg.Connection) -> bool:
    for _ in range(500):
        if await conn.fetchval("SELECT count(*) FROM pg_stat_activity"
                               " WHERE wait_event_type = 'Lock'"):
            return True
        await asyncio.sleep(0.01)
    return False


async def test_a_change_is_counted_against_the_value_a_concurrent_batch_wrote(
        pg_url: str) -> None:
    """The stored value a change replaces stays locked until its batch commits."""
    store = PostgresStore(pg_url)
    await store.open()
    await store.commit(lead("t"))
    await store.close()
    first, second, watcher = [await asyncpg.connect(pg_url) for _ in range(3)]

    async def change(conn: asyncpg.Connection, cost: int) -> None:
        change = LeadChange(transaction_id="t", fields_patch=None, cost=str(cost),
                            cost_micro=cost * 1_000_000)
        async with conn.transaction():
            await rollups.record(conn, [], [], [change], [])
            await conn.execute("UPDATE leads SET cost_micro = $1 WHERE transaction_id = 't'",
                               change.cost_micro)

    try:
        tx = first.transaction()
        await tx.start()
        await rollups.record(first, [], [], [LeadChange(
            transaction_id="t", fields_patch=None, cost="5", cost_micro=5_000_000)], [])
        later = asyncio.create_task(change(second, 7))
        assert await _waiting_for_a_lock(watcher)
        await first.execute("UPDATE leads SET cost_micro = 5000000 WHERE transaction_id = 't'")
        await tx.commit()
        await later
        cost = await watcher.fetchval("SELECT sum(cost) FROM stats")
    finally:
        for conn in (first, second, watcher):
            await conn.close()
    assert cost == 7_000_000  # 0 -> 5 -> 7, not 5 + 7


async def test_a_status_change_waits_for_a_concurrent_one(pg_url: str) -> None:
    clock = FakeClock()
    async with running(_config(pg_url), clock, postgres_store(pg_url, clock)) as harness:
        s = Scenario(harness)
        conversion_id = await s.fire(await s.click("cmp_a", "src_a"), "cmp_a", "lead_sold",
                                     "src_a", revenue=10)
    first, second, watcher = [await asyncpg.connect(pg_url) for _ in range(3)]

    def moved(to: str) -> ConversionChange:
        return ConversionChange(conversion_id=conversion_id, from_status="pending",
                                to_status=to,  # type: ignore[arg-type]
                                reason=None, source="api", changed_at=utc_text(clock.now()))

    async def decide(conn: asyncpg.Connection, to: str) -> None:
        async with conn.transaction():
            await rollups.record(conn, [], [], [], [moved(to)])
            await conn.execute("UPDATE events SET status = $1 WHERE conversion_id = $2",
                               to, conversion_id)

    try:
        tx = first.transaction()
        await tx.start()
        await rollups.record(first, [], [], [], [moved("approved")])
        later = asyncio.create_task(decide(second, "rejected"))
        assert await _waiting_for_a_lock(watcher)
        await first.execute("UPDATE events SET status = 'approved' WHERE conversion_id = $1",
                            conversion_id)
        await tx.commit()
        await later
        counts = await watcher.fetchrow(
            "SELECT sum(conversions), sum(pending_conversions), sum(revenue) FROM stats")
    finally:
        for conn in (first, second, watcher):
            await conn.close()
    # pending -> approved -> rejected counts nothing; without the lock the second change
    # would take the conversion off "pending" a second time.
    assert tuple(counts) == (0, 0, 0)


async def test_a_refused_op_counts_nothing_and_its_batch_still_counts(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    await store.open()
    try:
        await store.commit(lead("a"))
        written = [store.submit(op) for op in (lead("b"), event("a"), event("a"), event("b"))]
        results = await asyncio.gather(*written, return_exceptions=True)
        conn = await asyncpg.connect(pg_url)
        try:
            rows = await conn.fetch("SELECT event_id, clicks, events FROM stats")
        finally:
            await conn.close()
    finally:
        await store.close()
    assert [type(result) for result in results] == [
        type(None), type(None), DuplicateEvent, type(None)]
    assert sorted(tuple(row) for row in rows) == [("", 2, 0), ("e", 0, 2)]


async def test_a_sum_past_64_bits_is_kept_and_reported_exactly(pg_url: str) -> None:
    big = (1 << 63) - 1

    def costly(hour: int) -> LeadRow:
        return LeadRow(transaction_id=f"t{hour}", cid="c", pid="p", fields="{}", cost=None,
                       ip=None, user_agent=None, created_at=f"2026-01-01T{hour:02}:00:00Z",
                       cost_micro=big)

    conn = await asyncpg.connect(pg_url)
    try:
        await rollups.record(conn, [costly(0)], [], [], [])
        await rollups.record(conn, [costly(0), costly(0)], [], [], [])  # a batch past 64 bits
        await rollups.record(conn, [costly(1)], [], [], [])
        assert await conn.fetchval("SELECT cost FROM stats WHERE hour = '2026-01-01T00'") == (
            3 * big)
        span = ReportSpan(start="2026-01-01T00:00:00.000000Z",
                          end="2026-01-02T00:00:00.000000Z", width=0, hourly=True)
        whole = await rollup_figures(conn, span)
        hourly = await rollup_figures(conn, ReportSpan(
            start=span.start, end=span.end, width=13, hourly=True))
    finally:
        await conn.close()
    assert [row[-1] for row in whole.leads or []] == [4 * big]
    assert [row[-1] for row in hourly.leads or []] == [3 * big, big]
