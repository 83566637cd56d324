"""Reports by a tracking field named in ``[reports] breakdowns`` read its roll-ups, and
answer exactly what the rows do, on both stores.

A random walk of clicks with random sub-ids and UTM tags, events carrying new values of
them (the lead's past figures move), costs, conversions in two currencies, approvals,
rejections and reversals, through the real app: after it, every report by a kept field,
in five zones, equals the same report counted from the raw rows, byte for byte; the
roll-ups the writer kept equal a backfill of them from the rows; a reload that adds a
field backfills it and one that removes it drops its rows (the report then counts rows).
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from app.config.schema import Config, parse_config, with_server_overrides
from app.reports.breakdowns import Breakdowns
from app.reports.figures import Report, build
from app.reports.params import ReportParams
from app.reports.period import span_of
from storage.postgres.store import PostgresStore
from storage.reports import RawFigures, ReportSpan, tag_rolled_up
from storage.sqlite import reports as sqlite_reports
from storage.sqlite.store import Store
from tests.conftest import BACKENDS, Harness, running_on
from tests.test_report_properties import ZONES
from tests.test_reports import AUTH, CONFIG, Scenario

KEPT = ["sub1", "utm_campaign"]
BREAKDOWNS = CONFIG + """
[reports]
breakdowns = ["sub1", "utm_campaign"]

