"""The SQL behind reports: counts and exact sums per UTC time bucket and group keys.

``raw_figures`` is exact for any period: each query reads one covering index (see
migration 5), so it never visits the table rows, but it still reads every row of the
period. ``rollup_figures`` reads the hourly roll-ups instead (storage/rollups.py), which
answer exactly whenever the period is whole UTC hours. Times are grouped by a prefix of
their stored UTC text (``2026-11-28T17`` for an hour); the caller folds those buckets
into local days and hours. Money is summed over the integer millionth columns: exact sums.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import msgspec

from storage.connection import connect_reader_sync
from storage.rollups import FIGURES, NO_EVENT

Key = Literal["cid", "pid", "event_id"]
_filters = msgspec.json.Encoder()


class ReportSpan(msgspec.Struct, frozen=True, kw_only=True):
    """What to count: times in [start, end) (stored UTC text), grouped and filtered.

    ``width`` is how many leading characters of a time make its bucket: 13 for UTC hours,
    16 for minutes, 0 for no time buckets at all. ``hourly``: the period starts and ends
    on UTC hours and ``width`` is 13 or 0, so the hourly roll-ups answer it exactly.
    """

    start: str
    end: str
    width: int
    hourly: bool = False
    keys: tuple[Key, ...] = ()
    cids: tuple[str, ...] = ()
    pids: tuple[str, ...] = ()
    event_ids: tuple[str, ...] = ()


class RawFigures(msgspec.Struct, frozen=True, kw_only=True):
    """Rows of (bucket, *keys, *counts) from each source; see the queries for the counts."""

    leads: list[tuple[Any, ...]] | None  # None: leads do not apply (event ids in play)
    events: list[tuple[Any, ...]]
    conversions: list[tuple[Any, ...]]
    reversals: list[tuple[Any, ...]]


def _select(span: ReportSpan, time_column: str, prefix: str = "",
            key_prefix: str | None = None) -> tuple[str, str]:
    """The bucket-and-keys select list and its GROUP BY."""
    bucket = f"substr({prefix}{time_column}, 1, {span.width})" if span.width else "''"
    key_prefix = prefix if key_prefix is None else key_prefix
    columns = [bucket, *(f"{key_prefix}{key}" for key in span.keys)]
    group = ", ".join(str(n) for n in range(1, len(columns) + 1))
    return ", ".join(columns), group


def _where(span: ReportSpan, time_column: str, prefix: str = "",
           keys: Sequence[Key] = ("cid", "pid", "event_id"),
           key_prefix: str | None = None) -> tuple[str, list[Any]]:
    """The period, and the filters on ``keys`` (read from ``key_prefix``'s table)."""
    clauses = [f"{prefix}{time_column} >= ?", f"{prefix}{time_column} < ?"]
    params: list[Any] = [span.start, span.end]
    key_prefix = prefix if key_prefix is None else key_prefix
    for key, values in (("cid", span.cids), ("pid", span.pids), ("event_id", span.event_ids)):
        if values and key in keys:
            clauses.append(f"{key_prefix}{key} IN (SELECT value FROM json_each(?))")
            params.append(_filters.encode(list(values)).decode())
    return " AND ".join(clauses), params


def read_figures(path: str | Path, span: ReportSpan) -> RawFigures:
    """``raw_figures`` on a connection opened for it (blocking)."""
    conn = connect_reader_sync(path)
    try:
        return raw_figures(conn, span)
    finally:
        conn.close()


def read_report_figures(path: str | Path, span: ReportSpan) -> RawFigures:
    """The figures from the hourly roll-ups where they answer exactly, else from the rows."""
    conn = connect_reader_sync(path)
    try:
        return rollup_figures(conn, span) if span.hourly else raw_figures(conn, span)
    finally:
        conn.close()


def rollup_figures(conn: sqlite3.Connection, span: ReportSpan) -> RawFigures:
    """What ``raw_figures`` gives for an hourly span, summed from the ``stats`` rows.

    One query reads every figure; ``split_rollups`` splits its rows into the four sources.
    """
    hourly = hourly_span(span)
    select, group = _select(hourly, "hour")
    where, params = _where(hourly, "hour")
    if not with_leads(span):
        where += f" AND event_id != '{NO_EVENT}'"
    rows = conn.execute(
        f"SELECT {select}, {', '.join(f'sum({name})' for name in FIGURES)}"
        f" FROM stats WHERE {where} GROUP BY {group}", params).fetchall()
    # SQLite turns an integer sum past 64 bits into a float, in the roll-ups' upsert as in
    # this sum: never report that. The rows' own sums are exact, or refused loudly
    # ("integer overflow").
    if any(isinstance(value, float) for row in rows for value in row):
        return raw_figures(conn, span)
    return split_rollups(span, rows)


def hourly_span(span: ReportSpan) -> ReportSpan:
    """``span`` with its ends cut to the hours the ``stats`` rows are keyed by."""
    if not span.hourly or span.width not in (0, 13):
        raise ValueError("the roll-ups hold whole UTC hours only")
    return msgspec.structs.replace(span, start=span.start[:13], end=span.end[:13])


def with_leads(span: ReportSpan) -> bool:
    """Leads have no event id: they count unless event ids are grouped or filtered."""
    return "event_id" not in span.keys and not span.event_ids


def split_rollups(span: ReportSpan, rows: Sequence[Sequence[Any]]) -> RawFigures:
    """Rows of (bucket, *keys, *FIGURES) summed from ``stats``, as the four sources.

    A group shows up in a source only where that source counted something in it, as the
    exact queries would have found it (counts are never negative).
    """
    width = 1 + len(span.keys)
    leads, events, conversions, reversals = [], [], [], []
    for row in rows:
        keys, (clicks, cost, fired, converted, revenue, payout, pending, pending_revenue,
               reversed_, reversed_revenue, reversed_payout) = row[:width], row[width:]
        if clicks:
            leads.append((*keys, clicks, cost))
        if fired:
            events.append((*keys, fired))
        if converted or pending:
            conversions.append((*keys, converted, revenue, payout, pending, pending_revenue))
        if reversed_:
            reversals.append((*keys, reversed_, reversed_revenue, reversed_payout))
    return RawFigures(leads=leads if with_leads(span) else None, events=events,
                      conversions=conversions, reversals=reversals)


def raw_figures(conn: sqlite3.Connection, span: ReportSpan) -> RawFigures:
    """Every count a report needs, read in one snapshot of the database.

    Blocking: run it in a thread, on a connection of its own, so a long report holds up
    neither the event loop nor the reads of the hot path.
    """
    conn.execute("BEGIN")  # one read transaction: the four queries agree
    try:
        leads = None
        if with_leads(span):
            select, group = _select(span, "created_at")
            where, params = _where(span, "created_at", keys=("cid", "pid"))
            leads = conn.execute(
                f"SELECT {select}, count(*), coalesce(sum(cost_micro), 0)"
                f" FROM leads INDEXED BY leads_by_created WHERE {where} GROUP BY {group}",
                params).fetchall()
        select, group = _select(span, "fired_at")
        where, params = _where(span, "fired_at")
        events = conn.execute(
            f"SELECT {select}, count(*) FROM events INDEXED BY events_by_fired"
            f" WHERE {where} GROUP BY {group}", params).fetchall()
        # Conversions that were approved (and may since have been reversed) count on their
        # conversion date; pending ones are shown apart; rejected ones never count.
        select, group = _select(span, "converted_at")
        where, params = _where(span, "converted_at")
        conversions = conn.execute(
            f"SELECT {select},"
            " sum(status IN ('approved', 'reversed')),"
            " coalesce(sum(CASE WHEN status IN ('approved', 'reversed')"
            "              THEN revenue_micro END), 0),"
            " coalesce(sum(CASE WHEN status IN ('approved', 'reversed')"
            "              THEN payout_micro END), 0),"
            " sum(status = 'pending'),"
            " coalesce(sum(CASE WHEN status = 'pending' THEN revenue_micro END), 0)"
            " FROM events INDEXED BY events_by_converted"
            f" WHERE conversion = 1 AND status != 'rejected' AND {where} GROUP BY {group}",
            params).fetchall()
        # Reversals count when they happened, against the conversion's own keys.
        select, group = _select(span, "changed_at", "c.", key_prefix="e.")
        where, params = _where(span, "changed_at", "c.", key_prefix="e.")
        reversals = conn.execute(
            f"SELECT {select}, count(*), coalesce(sum(e.revenue_micro), 0),"
            " coalesce(sum(e.payout_micro), 0)"
            " FROM conversion_changes AS c INDEXED BY conversion_changes_by_changed"
            " JOIN events AS e ON e.conversion_id = c.conversion_id"
            f" WHERE c.to_status = 'reversed' AND {where} GROUP BY {group}",
            params).fetchall()
    finally:
        conn.execute("COMMIT")
    return RawFigures(leads=leads, events=events, conversions=conversions,
                      reversals=reversals)
