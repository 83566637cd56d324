"""Reports equal a brute-force recomputation from the stored rows, in any zone, any grouping."""

from __future__ import annotations

import datetime as dt
import sqlite3
import tempfile
from collections import defaultdict
from contextlib import closing
from datetime import UTC
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from actors.clock import utc_text
from app.reports.figures import build
from app.reports.params import ReportParams
from app.reports.period import span_of
from storage.money import micro
from storage.sqlite.connection import prepare
from storage.sqlite.reports import read_figures

# Five weeks over Lord Howe's half-hour DST start (Oct 4) and New York's DST end (Nov 1).
EPOCH = dt.datetime(2026, 9, 30, tzinfo=UTC)
SPREAD = 35 * 24 * 60 * 60
ZONES = ["UTC", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "Asia/Kathmandu"]
KEYS = ["day", "hour", "cid", "pid", "event_id", "status", "reason"]

moments = st.integers(0, SPREAD).map(lambda s: EPOCH + dt.timedelta(seconds=s))
amounts = st.decimals(min_value=0, max_value=1000, places=6, allow_nan=False)
leads = st.lists(st.tuples(st.sampled_from(["c1", "c2"]), st.sampled_from(["p1", "p2"]),
                           moments, st.none() | amounts), min_size=1, max_size=12)
events = st.lists(st.tuples(
    st.integers(0, 11), st.sampled_from(["p1", "p2", "p3"]), st.sampled_from(["e1", "e2"]),
    moments, st.one_of(st.none(), *[st.tuples(
        moments, amounts, amounts,
        st.sampled_from(["approved", "pending", "rejected", "reversed", "reversed"]),
        moments,
        st.sampled_from([None, "manual_approval", "anonymous", "revenue_above_hold"]),
    )] * 3)),
    min_size=1, max_size=20)


def store(path: Path, lead_rows: list[Any], event_rows: list[Any]) -> None:
    prepare(path)
    with closing(sqlite3.connect(path)) as conn, conn:
        # A schema older than hold reasons has no column for them: its migration sets them.
        reasons = any(column[1] == "hold_reason"
                      for column in conn.execute("PRAGMA table_info(events)"))
        for n, (cid, pid, created, cost) in enumerate(lead_rows):
            conn.execute("INSERT INTO leads (transaction_id, cid, pid, fields, cost, created_at,"
                         " cost_micro) VALUES (?, ?, ?, '{}', ?, ?, ?)",
                         (f"t{n}", cid, pid, None if cost is None else str(cost),
                          utc_text(created), None if cost is None else micro(cost)))
        for n, (lead, pid, event_id, fired, conversion) in enumerate(event_rows):
            lead %= len(lead_rows)
            cid = lead_rows[lead][0]
            values: dict[str, Any] = {
                "transaction_id": f"t{lead}", "cid": cid, "event_id": event_id, "pid": pid,
                "once": 0, "conversion": 0, "fields": "{}", "fired_at": utc_text(fired)}
            if conversion is not None:
                converted, revenue, payout, status, changed, *held = conversion
                if held and reasons:
                    values["hold_reason"] = held[0]
                values |= {"conversion": 1, "conversion_id": f"v{n}", "status": status,
                           "revenue": str(revenue), "payout": str(payout),
                           "revenue_micro": micro(revenue), "payout_micro": micro(payout),
                           "converted_at": utc_text(converted)}
                if status == "reversed":
                    conn.execute(
                        "INSERT INTO conversion_changes (conversion_id, from_status, to_status,"
                        " source, changed_at) VALUES (?, 'approved', 'reversed', 'api', ?)",
                        (f"v{n}", utc_text(changed)))
            conn.execute(f"INSERT INTO events ({', '.join(values)}) VALUES"
                         f" ({', '.join('?' * len(values))})", list(values.values()))


