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
    COUNT,
    SPLIT,
    Key,
    RawFigures,
    ReportRows,
    ReportSpan,
    TagKey,
    bucket_select,
    fold,
    hourly_span,
    split_sum,
    tag_rolled_up,
    tagged,
    with_events,
    with_leads,
)
from storage.rollups import FIGURES, MONEY, NO_EVENT
from storage.sqlite.connection import connect_reader_sync
from storage.sqlite.rollups import READ_SHAPE
from storage.sqlite.tag_rollups import kept, tag_sql

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


def rolled_up(span: ReportSpan) -> bool:
    """The roll-ups answer ``span`` exactly: whole UTC hours, keys they keep."""
    return span.hourly and not tagged(span)


def read_figures(path: str | Path, span: ReportSpan) -> RawFigures:
    """``raw_figures`` on a connection opened for it (blocking)."""
    conn = connect_reader_sync(path)
    try:
        return raw_figures(conn, span)
    finally:
        conn.close()


def read_report_figures(path: str | Path, span: ReportSpan) -> RawFigures:
    """The figures from the hourly roll-ups where they answer exactly, else from the rows."""
    return fold(span, read_report_rows(path, span))


def read_report_rows(path: str | Path, span: ReportSpan) -> ReportRows:
    """What ``read_report_figures`` reads, before it is folded (blocking)."""
    conn = connect_reader_sync(path)
    try:
        if rolled_up(span):
            return rollup_rows(conn, span)
        if tag_rolled_up(span) is not None:
            return tag_rollup_rows(conn, span) or raw_rows(conn, span)
        return raw_rows(conn, span)
    finally:
        conn.close()


def rollup_figures(conn: sqlite3.Connection, span: ReportSpan) -> RawFigures:
    """What ``raw_figures`` gives for an hourly span, summed from the ``stats`` rows."""
    return fold(span, rollup_rows(conn, span))


def _summed(conn: sqlite3.Connection, span: ReportSpan, table: str,
            tag: TagKey | None = None) -> list[Any]:
    """The rows of ``table`` in an hourly span, summed per bucket and keys: one query
    reads every figure, each money figure as its low part's two split sums and its high
    part's sum. ``tag``: ``tag_stats``'s rows of that field, its value as the key."""
    hourly = hourly_span(span)
    select, group = bucket_select(hourly, "hour", tag=lambda key: "value")
    where, params = _where(hourly, "hour")
    if tag is not None:
        where += " AND field = ?"
        params.append(tag)
    if not with_leads(span):
        where += f" AND event_id != '{NO_EVENT}'"
    sums = ", ".join(f"{split_sum(name)}, sum({name}_high)" if name in MONEY
                     else f"sum({name})" for name in FIGURES)
    return conn.execute(f"SELECT {select}, {sums} FROM {table} WHERE {where}"
                        f" GROUP BY {group}", params).fetchall()


def rollup_rows(conn: sqlite3.Connection, span: ReportSpan) -> ReportRows:
    """The ``stats`` rows of an hourly span, summed per bucket and keys (``split_rollups``
    splits them into the four sources)."""
    rows = _summed(conn, span, "stats")
    # A float is a cell an older version overflowed (migration 7 recounts those): never
    # report it, answer from the rows.
    if any(float in map(type, row) for row in rows):
        return raw_rows(conn, span)
    return ReportRows(shapes={"rollups": READ_SHAPE}, rollups=rows)


def tag_rollup_rows(conn: sqlite3.Connection, span: ReportSpan) -> ReportRows | None:
    """The ``tag_stats`` rows of an hourly span by one kept tracking field, like
    ``rollup_rows``; None when the field is not kept (then the rows answer)."""
    tag = tag_rolled_up(span)
    if tag is None:
        raise ValueError("the tag roll-ups answer a span by one tracking field only")
    conn.execute("BEGIN")  # one snapshot: the field is kept whole for the rows read
    try:
        if tag not in kept(conn):
            return None
        rows = _summed(conn, span, "tag_stats", tag)
    finally:
        conn.execute("COMMIT")
    return ReportRows(shapes={"rollups": READ_SHAPE}, rollups=rows)


