"""GET /api/reports on a fixed scenario: every figure, grouped each way, in two zones."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config.schema import parse_config, with_server_overrides
from tests.conftest import ADMIN_TOKEN, BACKENDS, Harness, error, running_on

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
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
event_id = "form_step"
allow_duplicates = true

[[campaigns.events]]
event_id = "sale"
conversion = true

[[campaigns.events]]
event_id = "lead_sold"
conversion = true
approval = "manual"

[[campaigns]]
cid = "cmp_b"

[[campaigns.events]]
event_id = "quote_viewed"

[[campaigns.events]]
event_id = "form_step"
allow_duplicates = true

[[campaigns.events]]
event_id = "lead_sold"
conversion = true
approval = "manual"
"""
FIGURES_ZERO: dict[str, Any] = {
    "clicks": 0, "events": 0, "conversions": 0, "revenue": "0.00", "payout": "0.00",
    "reversals": 0, "reversed_revenue": "0.00", "reversed_payout": "0.00",
    "pending_conversions": 0, "pending_revenue": "0.00", "cost": "0.00",
    # Counted only when asked for with status_counts.
    "approved_conversions": None, "reversed_conversions": None, "rejected_conversions": None}


def row(**given: Any) -> dict[str, Any]:
    """A report row: unnamed counts are zero; the net figures, cpc and roi follow from the
    named ones."""
    found = FIGURES_ZERO | given
    found["net_revenue"] = _text(Decimal(found["revenue"]) - Decimal(found["reversed_revenue"]))
    found["net_payout"] = _text(Decimal(found["payout"]) - Decimal(found["reversed_payout"]))
    return with_ratios(found)


def with_ratios(found: dict[str, Any]) -> dict[str, Any]:
    """cpc = cost / clicks and roi = profit / (net_payout + cost), as docs/api.md says."""
    clicks, cost = found["clicks"], found["cost"]
    found["cpc"] = _ratio(Decimal(cost) / clicks) if clicks else None
    if "profit" in found:
        spent = Decimal(found["net_payout"]) + Decimal(cost or 0)
        found["roi"] = _ratio(Decimal(found["profit"]) / spent) if spent > 0 else None
    return found


def _text(amount: Decimal) -> str:
    return format(amount.quantize(Decimal("0.01")), "f")


def _ratio(amount: Decimal) -> str:
    return format(amount.quantize(Decimal("0.0001")), "f")


class Scenario:
    def __init__(self, harness: Harness) -> None:
        self.api = harness
        self.clock = harness.clock

    def at(self, moment: str) -> None:
        target = datetime.fromisoformat(moment).replace(tzinfo=UTC)
        seconds = (target - self.clock.now()).total_seconds()
        assert seconds >= 0
        self.clock.advance(seconds)

    async def click(self, cid: str, pid: str) -> str:
        return await self.api.click(cid, pid=pid)

    async def fire(self, transaction_id: str, cid: str, event_id: str, pid: str,
                   expect: int = 200, **fields: Any) -> str:
        response = await self.api.client.post("/api/event/trigger", json={
            "cid": cid, "event_id": event_id, "transaction_id": transaction_id, "pid": pid,
            **fields})
        assert response.status_code == expect, response.text
        conversion_id: str = response.json().get("data", {}).get("conversion_id", "")
        return conversion_id

    async def change(self, conversion_id: str, action: str) -> None:
        response = await self.api.client.post(
            f"/api/conversions/{conversion_id}/{action}", headers=AUTH)
        assert response.status_code == 200, response.text