def brute_force(path: Path, params: ReportParams) -> tuple[list[dict[str, Any]],
                                                           dict[str, Any]]:
    """Every row read one by one, in Python, from the text columns."""
    zone = ZoneInfo(params.tz)
    # Only conversions have a status and a hold reason.
    no_events = "status" in params.group_by or "reason" in params.group_by
    no_leads = "event_id" in params.group_by or bool(params.event_ids) or no_events
    sums: dict[tuple[Any, ...], dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))

    def local(text: str) -> dt.datetime | None:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(zone)
        return moment if params.first <= moment.date() <= params.last else None

    def bucket(moment: dt.datetime, keys: dict[str, str]) -> dict[str, Decimal]:
        hour = moment.replace(minute=0, second=0, microsecond=0)
        named = {"day": moment.date().isoformat(),
                 "hour": (hour.astimezone(UTC), hour.isoformat(timespec="minutes"))} | keys
        return sums[tuple(named[key] for key in params.group_by)]

    def wanted(cid: str, pid: str, event_id: str | None) -> bool:
        return ((not params.cids or cid in params.cids)
                and (not params.pids or pid in params.pids)
                and (not params.event_ids or event_id in params.event_ids))

    with closing(sqlite3.connect(path)) as conn:
        if not no_leads:
            for cid, pid, cost, created in conn.execute(
                    "SELECT cid, pid, cost, created_at FROM leads"):
                moment = local(created)
                if moment and wanted(cid, pid, None):
                    tally = bucket(moment, {"cid": cid, "pid": pid})
                    tally["clicks"] += 1
                    tally["cost"] += Decimal(cost or 0)
        for row in conn.execute(
                "SELECT cid, pid, event_id, fired_at, conversion, converted_at, status,"
                " revenue, payout, conversion_id, hold_reason FROM events"):
            (cid, pid, event_id, fired, conversion, converted, status, revenue, payout, cv,
             reason) = row
            if not wanted(cid, pid, event_id):
                continue
            keys = {"cid": cid, "pid": pid, "event_id": event_id, "status": status,
                    "reason": reason or "none"}
            if (moment := local(fired)) and not no_events:
                bucket(moment, keys)["events"] += 1
            if not conversion:
                continue
            if (moment := local(converted)) and status in ("approved", "reversed"):
                tally = bucket(moment, keys)
                tally["conversions"] += 1
                tally["revenue"] += Decimal(revenue)
                tally["payout"] += Decimal(payout)
            if (moment := local(converted)) and status == "pending":
                tally = bucket(moment, keys)
                tally["pending_conversions"] += 1
                tally["pending_revenue"] += Decimal(revenue)
            if (moment := local(converted)) and params.status_counts and status != "pending":
                bucket(moment, keys)[f"{status}_conversions"] += 1
            for (changed,) in conn.execute(
                    "SELECT changed_at FROM conversion_changes WHERE conversion_id = ?"
                    " AND to_status = 'reversed'", (cv,)):
                if moment := local(changed):
                    tally = bucket(moment, keys)
                    tally["reversals"] += 1
                    tally["reversed_revenue"] += Decimal(revenue)
                    tally["reversed_payout"] += Decimal(payout)
    rows = []
    total: dict[str, Decimal] = defaultdict(Decimal)
    for key in sorted(sums):
        for name, value in sums[key].items():
            total[name] += value
        shown = {name: part[1] if isinstance(part, tuple) else part
                 for name, part in zip(params.group_by, key, strict=True)}
        rows.append(shown | expected_figures(sums[key], no_leads, no_events,
                                             params.status_counts))
    return rows, expected_figures(total, no_leads, no_events, params.status_counts)


