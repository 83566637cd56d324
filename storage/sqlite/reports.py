"""The SQL behind reports on SQLite: counts and exact sums per UTC time bucket and keys.

``raw_figures`` is exact for any period: each query reads one covering index (see
migration 5), so it never visits the table rows, but it still reads every row of the
period. ``rollup_figures`` reads the hourly roll-ups instead (storage/rollups.py), which
answer exactly whenever the period is whole UTC hours. Money is summed over the integer
millionth columns: exact sums.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from storage.reports import (
    Key,
    RawFigures,
    ReportSpan,
    bucket_select,
    hourly_span,
    split_rollups,
    with_leads,
)
from storage.rollups import FIGURES, NO_EVENT
from storage.sqlite.connection import connect_reader_sync

_filters = msgspec.json.Encoder()


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
    select, group = bucket_select(hourly, "hour")
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


def raw_figures(conn: sqlite3.Connection, span: ReportSpan) -> RawFigures:
    """Every count a report needs, read in one snapshot of the database.

    Blocking: run it in a thread, on a connection of its own, so a long report holds up
    neither the event loop nor the reads of the hot path.
    """
    conn.execute("BEGIN")  # one read transaction: the four queries agree
    try:
        leads = None
        if with_leads(span):
            select, group = bucket_select(span, "created_at")
            where, params = _where(span, "created_at", keys=("cid", "pid"))
            leads = conn.execute(
                f"SELECT {select}, count(*), coalesce(sum(cost_micro), 0)"
                f" FROM leads INDEXED BY leads_by_created WHERE {where} GROUP BY {group}",
                params).fetchall()
        select, group = bucket_select(span, "fired_at")
        where, params = _where(span, "fired_at")
        events = conn.execute(
            f"SELECT {select}, count(*) FROM events INDEXED BY events_by_fired"
            f" WHERE {where} GROUP BY {group}", params).fetchall()
        # Conversions that were approved (and may since have been reversed) count on their
        # conversion date; pending ones are shown apart; rejected ones never count.
        select, group = bucket_select(span, "converted_at")
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
        select, group = bucket_select(span, "changed_at", "c.", key_prefix="e.")
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