[[rates]]
currency = "EUR"
rate = "1.0825"
from = 2020-01-01
"""
VALUES = ["a", "b", "Ünï", ""]
TAG_COLUMNS = ("field, value, hour, cid, pid, event_id, clicks, cost, events, conversions,"
               " revenue, payout, pending_conversions, pending_revenue, reversals,"
               " reversed_revenue, reversed_payout")


def _config(text: str, tmp_path: Path) -> Config:
    return with_server_overrides(parse_config(text, origin="t"), "t",
                                 db=str(tmp_path / "tags.db"))


@pytest.fixture
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_on(request, _config(BREAKDOWNS, tmp_path)) as harness:
        yield harness


def _tags(rng: random.Random) -> dict[str, str]:
    return {name: rng.choice(VALUES) for name in ("sub1", "utm_campaign", "sub2")
            if rng.random() < 0.7}


async def walk(harness: Harness, seed: int, steps: int = 60) -> None:
    """Random writes over five weeks: every kind the roll-ups count."""
    rng = random.Random(seed)
    s = Scenario(harness)
    leads: list[tuple[str, str, str]] = []
    conversions: list[str] = []
    for _ in range(steps):
        s.clock.advance(rng.randint(60, 24 * 3600))
        kind = rng.random()
        if kind < 0.3 or not leads:
            cid, pid = rng.choice(["cmp_a", "cmp_b"]), rng.choice(["src_a", "src_b"])
            lead = await harness.click(cid, pid=pid, **_tags(rng))
            leads.append((lead, cid, pid))
        elif kind < 0.5:
            lead, cid, pid = rng.choice(leads)
            await s.fire(lead, cid, "form_step", pid, cost=rng.choice([1, "2.5", 0.01]),
                         **_tags(rng))
        elif kind < 0.75:
            lead, cid, pid = rng.choice(leads)
            event = "sale" if cid == "cmp_a" and rng.random() < 0.5 else "lead_sold"
            body: dict[str, Any] = {"revenue": rng.choice(["10", "99.99", "0.5"])}
            if rng.random() < 0.4:
                body["currency"] = "EUR"
            # A conversion fires once per lead: a second one is refused.
            response = await harness.client.post("/api/event/trigger", json={
                "cid": cid, "event_id": event, "transaction_id": lead, "pid": pid,
                **body, **_tags(rng)})
            assert response.status_code in (200, 400), response.text
            if response.status_code == 200:
                conversions.append(response.json()["data"]["conversion_id"])
        elif conversions:
            action = rng.choice(["approve", "reject", "reverse"])
            await harness.client.post(f"/api/conversions/{rng.choice(conversions)}/{action}",
                                      headers=AUTH)


async def raw(harness: Harness, span: ReportSpan) -> RawFigures:
    """The figures counted from the rows, whatever roll-ups there are."""
    store = harness.services.store
    await store.flush()
    if isinstance(store, Store):
        return sqlite_reports.read_figures(store.path, span)
    assert isinstance(store, PostgresStore)
    from storage.postgres import reports as postgres_reports
    async with store._report_connection() as conn:
        return await postgres_reports.raw_figures(conn, span)


# The fake clock's start: the walks fill the 90 days after it.
FIRST = dt.date(2026, 12, 7)


def params(zone: str, group_by: tuple[str, ...], **filters: Any) -> ReportParams:
    return ReportParams(first=FIRST, last=FIRST + dt.timedelta(days=90), tz=zone,
                        group_by=group_by, **filters)  # type: ignore[arg-type]


GROUPINGS = [("sub1",), ("utm_campaign",), ("day", "sub1"), ("hour", "utm_campaign"),
             ("sub1", "cid", "pid"), ("event_id", "sub1"), ("hour_of_day", "utm_campaign"),
             ("day_of_week", "sub1", "event_id")]


async def assert_reports_match(harness: Harness, *, rolled: bool) -> int:
    """Every grouping by a kept field, in five zones, equals the rows' report; how many
    of them read the roll-ups (``rolled``: every whole-hour one must)."""
    store = harness.services.store
    read = 0
    for zone in ZONES:
        for group_by in GROUPINGS:
            for filters in ({}, {"pids": ("src_a",)}, {"event_ids": ("lead_sold",)}):
                asked = params(zone, group_by, **filters)
                span = span_of(asked)
                rows = await store.report_rows(span)
                if rows.rollups is not None:
                    read += 1
                assert (rows.rollups is not None) == (
                    rolled and tag_rolled_up(span) is not None), (zone, group_by)
                found = build(asked, await store.report_figures(span))
                assert _encoded(found) == _encoded(build(asked, await raw(harness, span)))
    return read


def _encoded(report: Report) -> bytes:
    return msgspec.json.encode(report)


async def tag_stats(harness: Harness) -> list[tuple[Any, ...]]:
    """The roll-ups by field, rows that count nothing left out (a moved lead leaves its
    old value's rows at zero)."""
    rows = await harness.query(f"SELECT {TAG_COLUMNS} FROM tag_stats")
    return sorted((*row[:6], *(int(value) for value in row[6:])) for row in rows
                  if any(int(value) for value in row[6:]))


async def high_parts_are_zero(harness: Harness) -> None:
    if isinstance(harness.services.store, Store):
        rows = await harness.query("SELECT count(*) FROM tag_stats WHERE revenue_high != 0"
                                   " OR payout_high != 0 OR cost_high != 0")
        assert rows == [(0,)]


@pytest.mark.parametrize("harness", BACKENDS, indirect=True)
@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_reports_by_kept_fields_read_rollups_equal_to_the_rows(
        harness: Harness, seed: int) -> None:
    await walk(harness, seed)
    assert await assert_reports_match(harness, rolled=True) > 0
    kept = await tag_stats(harness)
    assert {row[0] for row in kept} == set(KEPT)
    await high_parts_are_zero(harness)
    # Counted afresh from the rows, the roll-ups are what the writer kept.
    store = harness.services.store
    assert await store.keep_breakdowns([]) == ([], KEPT)
    assert await tag_stats(harness) == []
    assert await store.keep_breakdowns(KEPT) == (KEPT, [])
    assert await tag_stats(harness) == kept


@pytest.mark.parametrize("harness", BACKENDS, indirect=True)
async def test_a_reload_adding_a_field_backfills_it_and_one_removing_it_drops_it(
        harness: Harness, tmp_path: Path) -> None:
    store = harness.services.store
    await store.keep_breakdowns([])  # as if started with no breakdowns
    await walk(harness, 7, steps=40)
    await assert_reports_match(harness, rolled=False)
    breakdowns = Breakdowns(store)
    # What a reload does: the store follows the new list in the background.
    breakdowns.follow(["sub1", "utm_campaign"])
    await breakdowns.settled()
    assert await assert_reports_match(harness, rolled=True) > 0
    await walk(harness, 8, steps=30)
    await assert_reports_match(harness, rolled=True)
    kept = await tag_stats(harness)
    breakdowns.follow([])
    await breakdowns.settled()
    assert await tag_stats(harness) == []
    await assert_reports_match(harness, rolled=False)
    await breakdowns.use(KEPT)
    assert await tag_stats(harness) == kept
    await breakdowns.close()