async def play(harness: Harness) -> None:
    """Five leads from two sources over three days (and one just after), in UTC."""
    s = Scenario(harness)
    s.at("2026-11-28T12:00:00")
    l1 = await s.click("cmp_a", "src_a")
    await s.fire(l1, "cmp_a", "quote_viewed", "src_a", cost=2.5)
    s.at("2026-11-28T15:00:00")
    l2 = await s.click("cmp_a", "src_b")
    # Converted at 23:30 EST on the 28th: the 29th in UTC.
    sale2 = await s.fire(l2, "cmp_a", "sale", "src_b", revenue=100,
                         conversion_date="2026-11-28 23:30:00", conversion_timezone="EST")
    s.at("2026-11-28T15:01:00")
    await s.fire(l2, "cmp_a", "sale", "src_b", expect=400, revenue=100)  # duplicate
    s.at("2026-11-29T02:00:00")
    l3 = await s.click("cmp_b", "src_a")
    await s.fire(l3, "cmp_b", "quote_viewed", "src_a", cost="1.25")
    s.at("2026-11-29T02:01:00")
    await s.fire(l3, "cmp_b", "form_step", "src_a", cost=3)
    s.at("2026-11-29T02:02:00")
    await s.fire(l3, "cmp_b", "form_step", "src_a", cost=1, cost_operation="subtract")
    s.at("2026-11-29T13:00:00")
    await s.fire(l1, "cmp_a", "sale", "src_a", revenue="45.10")
    s.at("2026-11-29T14:00:00")
    await s.fire(l3, "cmp_b", "lead_sold", "src_b", revenue=30)  # stays pending
    s.at("2026-11-30T01:00:00")
    await s.change(sale2, "reverse")
    s.at("2026-11-30T10:00:00")
    l4 = await s.click("cmp_a", "src_a")
    await s.fire(l4, "cmp_a", "quote_viewed", "src_a", cost=5, cost_operation="override")
    s.at("2026-11-30T10:05:00")
    sold4 = await s.fire(l4, "cmp_a", "lead_sold", "src_a", revenue=20)
    s.at("2026-11-30T10:10:00")
    await s.change(sold4, "reject")
    s.at("2026-11-30T11:00:00")
    await s.fire(l1, "cmp_a", "form_step", "src_a", cost=4, cost_operation="override")
    s.at("2026-12-01T02:00:00")  # the 30th in New York
    l5 = await s.click("cmp_b", "src_b")
    await s.fire(l5, "cmp_b", "quote_viewed", "src_b")


