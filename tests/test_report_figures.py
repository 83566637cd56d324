"""The figures a media buyer reads: roi, cpc, epc, the rate, status counts, CSV percentages."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from app.config.schema import parse_config, with_server_overrides
from app.reports.figures import Tally, figures
from app.reports.params import GROUP_KEYS
from tests.conftest import ADMIN_TOKEN, BACKENDS, Harness, error, running_on
from tests.test_reports import AUTH, Scenario

CONFIG = f"""
[server]
admin_token = "{ADMIN_TOKEN}"

[[sources]]
pid = "src_a"
payout = {{ type = "percent", value = 50 }}

[[campaigns]]
cid = "cmp_a"

[[campaigns.events]]
event_id = "visit"

[[campaigns.events]]
event_id = "sale"
conversion = true

[[campaigns.events]]
event_id = "lead_sold"
conversion = true
approval = "manual"
"""
DASHBOARD = Path(__file__).parent.parent / "app" / "static" / "dashboard" / "index.html"


async def play(harness: Harness) -> None:
    """One day, four clicks costing 5.50: a sale kept, a sale reversed, one pending, one
    rejected."""
    s = Scenario(harness)
    s.at("2026-11-28T12:00:00")
    kept, taken_back, waiting, refused = [await s.click("cmp_a", "src_a") for _ in range(4)]
    for transaction_id, cost in ((kept, 2), (taken_back, 2), (waiting, "1.50")):
        await s.fire(transaction_id, "cmp_a", "visit", "src_a", cost=cost)
    s.at("2026-11-28T13:00:00")
    await s.fire(kept, "cmp_a", "sale", "src_a", revenue=40)
    reversed_ = await s.fire(taken_back, "cmp_a", "sale", "src_a", revenue=60)
    await s.fire(waiting, "cmp_a", "lead_sold", "src_a", revenue=10)
    rejected = await s.fire(refused, "cmp_a", "lead_sold", "src_a", revenue=20)
    s.at("2026-11-28T14:00:00")
    await s.change(reversed_, "reverse")
    await s.change(rejected, "reject")


@pytest.fixture(params=BACKENDS)
async def played(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    config = with_server_overrides(parse_config(CONFIG, origin="test"), "test",
                                   db=str(tmp_path / "figures.db"))
    async with running_on(request, config) as harness:
        await play(harness)
        yield harness


async def report(api: Harness, **params: Any) -> Any:
    response = await api.client.get(
        "/api/reports", params={"from": "2026-11-28", "to": "2026-11-28"} | params,
        headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()["data"] if params.get("format") != "csv" else response.text


# net revenue 40.00, net payout 20.00, cost 5.50: profit 14.50 on 25.50 spent.
BUYER_FIGURES = {"clicks": 4, "conversions": 2, "net_revenue": "40.00", "net_payout": "20.00",
                 "cost": "5.50", "profit": "14.50", "conversion_rate": "0.5000",
                 "epc": "10.0000", "cpc": "1.3750", "roi": "0.5686",
                 "pending_conversions": 1}
NOT_ASKED = dict.fromkeys(
    ("approved_conversions", "reversed_conversions", "rejected_conversions"))


async def test_roi_cpc_epc_and_the_rate_of_a_known_day(played: Harness) -> None:
    data = await report(played)
    [row] = data["rows"]
    for found in (row, data["totals"]):
        assert {name: found[name] for name in BUYER_FIGURES} == BUYER_FIGURES
        # The status counts come from the rows, not the roll-ups: only when asked for.
        assert {name: found[name] for name in NOT_ASKED} == NOT_ASKED


async def test_status_counts_when_asked_for_count_rejected_ones_too(played: Harness) -> None:
    plain = await report(played, group_by="pid")
    counted = await report(played, group_by="pid", status_counts="true")
    counts = {"approved_conversions": 1, "reversed_conversions": 1,
              "rejected_conversions": 1}
    assert counted["rows"] == [plain["rows"][0] | counts]
    assert counted["totals"] == plain["totals"] | counts
    by_status = await report(played, group_by="status", status_counts="1")
    assert [(row["status"], row["conversions"], row["approved_conversions"],
             row["reversed_conversions"], row["pending_conversions"],
             row["rejected_conversions"]) for row in by_status["rows"]] == [
        ("approved", 1, 1, 0, 0, 0), ("pending", 0, 0, 0, 1, 0), ("rejected", 0, 0, 0, 0, 1),
        ("reversed", 1, 0, 1, 0, 0)]
    # Without them, a rejected conversion still counts nowhere.
    plain_status = await report(played, group_by="status")
    assert [row["status"] for row in plain_status["rows"]] == [
        "approved", "pending", "reversed"]


async def test_csv_shows_the_ratios_as_percentages(played: Harness) -> None:
    text = await report(played, format="csv", status_counts="true")
    header, line, totals, end = text.split("\r\n")
    columns = header.split(",")
    assert columns[columns.index("profit"):] == [
        "profit", "conversion_rate_pct", "epc", "cpc", "roi_pct", "approved_conversions",
        "reversed_conversions", "rejected_conversions"]
    assert dict(zip(columns, line.split(","), strict=True)) | {"day": "totals"} == dict(
        zip(columns, totals.split(","), strict=True))
    shown = dict(zip(columns, line.split(","), strict=True))
    assert [shown[name] for name in columns[columns.index("profit"):]] == [
        "14.50", "50.00", "10.0000", "1.3750", "56.86", "1", "1", "1"]
    assert end == ""


async def test_a_bad_status_counts_answers_400(played: Harness) -> None:
    response = await played.client.get(
        "/api/reports", params={"from": "2026-11-28", "to": "2026-11-28",
                                "status_counts": "maybe"}, headers=AUTH)
    assert response.status_code == 400
    assert response.json() == error(400, "Invalid status_counts",
                                    invalidFields={"status_counts": "Expected `bool`, got `str`"})


def test_roi_needs_something_spent() -> None:
    # 10.00 of revenue, nothing paid or spent: no return on nothing.
    free = figures(Tally(clicks=2, revenue=10_000_000), with_leads=True)
    assert (free["roi"], free["cpc"], free["epc"]) == (None, "0.0000", "5.0000")
    # A reversal took back more payout than the period paid: a negative spend, no roi.
    taken_back = figures(Tally(clicks=1, cost=1_000_000, reversed_payout=3_000_000,
                               reversed_revenue=6_000_000), with_leads=True)
    assert (taken_back["profit"], taken_back["roi"]) == ("-4.00", None)
    # Grouped by event or status there are no clicks: cpc is null and cost stays out of roi.
    by_event = figures(Tally(cost=1_000_000, revenue=9_000_000, payout=3_000_000),
                       with_leads=False)
    assert (by_event["cpc"], by_event["roi"], by_event["profit"]) == (None, "2.0000", "6.00")
    # 1.00 earned on 3.00 spent, to 4 decimals.
    third = figures(Tally(clicks=3, cost=1_000_000, revenue=4_000_000, payout=2_000_000,
                          conversions=1), with_leads=True)
    assert (third["roi"], third["conversion_rate"], third["cpc"]) == (
        "0.3333", "0.3333", "0.3333")


def test_the_dashboard_offers_every_group_key_the_api_accepts() -> None:
    picker = DASHBOARD.read_text().split('<select id="breakdown">')[1].split("</select>")[0]
    assert sorted(re.findall(r'<option value="([^"]+)"', picker)) == sorted(GROUP_KEYS)
