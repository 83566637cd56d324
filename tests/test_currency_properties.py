"""Sales in random currencies against a random rate timeline: every answer, stored
conversion and report figure equals a recomputation that converts each sale by hand,
by day in any of the report zones and by the lead's sub1, from the rows or (with the
field in [reports] breakdowns) from its roll-ups."""

from __future__ import annotations

import asyncio
import datetime as dt
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from app.config.schema import parse_config, with_server_overrides
from storage.money import percent_of, round_money
from tests.conftest import ADMIN_TOKEN, CID, PID, TEST_CONFIG, running, with_campaign
from tests.test_report_properties import ZONES

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
FIRST = dt.date(2026, 11, 1)
PAYOUTS = {PID: lambda revenue: percent_of(revenue, Decimal(50)),
           "src_fixed": lambda revenue: Decimal("12.50")}

amounts = st.decimals(min_value=0, max_value=100_000, places=6, allow_nan=False)
rates = st.decimals(min_value=Decimal("0.0001"), max_value=1000, places=4, allow_nan=False)
# Each currency's timeline: its rates from days of November on.
timelines = st.fixed_dictionaries({
    code: st.dictionaries(st.integers(0, 29), rates, max_size=4) for code in ("EUR", "GBP")})
sales = st.lists(st.tuples(
    st.sampled_from([None, "USD", "EUR", "GBP"]), amounts,
    # From the day before the month to a week past it: some days have no rate yet.
    st.integers(-1, 36).map(lambda n: FIRST + dt.timedelta(days=n)),
    st.sampled_from(sorted(PAYOUTS)), st.sampled_from(["a", "b", "c"])),
    min_size=1, max_size=12)
Sale = tuple[str | None, Decimal, dt.date, str, str]


def rate_on(timeline: dict[int, Decimal], day: dt.date) -> Decimal | None:
    """The reference rule: the entry with the latest day on or before ``day``."""
    days = [n for n in timeline if FIRST + dt.timedelta(days=n) <= day]
    return timeline[max(days)] if days else None


def config_text(timeline: dict[str, dict[int, Decimal]], rolled_up: bool) -> str:
    text = TEST_CONFIG + '[reports]\ncurrency = "USD"\n'
    if rolled_up:
        text += 'breakdowns = ["sub1"]\n'
    for code, entries in timeline.items():
        for n, rate in entries.items():
            text += (f'[[rates]]\ncurrency = "{code}"\nrate = "{rate}"\n'
                     f"from = {FIRST + dt.timedelta(days=n)}\n")
    return text


async def play(db: Path, timeline: dict[str, dict[int, Decimal]], played: list[Sale],
               zone: str, rolled_up: bool) -> None:
    config = with_server_overrides(parse_config(config_text(timeline, rolled_up), origin="t"),
                                   "t", db=str(db))
    async with running(with_campaign(config, CID, strict_fields=False)) as api:
        expected: dict[str, tuple[Decimal, Decimal, Any, Any, Any]] = {}
        # (local day, sub1) -> [conversions, revenue, payout], worked out by hand.
        by_day: dict[tuple[str, str], list[Any]] = {}
        for currency, sent, day, pid, sub1 in played:
            rate = None
            if currency in ("EUR", "GBP"):
                rate = rate_on(timeline[currency], day)
            transaction_id = await api.click(pid=pid, sub1=sub1)
            fields = {"pid": pid, "revenue": str(sent), "conversion_date": str(day)}
            if currency is not None:
                fields["currency"] = currency
            response = await api.fire(transaction_id, "sale_completed", **fields)
            if currency in ("EUR", "GBP") and rate is None:
                assert (response.status_code, response.json()["message"]) == (
                    400, "Invalid currency")
                continue
            assert response.status_code == 200, response.text
            revenue = round_money(sent * rate) if rate is not None else round_money(sent)
            expected[response.json()["data"]["conversion_id"]] = (
                revenue, PAYOUTS[pid](revenue),
                *((str(round_money(sent)), currency, str(rate)) if rate else (None,) * 3))
            # A conversion_date without a timezone is midnight UTC.
            local = dt.datetime.combine(day, dt.time(), dt.UTC).astimezone(ZoneInfo(zone))
            cell = by_day.setdefault((local.date().isoformat(), sub1), [0, Decimal(0),
                                                                         Decimal(0)])
            cell[0] += 1
            cell[1] += revenue
            cell[2] += PAYOUTS[pid](revenue)
        listed = (await api.client.get("/api/conversions", params={"limit": 500},
                                       headers=AUTH)).json()["data"]["conversions"]
        assert {view["conversion_id"]: (
            Decimal(view["revenue"]), Decimal(view["payout"]), view.get("original_revenue"),
            view.get("currency"), view.get("rate")) for view in listed} == expected
        report = await api.client.get("/api/reports", headers=AUTH, params={
            "from": "2026-10-31", "to": "2026-12-08", "group_by": "pid"})
        assert report.status_code == 200, report.text
        totals = report.json()["data"]["totals"]
        assert Decimal(totals["revenue"]) == sum((r for r, *_ in expected.values()), Decimal(0))
        assert Decimal(totals["payout"]) == sum((p for _, p, *_ in expected.values()),
                                                Decimal(0))
        daily = await api.client.get("/api/reports", headers=AUTH, params={
            "from": "2026-10-30", "to": "2026-12-09", "group_by": "day,sub1", "tz": zone})
        assert daily.status_code == 200, daily.text
        assert {(row["day"], row["sub1"]): [row["conversions"], Decimal(row["revenue"]),
                                            Decimal(row["payout"])]
                for row in daily.json()["data"]["rows"] if row["conversions"]} == by_day


@settings(max_examples=25, deadline=None, derandomize=True)
@given(timeline=timelines, played=sales, zone=st.sampled_from(ZONES), rolled_up=st.booleans())
def test_reports_and_conversions_match_sales_converted_by_hand(
        timeline: dict[str, dict[int, Decimal]], played: list[Sale], zone: str,
        rolled_up: bool) -> None:
    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(play(Path(directory) / "events.db", timeline, played, zone, rolled_up))
