"""Reports grouped by a conversion's status and hold reason, on both stores."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
from collections.abc import AsyncIterator
from contextlib import closing
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from app.config.schema import parse_config, with_server_overrides
from storage.postgres.store import PostgresStore
from storage.sqlite.store import Store
from tests.conftest import ADMIN_TOKEN, BACKENDS, FakeClock, Harness, error, running, running_on
from tests.served import EXECUTABLE
from tests.test_reports import Scenario, get, report, row, with_ratios

CONFIG = f"""
[server]
admin_token = "{ADMIN_TOKEN}"

[[sources]]
pid = "src_a"
payout = {{ type = "percent", value = 50 }}

[[sources]]
pid = "src_b"
payout = {{ type = "fixed", value = 12.5 }}

[[campaigns]]
cid = "cmp_a"

[[campaigns.events]]
event_id = "quote_viewed"

[[campaigns.events]]
event_id = "sale"
conversion = true
hold_revenue_above = 500

[[campaigns.events]]
event_id = "lead_sold"
conversion = true
approval = "manual"
"""


async def play(harness: Harness) -> None:
    """Conversions of every status, approved at once or held for either reason, in UTC."""
    s = Scenario(harness)
    s.at("2026-11-28T12:00:00")
    l1 = await s.click("cmp_a", "src_a")
    await s.fire(l1, "cmp_a", "quote_viewed", "src_a", cost=2)
    s.at("2026-11-28T13:00:00")
    await s.fire(l1, "cmp_a", "sale", "src_a", revenue=100)  # approved at once
    s.at("2026-11-28T14:00:00")
    l2 = await s.click("cmp_a", "src_b")
    big = await s.fire(l2, "cmp_a", "sale", "src_b", revenue=600)  # held: above 500
    s.at("2026-11-29T10:00:00")
    await s.change(big, "approve")  # counts on its own date, the 28th
    s.at("2026-11-29T11:00:00")
    l3 = await s.click("cmp_a", "src_a")
    await s.fire(l3, "cmp_a", "lead_sold", "src_a", revenue=40)  # stays pending
    s.at("2026-11-29T12:00:00")
    l4 = await s.click("cmp_a", "src_a")
    refused = await s.fire(l4, "cmp_a", "lead_sold", "src_a", revenue=30)
    s.at("2026-11-29T12:30:00")
    await s.change(refused, "reject")
    s.at("2026-11-29T13:00:00")
    l5 = await s.click("cmp_a", "src_b")
    returned = await s.fire(l5, "cmp_a", "sale", "src_b", revenue=200)
    s.at("2026-11-30T09:00:00")
    await s.change(returned, "reverse")
    s.at("2026-11-30T10:00:00")
    l6 = await s.click("cmp_a", "src_a")
    sold = await s.fire(l6, "cmp_a", "lead_sold", "src_a", revenue=70)
    s.at("2026-11-30T10:30:00")
    await s.change(sold, "approve")
    s.at("2026-11-30T11:00:00")
    await s.change(sold, "reverse")
    s.at("2026-11-30T12:00:00")
    l7 = await s.click("cmp_a", "src_a")
    too_big = await s.fire(l7, "cmp_a", "sale", "src_a", revenue=900)
    s.at("2026-11-30T12:10:00")
    await s.change(too_big, "reject")


@pytest.fixture(params=BACKENDS)
async def played(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    config = with_server_overrides(parse_config(CONFIG, origin="test"), "test",
                                   db=str(tmp_path / "status.db"))
    async with running_on(request, config) as harness:
        await play(harness)
        yield harness


# Leads and plain events have no status or hold reason: they belong to no group.
NO_LEADS = {"clicks": None, "cost": None, "conversion_rate": None, "epc": None,
            "cpc": None, "events": None}


def conversions(**given: Any) -> dict[str, Any]:
    """A row of conversion figures: profit is what they leave, cost left out."""
    found = row(**given) | NO_LEADS
    found["profit"] = str(Decimal(found["net_revenue"]) - Decimal(found["net_payout"]))
    return with_ratios(found)


APPROVED_AT_ONCE = conversions(conversions=1, revenue="100.00", payout="50.00")
APPROVED_BIG = conversions(conversions=1, revenue="600.00", payout="12.50")
PENDING = conversions(pending_conversions=1, pending_revenue="40.00")
REVERSED_HELD = conversions(conversions=1, revenue="70.00", payout="35.00", reversals=1,
                            reversed_revenue="70.00", reversed_payout="35.00")
REVERSED_AT_ONCE = conversions(conversions=1, revenue="200.00", payout="12.50", reversals=1,
                               reversed_revenue="200.00", reversed_payout="12.50")
TOTALS = conversions(conversions=4, revenue="970.00", payout="110.00", reversals=2,
                     reversed_revenue="270.00", reversed_payout="47.50",
                     pending_conversions=1, pending_revenue="40.00")


async def test_by_status_and_reason_rejected_ones_count_nowhere(played: Harness) -> None:
    data = await report(played, group_by="status,reason")
    assert data["group_by"] == ["status", "reason"]
    assert data["rows"] == [
        {"status": "approved", "reason": "none"} | APPROVED_AT_ONCE,
        {"status": "approved", "reason": "revenue_above_hold"} | APPROVED_BIG,
        {"status": "pending", "reason": "manual_approval"} | PENDING,
        {"status": "reversed", "reason": "manual_approval"} | REVERSED_HELD,
        {"status": "reversed", "reason": "none"} | REVERSED_AT_ONCE,
    ]
    assert data["totals"] == TOTALS
    assert data["totals"]["profit"] == "637.50"


async def test_by_day_and_reason_reversals_count_on_their_own_day(played: Harness) -> None:
    data = await report(played, group_by="day,reason")
    assert data["rows"] == [
        {"day": "2026-11-28", "reason": "none"} | APPROVED_AT_ONCE,
        {"day": "2026-11-28", "reason": "revenue_above_hold"} | APPROVED_BIG,
        {"day": "2026-11-29", "reason": "manual_approval"} | PENDING,
        {"day": "2026-11-29", "reason": "none"} | conversions(
            conversions=1, revenue="200.00", payout="12.50"),
        {"day": "2026-11-30", "reason": "manual_approval"} | REVERSED_HELD,
        {"day": "2026-11-30", "reason": "none"} | conversions(
            reversals=1, reversed_revenue="200.00", reversed_payout="12.50"),
    ]
    assert data["totals"] == TOTALS
    # Two hours in New York: the same conversions, in a zone the UTC days do not match.
    hours = await report(played, group_by="status,hour", tz="America/New_York",
                         to="2026-11-28")
    assert [(r["status"], r["hour"], r["conversions"]) for r in hours["rows"]] == [
        ("approved", "2026-11-28T08:00-05:00", 1), ("approved", "2026-11-28T09:00-05:00", 1)]


async def test_filters_and_the_period_still_apply(played: Harness) -> None:
    by_source = await report(played, group_by="status,reason", pid="src_b")
    assert by_source["rows"] == [
        {"status": "approved", "reason": "revenue_above_hold"} | APPROVED_BIG,
        {"status": "reversed", "reason": "none"} | REVERSED_AT_ONCE]
    by_event = await report(played, group_by="reason", event_id="lead_sold", cid="cmp_a")
    assert by_event["rows"] == [{"reason": "manual_approval"} | conversions(
        conversions=1, revenue="70.00", payout="35.00", reversals=1,
        reversed_revenue="70.00", reversed_payout="35.00", pending_conversions=1,
        pending_revenue="40.00")]
    nowhere = await report(played, group_by="status", cid="cmp_b")
    assert nowhere["rows"] == []
    first_day = await report(played, group_by="reason,pid", to="2026-11-28")
    assert first_day["rows"] == [
        {"reason": "none", "pid": "src_a"} | APPROVED_AT_ONCE,
        {"reason": "revenue_above_hold", "pid": "src_b"} | APPROVED_BIG]


async def test_csv_has_the_status_and_reason_columns(played: Harness) -> None:
    response = await get(played, group_by="status,reason", format="csv")
    assert response.status_code == 200
    lines = response.text.split("\r\n")
    assert lines[0].startswith("status,reason,clicks,events,conversions,revenue,")
    assert lines[1] == (
        "approved,none,,,1,100.00,50.00,0,0.00,0.00,100.00,50.00,0,0.00,,50.00,,,,100.00,,,")
    assert lines[-2] == (
        "totals,,,,4,970.00,110.00,2,270.00,47.50,700.00,62.50,1,40.00,,637.50,,,,1020.00,,,")


async def _add_to_rollups(api: Harness, sql: str) -> None:
    """Change the roll-ups only: what reads them sees it, what reads the rows does not."""
    store = api.services.store
    await store.flush()
    if isinstance(store, PostgresStore):
        await api.query(sql)
        return
    assert isinstance(store, Store)
    with closing(sqlite3.connect(store.path)) as conn, conn:
        conn.execute(sql)


async def test_status_groups_read_the_rows_and_other_groups_the_rollups(
        played: Harness) -> None:
    await _add_to_rollups(played, "UPDATE stats SET conversions = conversions + 1000"
                                  " WHERE conversions > 0")
    by_campaign = await report(played, group_by="day,cid")
    # Four hours of the roll-ups hold a counted conversion (a reversed one still counts).
    assert by_campaign["totals"]["conversions"] == 4 + 4000
    by_status = await report(played, group_by="day,status")
    assert by_status["totals"]["conversions"] == 4
    assert by_status["totals"] == TOTALS


async def test_unknown_group_keys_are_refused(played: Harness) -> None:
    response = await get(played, group_by="status,state")
    assert response.json() == error(400, "Invalid group_by", invalidFields={
        "group_by": "Expected a comma list of at most 3 distinct keys among day, hour,"
                    " hour_of_day, day_of_week, cid, pid, event_id, status, reason, sub1,"
                    " sub2, sub3, sub4, sub5, utm_source, utm_medium, utm_campaign, utm_term,"
                    " utm_content"})
    twice = await get(played, group_by="reason,day,reason")
    assert twice.json()["message"] == "Invalid group_by"


LARGEST = f"""
[server]
admin_token = "{ADMIN_TOKEN}"
max_revenue = 1000000000000

