"""The report rules: raw counts folded into local days and hours, and every figure.

Definitions (docs/api.md's "Reports" section states them for users):

- clicks, cost: leads created in the period, by the lead's cid and pid;
- events: events fired in the period, by the event's pid;
- conversions, revenue, payout: conversions dated (``converted_at``) in the period that
  were approved, reversed ones included (they count on their own date, and come off
  again on the date of their reversal);
- reversals, reversed_revenue, reversed_payout: conversions reversed in the period;
- net_revenue, net_payout: the above less what was reversed;
- pending_conversions, pending_revenue: conversions dated in the period still pending;
- profit = net_revenue - net_payout - cost; conversion_rate = conversions / clicks and
  epc = net_revenue / clicks, to 4 decimals; cpc = cost / clicks, to 4 decimals;
- roi = profit / (net_payout + cost), a ratio to 4 decimals, null unless something was
  spent (a period whose reversals took back more payout than it paid has no roi);
- approved_conversions, reversed_conversions, rejected_conversions: conversions dated in
  the period by their status now (approved + reversed = conversions), counted from the
  rows, so only when asked for (``status_counts``): the roll-ups keep no status.

Leads have no event id: grouped or filtered by event id, clicks, cost, the rate and epc
are null and profit leaves cost out. Only conversions have a status and a hold reason:
grouped by either, the conversion figures are split by the conversion's status now and
the reason it was held ("none" when it was approved as it fired), and clicks, cost, the
rate, epc and events are null (profit leaves cost out).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from app.reports.limit import OTHER, bounded
from app.reports.params import TIME_KEYS, ReportParams
from storage.money import from_micro, money_text
from storage.reports import TAG_KEYS, RawFigures

_RATIO = Decimal("0.0001")
_MILLION = 1_000_000


@dataclass(slots=True)
class Tally:
    """Counts and amounts in millionths: integers, so adding them up is exact."""

    clicks: int = 0
    cost: int = 0
    events: int = 0
    conversions: int = 0
    revenue: int = 0
    payout: int = 0
    reversals: int = 0
    reversed_revenue: int = 0
    reversed_payout: int = 0
    pending_conversions: int = 0
    pending_revenue: int = 0
    approved_conversions: int = 0
    reversed_conversions: int = 0
    rejected_conversions: int = 0

    def add(self, other: Tally) -> None:
        for field in fields(self):
            name = field.name
            setattr(self, name, getattr(self, name) + getattr(other, name))


class Report(msgspec.Struct, kw_only=True):
    from_day: str = msgspec.field(name="from")
    to_day: str = msgspec.field(name="to")
    tz: str
    group_by: list[str]
    rows: list[dict[str, Any]]
    totals: dict[str, Any]
    # More groups than the limit: the smallest were folded into the last row (OTHER).
    truncated: bool = False


FIGURES: tuple[str, ...] = (
    "clicks", "events", "conversions", "revenue", "payout", "reversals", "reversed_revenue",
    "reversed_payout", "net_revenue", "net_payout", "pending_conversions", "pending_revenue",
    "cost", "profit", "conversion_rate", "epc", "cpc", "roi", "approved_conversions",
    "reversed_conversions", "rejected_conversions")
# The figures that are ratios: the CSV shows them as percentages, in a column named *_pct.
RATIOS = frozenset({"conversion_rate", "roi"})
STATUS_COUNTS = ("approved_conversions", "reversed_conversions", "rejected_conversions")


def figures(tally: Tally, *, with_leads: bool, with_events: bool = True,
            with_statuses: bool = False) -> dict[str, Any]:
    """Every figure of one row, money as exact text, ratios to 4 decimals or null."""
    net_revenue = tally.revenue - tally.reversed_revenue
    net_payout = tally.payout - tally.reversed_payout
    clicks = tally.clicks if with_leads else None
    cost = tally.cost if with_leads else 0
    profit = net_revenue - net_payout - cost
    statuses = {name: getattr(tally, name) if with_statuses else None
                for name in STATUS_COUNTS}
    return {
        "clicks": clicks,
        "events": tally.events if with_events else None,
        "conversions": tally.conversions,
        "revenue": _money(tally.revenue),
        "payout": _money(tally.payout),
        "reversals": tally.reversals,
        "reversed_revenue": _money(tally.reversed_revenue),
        "reversed_payout": _money(tally.reversed_payout),
        "net_revenue": _money(net_revenue),
        "net_payout": _money(net_payout),
        "pending_conversions": tally.pending_conversions,
        "pending_revenue": _money(tally.pending_revenue),
        "cost": _money(tally.cost) if with_leads else None,
        "profit": _money(profit),
        "conversion_rate": _ratio(Decimal(tally.conversions), clicks),
        "epc": _ratio(Decimal(net_revenue) / _MILLION, clicks),
        "cpc": _ratio(Decimal(cost) / _MILLION, clicks),
        "roi": _roi(profit, net_payout + cost),
    } | statuses


def _money(units: int) -> str:
    text = money_text(from_micro(units))
    assert text is not None
    return text


def _ratio(numerator: Decimal, clicks: int | None) -> str | None:
    if not clicks:
        return None
    return format((numerator / clicks).quantize(_RATIO, rounding=ROUND_HALF_EVEN), "f")


def _roi(profit: int, spent: int) -> str | None:
    # Nothing spent has no return; neither has a negative spend (reversals that took back
    # more payout than the period paid), whose ratio would turn a loss into a gain.
    if spent <= 0:
        return None
    return format((Decimal(profit) / spent).quantize(_RATIO, rounding=ROUND_HALF_EVEN), "f")


class _Buckets:
    """Local day and hour of each UTC bucket, computed once per distinct bucket."""

    def __init__(self, zone: ZoneInfo, keys: Sequence[str]) -> None:
        self._zone = zone
        self._keys = keys  # the time keys (params.TIME_KEYS), in the order asked for
        self._seen: dict[str, tuple[Any, ...]] = {}

    def local(self, bucket: str) -> tuple[Any, ...]:
        found = self._seen.get(bucket)
        if found is None:
            found = self._seen[bucket] = self._fold(bucket)
        return found

    def _fold(self, bucket: str) -> tuple[Any, ...]:
        if not bucket:
            return ()
        padded = bucket + ":00:00"[len(bucket) - 13:]
        moment = dt.datetime.fromisoformat(padded).replace(tzinfo=UTC).astimezone(self._zone)
        hour = moment.replace(minute=0, second=0, microsecond=0)
        # An hour sorts by its instant: a local hour repeats when clocks go back.
        named = {"day": moment.date().isoformat(),
                 "hour": (hour.astimezone(UTC), hour.isoformat(timespec="minutes")),
                 "hour_of_day": moment.hour, "day_of_week": moment.isoweekday()}
        return tuple(named[key] for key in self._keys)


def build(params: ReportParams, raw: RawFigures) -> Report:
    """Fold raw counts into the requested groups, sorted by their keys, with totals."""
    time_keys = [key for key in params.group_by if key in TIME_KEYS]
    sql_keys = [key for key in params.group_by if key not in TIME_KEYS]
    buckets = _Buckets(params.zone, time_keys)
    # Where each group key sits: in the folded time keys or among the SQL keys.
    order = [("time", time_keys.index(key)) if key in time_keys
             else ("sql", sql_keys.index(key)) for key in params.group_by]
    groups: dict[tuple[Any, ...], Tally] = {}

    def tally_of(row: tuple[Any, ...]) -> Tally:
        local = buckets.local(row[0])
        sql = row[1:1 + len(sql_keys)]
        key = tuple(local[index] if where == "time" else sql[index] for where, index in order)
        found = groups.get(key)
        if found is None:
            found = groups[key] = Tally()
        return found

    width = 1 + len(sql_keys)
    for row in raw.leads or ():
        tally = tally_of(row)
        tally.clicks += row[width]
        tally.cost += row[width + 1]
    for row in raw.events or ():
        tally_of(row).events += row[width]
    for row in raw.conversions:
        tally = tally_of(row)
        tally.conversions += row[width]
        tally.revenue += row[width + 1]
        tally.payout += row[width + 2]
        tally.pending_conversions += row[width + 3]
        tally.pending_revenue += row[width + 4]
        if params.status_counts:  # only the exact queries count these (see RawFigures)
            tally.approved_conversions += row[width + 5]
            tally.reversed_conversions += row[width + 6]
            tally.rejected_conversions += row[width + 7]
    for row in raw.reversals:
        tally = tally_of(row)
        tally.reversals += row[width]
        tally.reversed_revenue += row[width + 1]
        tally.reversed_payout += row[width + 2]

    shown_as = {"with_leads": raw.leads is not None, "with_events": raw.events is not None,
                "with_statuses": params.status_counts}
    total = Tally()
    rows = []
    kept, folded = bounded(groups, params.limit,
                           lambda tally: (tally.clicks, tally.conversions))
    for key in kept:
        total.add(groups[key])
        rows.append(_shown(params.group_by, key) | figures(groups[key], **shown_as))
    if folded:
        other = Tally()
        for tally in folded:
            other.add(tally)
        total.add(other)
        rows.append(dict.fromkeys(params.group_by, OTHER) | figures(other, **shown_as))
    return Report(from_day=params.first.isoformat(), to_day=params.last.isoformat(),
                  tz=params.tz, group_by=list(params.group_by), rows=rows,
                  totals=figures(total, **shown_as), truncated=bool(folded))


def _shown(group_by: Sequence[str], key: tuple[Any, ...]) -> dict[str, Any]:
    """A group's keys as a row shows them; a lead without a tracking field shows null."""
    return {name: value[1] if isinstance(value, tuple)
            else None if value == "" and name in TAG_KEYS else value
            for name, value in zip(group_by, key, strict=True)}