def expected_figures(tally: dict[str, Decimal], no_leads: bool,
                     no_events: bool = False, statuses: bool = False) -> dict[str, Any]:
    def money(amount: Decimal) -> str:
        text = format(amount.quantize(Decimal("0.000001")).normalize(), "f")
        whole, _, cents = text.partition(".")
        return f"{whole}.{cents.ljust(2, '0')}" if amount != 0 else "0.00"

    def ratio(amount: Decimal, clicks: Decimal) -> str | None:
        if no_leads or clicks == 0:
            return None
        return format((amount / clicks).quantize(Decimal("0.0001"), ROUND_HALF_EVEN), "f")

    counts = {name: int(tally[name]) for name in (
        "events", "conversions", "reversals", "pending_conversions")}
    net_revenue = tally["revenue"] - tally["reversed_revenue"]
    net_payout = tally["payout"] - tally["reversed_payout"]
    cost = Decimal(0) if no_leads else tally["cost"]
    spent = net_payout + cost
    profit = net_revenue - net_payout - cost
    return counts | {
        f"{status}_conversions": int(tally[f"{status}_conversions"]) if statuses else None
        for status in ("approved", "reversed", "rejected")} | {
        "events": None if no_events else counts["events"],
        "clicks": None if no_leads else int(tally["clicks"]),
        "revenue": money(tally["revenue"]), "payout": money(tally["payout"]),
        "reversed_revenue": money(tally["reversed_revenue"]),
        "reversed_payout": money(tally["reversed_payout"]),
        "net_revenue": money(net_revenue), "net_payout": money(net_payout),
        "pending_revenue": money(tally["pending_revenue"]),
        "cost": None if no_leads else money(tally["cost"]),
        "profit": money(profit),
        "conversion_rate": ratio(tally["conversions"], tally["clicks"]),
        "epc": ratio(net_revenue, tally["clicks"]),
        "cpc": ratio(tally["cost"], tally["clicks"]),
        "roi": format((profit / spent).quantize(Decimal("0.0001"), ROUND_HALF_EVEN), "f")
        if spent > 0 else None,
    }


@settings(derandomize=True, max_examples=150, deadline=None)
@given(lead_rows=leads, event_rows=events, zone=st.sampled_from(ZONES),
       group_by=st.lists(st.sampled_from(KEYS), min_size=1, max_size=3, unique=True),
       first=st.integers(0, 10), days=st.integers(1, 30),
       cids=st.sampled_from([(), (), ("c1",)]), pids=st.sampled_from([(), (), ("p1", "p3")]),
       event_ids=st.sampled_from([(), (), ("e2",)]), status_counts=st.booleans())
def test_report_equals_a_recount_of_the_stored_rows(
    lead_rows: list[Any], event_rows: list[Any], zone: str, group_by: list[str], first: int,
    days: int, cids: tuple[str, ...], pids: tuple[str, ...], event_ids: tuple[str, ...],
    status_counts: bool,
) -> None:
    start = EPOCH.date() + dt.timedelta(days=first)
    params = ReportParams(first=start, last=start + dt.timedelta(days=days - 1), tz=zone,
                          group_by=tuple(group_by), cids=cids, pids=pids,  # type: ignore[arg-type]
                          event_ids=event_ids, status_counts=status_counts)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "r.db"
        store(path, lead_rows, event_rows)
        found = build(params, read_figures(path, span_of(params)))
        rows, totals = brute_force(path, params)
    assert found.rows == rows
    assert found.totals == totals


CONVERSION_GROUPS = [("status", "reason"), ("day", "reason"), ("hour", "status"),
                     ("reason", "event_id", "pid"), ("status", "cid")]


@settings(derandomize=True, max_examples=60, deadline=None)
@given(lead_rows=leads, event_rows=events, zone=st.sampled_from(ZONES),
       pids=st.sampled_from([(), ("p1", "p3")]))
def test_reports_by_status_and_reason_equal_a_recount_of_the_stored_rows(
    lead_rows: list[Any], event_rows: list[Any], zone: str, pids: tuple[str, ...],
) -> None:
    first = EPOCH.date()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "r.db"
        store(path, lead_rows, event_rows)
        for group_by in CONVERSION_GROUPS:
            params = ReportParams(first=first, last=first + dt.timedelta(days=35), tz=zone,
                                  group_by=group_by, pids=pids)  # type: ignore[arg-type]
            found = build(params, read_figures(path, span_of(params)))
            rows, totals = brute_force(path, params)
            assert found.rows == rows
            assert found.totals == totals