def raw_figures(conn: sqlite3.Connection, span: ReportSpan) -> RawFigures:
    """Every count a report needs, read in one snapshot of the database.

    Blocking: run it in a thread, on a connection of its own, so a long report holds up
    neither the event loop nor the reads of the hot path.
    """
    return fold(span, raw_rows(conn, span))


# How the raw queries' figures join: split_sum's two columns for money.
_RAW_SHAPES = {"leads": (COUNT, SPLIT), "conversions": (COUNT, SPLIT, SPLIT, COUNT, SPLIT),
               "reversals": (COUNT, SPLIT, SPLIT)}
# Asked for with the status counts: each conversion by its status now, rejected ones too.
_STATUS_COUNTS = (", sum(status = 'approved'), sum(status = 'reversed'),"
                  " sum(status = 'rejected')")


def raw_rows(conn: sqlite3.Connection, span: ReportSpan) -> ReportRows:
    """The four queries of ``raw_figures``, in one read transaction."""
    conn.execute("BEGIN")  # one read transaction: the four queries agree
    try:
        leads = None
        if with_leads(span):
            select, group = bucket_select(span, "created_at", tag=tag_sql(None))
            where, params = _where(span, "created_at", keys=("cid", "pid"))
            leads = conn.execute(
                f"SELECT {select}, count(*), {split_sum('cost_micro')}"
                f" FROM leads INDEXED BY leads_by_created WHERE {where} GROUP BY {group}",
                params).fetchall()
        events = None
        if with_events(span):
            select, group = bucket_select(span, "fired_at", tag=tag_sql("events"))
            where, params = _where(span, "fired_at")
            events = conn.execute(
                f"SELECT {select}, count(*) FROM events INDEXED BY events_by_fired"
                f" WHERE {where} GROUP BY {group}", params).fetchall()
        # Conversions that were approved (and may since have been reversed) count on their
        # conversion date; pending ones are shown apart; rejected ones count only in
        # rejected_conversions, asked for with the status counts.
        select, group = bucket_select(span, "converted_at", tag=tag_sql("events"))
        where, params = _where(span, "converted_at")
        if not span.status_counts:
            where += " AND status != 'rejected'"
        counted, pending = "status IN ('approved', 'reversed')", "status = 'pending'"
        conversions = conn.execute(
            f"SELECT {select}, sum({counted}),"
            f" {split_sum(f'CASE WHEN {counted} THEN revenue_micro END')},"
            f" {split_sum(f'CASE WHEN {counted} THEN payout_micro END')},"
            f" sum({pending}),"
            f" {split_sum(f'CASE WHEN {pending} THEN revenue_micro END')}"
            f"{_STATUS_COUNTS if span.status_counts else ''}"
            " FROM events INDEXED BY events_by_converted"
            f" WHERE conversion = 1 AND {where} GROUP BY {group}",
            params).fetchall()
        # Reversals count when they happened, against the conversion's own keys.
        select, group = bucket_select(span, "changed_at", "c.", key_prefix="e.",
                                      tag=tag_sql("e"))
        where, params = _where(span, "changed_at", "c.", key_prefix="e.")
        reversals = conn.execute(
            f"SELECT {select}, count(*), {split_sum('e.revenue_micro')},"
            f" {split_sum('e.payout_micro')}"
            " FROM conversion_changes AS c INDEXED BY conversion_changes_by_changed"
            " JOIN events AS e ON e.conversion_id = c.conversion_id"
            f" WHERE c.to_status = 'reversed' AND {where} GROUP BY {group}",
            params).fetchall()
    finally:
        conn.execute("COMMIT")
    shapes = _RAW_SHAPES if not span.status_counts else _RAW_SHAPES | {
        "conversions": (*_RAW_SHAPES["conversions"], COUNT, COUNT, COUNT)}
    return ReportRows(shapes=shapes, leads=leads, events=events,
                      conversions=conversions, reversals=reversals)