[[sources]]
pid = "src_a"
payout = {{ type = "percent", value = 40 }}

[[campaigns]]
cid = "cmp_a"

[[campaigns.events]]
event_id = "sale"
conversion = true
allow_duplicates = true
hold_revenue_above = 999999999999
"""


@pytest.fixture(params=BACKENDS)
async def largest(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    config = with_server_overrides(parse_config(LARGEST, origin="test"), "test",
                                   db=str(tmp_path / "largest.db"))
    async with running_on(request, config) as harness:
        yield harness


async def test_sums_past_64_bits_stay_exact_in_every_group(largest: Harness) -> None:
    s = Scenario(largest)
    s.at("2026-11-28T12:00:00")
    transaction_id = await s.click("cmp_a", "src_a")
    for n in range(20):
        # Ten held for their revenue, ten not: each group sums past 2^63 millionths.
        s.at(f"2026-11-28T12:{n + 1:02d}:00")
        await s.fire(transaction_id, "cmp_a", "sale", "src_a",
                     revenue="1e12" if n % 2 else "999999999999")
    data = await report(largest, group_by="reason,status")
    assert [(r["reason"], r["status"], r["conversions"], r["revenue"], r["payout"],
             r["pending_conversions"], r["pending_revenue"]) for r in data["rows"]] == [
        ("none", "approved", 10, "9999999999990.00", "3999999999996.00", 0, "0.00"),
        ("revenue_above_hold", "pending", 0, "0.00", "0.00", 10, "10000000000000.00"),
    ]


def test_the_report_command_groups_by_status_and_reason(tmp_path: Path) -> None:
    db = tmp_path / "status.db"

    async def played_on_file() -> None:
        config = with_server_overrides(parse_config(CONFIG, origin="test"), "test",
                                       db=str(db))
        async with running(config, clock=FakeClock()) as harness:
            await play(harness)

    asyncio.run(played_on_file())
    table = subprocess.run(
        [str(EXECUTABLE), "report", "--db", str(db), "--from", "2026-11-28", "--to",
         "2026-11-30", "--group-by", "status,reason"],
        capture_output=True, text=True, timeout=30)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:4] == ["status", "reason", "clicks", "events"]
    # Null cells are blank: the first figure shown is the conversions.
    assert [line.split()[:4] for line in lines[1:]] == [
        ["approved", "none", "1", "100.00"],
        ["approved", "revenue_above_hold", "1", "600.00"],
        ["pending", "manual_approval", "0", "0.00"],
        ["reversed", "manual_approval", "1", "70.00"],
        ["reversed", "none", "1", "200.00"],
        ["totals", "4", "970.00", "110.00"],
    ]


async def test_the_openapi_document_names_every_group_key(played: Harness) -> None:
    spec = (await played.client.get("/openapi.json")).json()
    [group_by] = [parameter for parameter in spec["paths"]["/api/reports"]["get"]["parameters"]
                  if parameter["name"] == "group_by"]
    assert group_by["schema"]["description"] == (
        "Comma list of at most 3 distinct keys among day, hour, hour_of_day, day_of_week,"
        " cid, pid, event_id, status, reason, sub1, sub2, sub3, sub4, sub5, utm_source,"
        " utm_medium, utm_campaign, utm_term, utm_content")
