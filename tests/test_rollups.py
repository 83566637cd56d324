"""The hourly roll-ups always equal a recount of the stored rows, whatever wrote them."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import closing
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from app.config.schema import parse_config, with_server_overrides
from storage.money import micro
from storage.rollups import FIGURES, MONEY, NO_EVENT
from storage.sqlite.rollups import HIGH, UNIT
from storage.sqlite.store import Store
from tests.conftest import BACKENDS, Harness, running_on
from tests.test_reports import AUTH, CONFIG, Scenario
from tests.test_writer import event, lead

Stats = dict[tuple[str, ...], tuple[int, ...]]
_INDEX = {name: n for n, name in enumerate(FIGURES)}


def _units(text: str | None) -> int:
    return 0 if text is None else micro(Decimal(text))


# What the recount reads, in SQL both stores understand.
LEADS = "SELECT cid, pid, cost, created_at FROM leads"
EVENTS = ("SELECT cid, pid, event_id, fired_at, conversion, converted_at, status, revenue,"
          " payout, conversion_id FROM events")
REVERSALS = "SELECT conversion_id, changed_at FROM conversion_changes WHERE to_status = 'reversed'"
STATS = f"SELECT hour, cid, pid, event_id, {', '.join(FIGURES)} FROM stats"
# SQLite keeps each money figure in two integers (storage/sqlite/rollups.py).
SQLITE_STATS = (f"SELECT hour, cid, pid, event_id, {', '.join(FIGURES)}, {', '.join(HIGH)}"
                " FROM stats")
Rows = list[tuple[Any, ...]]


def recount(leads: Rows, events: Rows, reversals: Rows) -> Stats:
    """Per (hour, cid, pid, event id), from the rows one by one and their text amounts."""
    sums: dict[tuple[str, ...], list[int]] = defaultdict(lambda: [0] * len(FIGURES))

    def add(time: str, cid: str, pid: str, event_id: str, **figures: int) -> None:
        row = sums[(time[:13], cid, pid, event_id)]
        for name, value in figures.items():
            row[_INDEX[name]] += value

    for cid, pid, cost, created in leads:
        add(created, cid, pid, NO_EVENT, clicks=1, cost=_units(cost))
    reversed_at = defaultdict(list)
    for conversion_id, changed in reversals:
        reversed_at[conversion_id].append(changed)
    for (cid, pid, event_id, fired, conversion, converted, status, revenue, payout,
         conversion_id) in events:
        add(fired, cid, pid, event_id, events=1)
        if not conversion:
            continue
        if status in ("approved", "reversed"):
            add(converted, cid, pid, event_id, conversions=1, revenue=_units(revenue),
                payout=_units(payout))
        elif status == "pending":
            add(converted, cid, pid, event_id, pending_conversions=1,
                pending_revenue=_units(revenue))
        for changed in reversed_at[conversion_id]:
            add(changed, cid, pid, event_id, reversals=1, reversed_revenue=_units(revenue),
                reversed_payout=_units(payout))
    return {key: tuple(row) for key, row in sums.items() if any(row)}


def stored(rows: Rows) -> Stats:
    """The roll-ups, without rows that went back to zero (a rejected conversion's)."""
    return {tuple(row[:4]): tuple(row[4:]) for row in rows if any(row[4:])}


def sqlite_stored(rows: Rows) -> Stats:
    """SQLite's roll-ups, each money figure joined from its two parts."""
    joined = []
    for row in rows:
        highs = iter(row[4 + len(FIGURES):])
        joined.append((*row[:4], *(low + next(highs) * UNIT if name in MONEY else low
                                   for name, low in zip(FIGURES, row[4:], strict=False))))
    return stored(joined)


def assert_rollups_match(path: Path | str) -> Stats:
    with closing(sqlite3.connect(path)) as conn:
        found = sqlite_stored(conn.execute(SQLITE_STATS).fetchall())
        expected = recount(*(conn.execute(sql).fetchall() for sql in (LEADS, EVENTS, REVERSALS)))
    assert found == expected
    return found


async def rollups_match(api: Harness) -> Stats:
    """The roll-ups of the store ``api`` runs on, once checked against a recount."""
    if isinstance(api.services.store, Store):
        found = sqlite_stored(await api.query(SQLITE_STATS))
    else:
        found = stored(await api.query(STATS))
    assert found == recount(*[await api.query(sql) for sql in (LEADS, EVENTS, REVERSALS)])
    return found


# A campaign whose foreign transaction ids create their lead, cost included.
CREATING = CONFIG + """
[[campaigns]]
cid = "cmp_c"
unknown_transactions = "create"
[[campaigns.events]]
event_id = "quote_viewed"
"""


class Checked(Scenario):
    """The report scenario, checking the roll-ups against a recount after every write."""

    def __init__(self, harness: Harness) -> None:
        super().__init__(harness)
        self.checks = 0

    async def check(self) -> Stats:
        self.checks += 1
        return await rollups_match(self.api)

    async def click(self, cid: str, pid: str) -> str:
        found = await super().click(cid, pid)
        await self.check()
        return found

    async def fire(self, transaction_id: str, cid: str, event_id: str, pid: str,
                   expect: int = 200, **fields: Any) -> str:
        found = await super().fire(transaction_id, cid, event_id, pid, expect, **fields)
        await self.check()
        return found

    async def change(self, conversion_id: str, action: str) -> None:
        await super().change(conversion_id, action)
        await self.check()


@pytest.fixture
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    """The CREATING config running on SQLite, or on PostgreSQL (parametrized)."""
    config = with_server_overrides(parse_config(CREATING, origin="t"), "t",
                                   db=str(tmp_path / "r.db"))
    async with running_on(request, config) as harness:
        yield harness


@pytest.mark.parametrize("harness", BACKENDS, indirect=True)
async def test_every_kind_of_write_keeps_the_rollups_equal_to_a_recount(
        harness: Harness) -> None:
    s = Checked(harness)
    s.at("2026-11-28T12:00:00")
    lead = await s.click("cmp_a", "src_a")
    await s.fire(lead, "cmp_a", "quote_viewed", "src_a", cost=2.5)
    await s.fire(lead, "cmp_a", "form_step", "src_a", cost=1, cost_operation="subtract")
    s.at("2026-11-28T13:30:00")
    await s.fire(lead, "cmp_a", "form_step", "src_a", cost=4, cost_operation="override")
    # Dated in another hour (and day) than it fired; then a refused duplicate.
    sale = await s.fire(lead, "cmp_a", "sale", "src_b", revenue=100,
                        conversion_date="2026-11-28 23:30:00", conversion_timezone="EST")
    before = await s.check()
    s.at("2026-11-28T13:31:00")
    await s.fire(lead, "cmp_a", "sale", "src_b", expect=400, revenue=100)
    assert await s.check() == before
    # A replay under the same Idempotency-Key answers again and counts nothing.
    body = {"cid": "cmp_a", "event_id": "form_step", "transaction_id": lead,
            "pid": "src_a", "cost": 2}
    s.at("2026-11-28T13:32:00")
    for _ in range(2):
        response = await harness.client.post("/api/event/trigger", json=body,
                                              headers={"Idempotency-Key": "k-1"})
        assert response.status_code == 200, response.text
        replayed = await s.check()
    assert sum(row[_INDEX["events"]] for row in replayed.values()) == 5
    # Pending, then each move of the lifecycle.
    s.at("2026-11-29T14:00:00")
    pending = await s.fire(lead, "cmp_a", "lead_sold", "src_b", revenue=30)
    await s.change(pending, "approve")
    s.at("2026-11-30T01:00:00")
    await s.change(pending, "reverse")
    await s.change(sale, "reverse")
    other = await s.click("cmp_b", "src_b")
    rejected = await s.fire(other, "cmp_b", "lead_sold", "src_b", revenue=20)
    await s.change(rejected, "reject")
    # Several conversions changed in one transaction.
    bulk = [await s.fire(await s.click("cmp_b", "src_a"), "cmp_b", "lead_sold", "src_a",
                         revenue=n) for n in (3, 4)]
    response = await harness.client.post("/api/conversions/bulk", headers=AUTH, json={
        "conversion_ids": bulk, "action": "approve"})
    assert response.status_code == 200, response.text
    await s.check()
    # A lead created by its first event, with a cost.
    s.at("2026-12-01T02:00:00")
    await s.fire("foreign-1", "cmp_c", "quote_viewed", "src_a", cost="7.5")
    final = await s.check()
    assert s.checks >= 20
    lead_keys = [key for key in final if key[3] == NO_EVENT]
    assert final[("2026-12-01T02", "cmp_c", "src_a", NO_EVENT)][:2] == (1, 7_500_000)
    assert len(lead_keys) == 4
    assert final[("2026-11-30T01", "cmp_a", "src_b", "sale")][_INDEX["reversals"]] == 1


async def test_a_refused_op_counts_nothing_and_its_batch_still_counts(tmp_path: Path) -> None:
    store = Store(tmp_path / "w.db", max_pending=100)
    await store.open()
    try:
        await store.submit(lead("a"))
        # One batch: a lead, an event fired twice though it fires once (refused), another.
        written = [store.submit(op) for op in (lead("b"), event("a"), event("a"), event("b"))]
        results = await asyncio.gather(*written, return_exceptions=True)
    finally:
        await store.close()
    assert [type(result) for result in results] == [
        type(None), type(None), sqlite3.IntegrityError, type(None)]
    found = assert_rollups_match(store.path)
    assert found[("2026-01-01T00", "c", "organic", "e")][_INDEX["events"]] == 2
    assert found[("2026-01-01T00", "c", "organic", NO_EVENT)][_INDEX["clicks"]] == 2