@pytest.fixture
async def played(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    """The scenario played on SQLite, or on PostgreSQL where a test asks for both."""
    config = with_server_overrides(parse_config(CONFIG, origin="test"), "test",
                                   db=str(tmp_path / "reports.db"))
    async with running_on(request, config) as harness:
        await play(harness)
        yield harness


# The report rules hold on both stores: the same scenario, the same figures.
both_stores = pytest.mark.parametrize("played", BACKENDS, indirect=True)


async def get(api: Harness, **params: Any) -> httpx.Response:
    query = {"from": "2026-11-28", "to": "2026-11-30"} | params
    return await api.client.get("/api/reports", params=query, headers=AUTH)


async def report(api: Harness, **params: Any) -> dict[str, Any]:
    response = await get(api, **params)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


UTC_DAYS = [
    {"day": "2026-11-28"} | row(clicks=2, cost="4.00", events=2, profit="-4.00",
                                conversion_rate="0.0000", epc="0.0000"),
    {"day": "2026-11-29"} | row(clicks=1, cost="3.25", events=5, conversions=2,
                                revenue="145.10", payout="35.05", pending_conversions=1,
                                pending_revenue="30.00", profit="106.80",
                                conversion_rate="2.0000", epc="145.1000"),
    {"day": "2026-11-30"} | row(clicks=1, cost="5.00", events=3, reversals=1,
                                reversed_revenue="100.00", reversed_payout="12.50",
                                profit="-92.50", conversion_rate="0.0000", epc="-100.0000"),
]
UTC_TOTALS = row(clicks=4, cost="12.25", events=10, conversions=2, revenue="145.10",
                 payout="35.05", reversals=1, reversed_revenue="100.00",
                 reversed_payout="12.50", pending_conversions=1, pending_revenue="30.00",
                 profit="10.30", conversion_rate="0.5000", epc="11.2750")


@both_stores
async def test_days_in_utc(played: Harness) -> None:
    data = await report(played)
    assert data == {"from": "2026-11-28", "to": "2026-11-30", "tz": "UTC",
                    "group_by": ["day"], "rows": UTC_DAYS, "totals": UTC_TOTALS,
                    "truncated": False}


@both_stores
async def test_days_in_new_york_move_what_falls_near_midnight(played: Harness) -> None:
    data = await report(played, tz="America/New_York")
    assert data["rows"] == [
        {"day": "2026-11-28"} | row(clicks=3, cost="7.25", events=5, conversions=1,
                                    revenue="100.00", payout="12.50", profit="80.25",
                                    conversion_rate="0.3333", epc="33.3333"),
        {"day": "2026-11-29"} | row(events=2, conversions=1, revenue="45.10",
                                    payout="22.55", pending_conversions=1,
                                    pending_revenue="30.00", reversals=1,
                                    reversed_revenue="100.00", reversed_payout="12.50",
                                    profit="-64.95", conversion_rate=None, epc=None),
        {"day": "2026-11-30"} | row(clicks=2, cost="5.00", events=4, profit="-5.00",
                                    conversion_rate="0.0000", epc="0.0000"),
    ]
    assert data["totals"] == row(
        clicks=5, cost="12.25", events=11, conversions=2, revenue="145.10", payout="35.05",
        reversals=1, reversed_revenue="100.00", reversed_payout="12.50",
        pending_conversions=1, pending_revenue="30.00", profit="10.30",
        conversion_rate="0.4000", epc="9.0200")
    assert data["tz"] == "America/New_York"


CIDS = [
    {"cid": "cmp_a"} | row(clicks=3, cost="9.00", events=6, conversions=2, revenue="145.10",
                           payout="35.05", reversals=1, reversed_revenue="100.00",
                           reversed_payout="12.50", profit="13.55",
                           conversion_rate="0.6667", epc="15.0333"),
    {"cid": "cmp_b"} | row(clicks=1, cost="3.25", events=4, pending_conversions=1,
                           pending_revenue="30.00", profit="-3.25",
                           conversion_rate="0.0000", epc="0.0000"),
]


@both_stores
async def test_by_campaign(played: Harness) -> None:
    data = await report(played, group_by="cid")
    assert data["rows"] == CIDS
    assert data["totals"] == UTC_TOTALS


@both_stores
async def test_by_source_counts_conversions_for_the_event_source(played: Harness) -> None:
    data = await report(played, group_by="pid")
    assert data["rows"] == [
        {"pid": "src_a"} | row(clicks=3, cost="12.25", events=8, conversions=1,
                               revenue="45.10", payout="22.55", profit="10.30",
                               conversion_rate="0.3333", epc="15.0333"),
        {"pid": "src_b"} | row(clicks=1, events=2, conversions=1, revenue="100.00",
                               payout="12.50", reversals=1, reversed_revenue="100.00",
                               reversed_payout="12.50", pending_conversions=1,
                               pending_revenue="30.00", profit="0.00",
                               conversion_rate="1.0000", epc="0.0000"),
    ]


NO_LEADS = {"clicks": None, "cost": None, "conversion_rate": None, "epc": None,
            "cpc": None}


@both_stores
async def test_by_event_leaves_clicks_and_cost_out(played: Harness) -> None:
    data = await report(played, group_by="event_id")
    assert data["rows"] == [
        {"event_id": "form_step"} | row(events=3, profit="0.00") | NO_LEADS,
        {"event_id": "lead_sold"} | row(events=2, pending_conversions=1,
                                        pending_revenue="30.00", profit="0.00") | NO_LEADS,
        {"event_id": "quote_viewed"} | row(events=3, profit="0.00") | NO_LEADS,
        {"event_id": "sale"} | row(events=2, conversions=2, revenue="145.10", payout="35.05",
                                   reversals=1, reversed_revenue="100.00",
                                   reversed_payout="12.50", profit="22.55") | NO_LEADS,
    ]
    assert data["totals"] == with_ratios(UTC_TOTALS | NO_LEADS | {"profit": "22.55"})


@both_stores
async def test_by_hour_in_new_york_and_by_day_and_campaign(played: Harness) -> None:
    hours = await report(played, group_by="hour", tz="America/New_York", to="2026-11-28")
    assert [(r["hour"], r["clicks"], r["events"], r["conversions"]) for r in hours["rows"]] == [
        ("2026-11-28T07:00-05:00", 1, 1, 0),
        ("2026-11-28T10:00-05:00", 1, 1, 0),
        ("2026-11-28T21:00-05:00", 1, 3, 0),
        ("2026-11-28T23:00-05:00", 0, 0, 1),
    ]
    assert hours["rows"][0] | {"hour": None} == {"hour": None} | row(
        clicks=1, cost="4.00", events=1, profit="-4.00", conversion_rate="0.0000",
        epc="0.0000")
    both = await report(played, group_by="cid,day")
    assert [(r["cid"], r["day"], r["clicks"], r["events"], r["profit"])
            for r in both["rows"]] == [
        ("cmp_a", "2026-11-28", 2, 2, "-4.00"),
        ("cmp_a", "2026-11-29", 0, 1, "110.05"),
        ("cmp_a", "2026-11-30", 1, 3, "-92.50"),
        ("cmp_b", "2026-11-29", 1, 4, "-3.25"),
    ]


@both_stores
async def test_filters_keep_only_the_named_campaigns_sources_and_events(
    played: Harness
) -> None:
    only_b = await report(played, group_by="cid", cid="cmp_b")
    assert only_b["rows"] == CIDS[1:]
    by_pid = await report(played, group_by="day", pid=["src_b"])
    assert [(r["day"], r["clicks"], r["events"], r["reversals"]) for r in by_pid["rows"]] == [
        ("2026-11-28", 1, 1, 0), ("2026-11-29", 0, 1, 0), ("2026-11-30", 0, 0, 1)]
    sales = await report(played, group_by="day", event_id="sale")
    assert sales["totals"]["clicks"] is None
    assert sales["totals"]["events"] == 2
    assert sales["totals"]["net_revenue"] == "45.10"


@both_stores
async def test_csv_has_the_same_columns_and_the_totals_last(played: Harness) -> None:
    response = await get(played, format="csv")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == (
        'attachment; filename="report-2026-11-28-2026-11-30.csv"')
    lines = response.text.split("\r\n")
    assert lines[0] == (
        "day,clicks,events,conversions,revenue,payout,reversals,reversed_revenue,"
        "reversed_payout,net_revenue,net_payout,pending_conversions,pending_revenue,cost,"
        "profit,conversion_rate_pct,epc,cpc,roi_pct,approved_conversions,"
        "reversed_conversions,rejected_conversions")
    # Ratios as percentages; the 30th's reversal took back more payout than it paid: no roi.
    assert lines[1:] == [
        "2026-11-28,2,2,0,0.00,0.00,0,0.00,0.00,0.00,0.00,0,0.00,4.00,-4.00,0.00,0.0000,"
        "2.0000,-100.00,,,",
        "2026-11-29,1,5,2,145.10,35.05,0,0.00,0.00,145.10,35.05,1,30.00,3.25,106.80,"
        "200.00,145.1000,3.2500,278.85,,,",
        "2026-11-30,1,3,0,0.00,0.00,1,100.00,12.50,-100.00,-12.50,0,0.00,5.00,-92.50,"
        "0.00,-100.0000,5.0000,,,,",
        "totals,4,10,2,145.10,35.05,1,100.00,12.50,45.10,22.55,1,30.00,12.25,10.30,"
        "50.00,11.2750,3.0625,29.60,,,",
        "",
    ]
    events = await get(played, format="csv", group_by="event_id,day", tz="America/New_York")
    assert events.text.split("\r\n")[-2] == (
        "totals,,,11,2,145.10,35.05,1,100.00,12.50,45.10,22.55,1,30.00,,22.55,,,,100.00,,,")


@pytest.mark.parametrize(("params", "field", "message"), [
    ({"from": "2026-11-31"}, "from", "Expected a real day, YYYY-MM-DD"),
    ({"from": "28/11/2026"}, "from", None),
    ({"to": "2026-11-27"}, "to", "Expected a day on or after from"),
    ({"from": "2024-12-31", "to": "2026-01-01"}, "to", "Expected at most 366 days from from"),
    ({"tz": "Mars/Olympus"}, "tz", "Expected an IANA time zone name"),
    ({"tz": "../../etc/passwd"}, "tz", "Expected an IANA time zone name"),
    ({"group_by": "week"}, "group_by", None),
    ({"group_by": "day,day"}, "group_by", None),
    ({"group_by": ""}, "group_by", None),
    ({"format": "xlsx"}, "format", None),
    ({"colour": "red"}, "colour", "Unknown parameter"),
    ({"from": "1969-12-31"}, "from", "Expected a day from 1970"),
])
async def test_bad_parameters_answer_400_naming_them(
    played: Harness, params: dict[str, str], field: str, message: str | None
) -> None:
    response = await get(played, **params)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["message"] == f"Invalid {field}"
    assert list(body["invalidFields"]) == [field]
    if message is not None:
        assert body == error(400, f"Invalid {field}", invalidFields={field: message})


async def test_period_is_required_and_the_token_too(played: Harness) -> None:
    response = await played.client.get("/api/reports", params={"to": "2026-11-30"},
                                       headers=AUTH)
    assert response.json() == error(400, "from is required", missingFields=["from"])
    response = await played.client.get("/api/reports",
                                       params={"from": "2026-11-28", "to": "2026-11-30"})
    assert response.status_code == 401


@both_stores
async def test_a_period_of_366_days_is_allowed(played: Harness) -> None:
    response = await get(played, **{"from": "2025-01-01", "to": "2026-01-01"})
    assert response.status_code == 200
    assert response.json()["data"]["rows"] == []
