"""The SQL behind reports on PostgreSQL: storage/sqlite/reports.py's queries in its dialect.

The same rows come back as on SQLite: the hourly roll-ups when the span is whole UTC hours,
the exact queries over the raw rows otherwise. Times are compared as "C" text (byte by
byte, like SQLite and like the indexes of migration 3), whatever the database's locale.
Sums are numeric, exact at any size, and come back as Python integers of millionths.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from storage.postgres.tag_rollups import kept, tag_sql
from storage.reports import (
    COUNT,
    Key,
    RawFigures,
    ReportRows,
    ReportSpan,
    TagKey,
    bucket_select,
    fold,
    hourly_span,
    tag_rolled_up,
    tagged,
    with_events,
    with_leads,
)
from storage.rollups import FIGURES, NO_EVENT

Connection = asyncpg.Connection | PoolConnectionProxy


class _Where:
    """A WHERE clause and its numbered parameters."""

    def __init__(self) -> None:
        self.clauses: list[str] = []
        self.params: list[Any] = []

    def add(self, clause: str, *values: Any) -> None:
        numbers = [f"${len(self.params) + n}" for n in range(1, len(values) + 1)]
        self.clauses.append(clause.format(*numbers))
        self.params.extend(values)

    @property
    def sql(self) -> str:
        return " AND ".join(self.clauses)


def _where(span: ReportSpan, time_column: str, prefix: str = "",
           keys: Sequence[Key] = ("cid", "pid", "event_id"),
           key_prefix: str | None = None) -> _Where:
    """The period, and the filters on ``keys`` (read from ``key_prefix``'s table)."""
    where = _Where()
    where.add(f'{prefix}{time_column} COLLATE "C" >= {{}}', span.start)
    where.add(f'{prefix}{time_column} COLLATE "C" < {{}}', span.end)
    key_prefix = prefix if key_prefix is None else key_prefix
    for key, values in (("cid", span.cids), ("pid", span.pids), ("event_id", span.event_ids)):
        if values and key in keys:
            where.add(f"{key_prefix}{key} = ANY({{}}::text[])", list(values))
    return where


def rolled_up(span: ReportSpan) -> bool:
    """The roll-ups answer ``span`` exactly: whole UTC hours, keys they keep."""
    return span.hourly and not tagged(span)


async def _rows(conn: Connection, sql: str, where: _Where) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in await conn.fetch(sql, *where.params)]


async def report_figures(conn: Connection, span: ReportSpan) -> RawFigures:
    """The figures from the hourly roll-ups where they answer exactly, else from the rows."""
    return fold(span, await report_rows(conn, span))


async def report_rows(conn: Connection, span: ReportSpan) -> ReportRows:
    """What ``report_figures`` reads, before it is folded."""
    if rolled_up(span):
        return await rollup_rows(conn, span)
    if tag_rolled_up(span) is not None:
        return await tag_rollup_rows(conn, span) or await raw_rows(conn, span)
    return await raw_rows(conn, span)


async def rollup_figures(conn: Connection, span: ReportSpan) -> RawFigures:
    """What ``raw_figures`` gives for an hourly span, summed from the ``stats`` rows."""
    return fold(span, await rollup_rows(conn, span))


async def raw_figures(conn: Connection, span: ReportSpan) -> RawFigures:
    """Every count a report needs, read in one snapshot of the database."""
    return fold(span, await raw_rows(conn, span))


# Every sum is one exact column (numeric or bigint) on PostgreSQL.
_RAW_SHAPES = {"leads": (COUNT,) * 2, "conversions": (COUNT,) * 5, "reversals": (COUNT,) * 3}
# Asked for with the status counts: each conversion by its status now, rejected ones too.
_STATUS_COUNTS = "".join(f", count(*) FILTER (WHERE status = '{status}')"
                         for status in ("approved", "reversed", "rejected"))


async def _summed(conn: Connection, span: ReportSpan, table: str,
                  tag: TagKey | None = None) -> list[tuple[Any, ...]]:
    """The rows of ``table`` in an hourly span, summed per bucket and keys. ``tag``:
    ``tag_stats``'s rows of that field, its value as the key."""
    hourly = hourly_span(span)
    select, group = bucket_select(hourly, "hour", tag=lambda key: "value")
    where = _where(hourly, "hour")
    if tag is not None:
        where.add("field = {}", tag)
    if not with_leads(span):
        where.add(f"event_id != '{NO_EVENT}'")
    sums = ", ".join(f"sum({name})" for name in FIGURES)
    return await _rows(conn, f"SELECT {select}, {sums} FROM {table} WHERE {where.sql}"
                             f" GROUP BY {group}", where)


async def rollup_rows(conn: Connection, span: ReportSpan) -> ReportRows:
    """The ``stats`` rows of an hourly span, summed per bucket and keys."""
    return ReportRows(shapes={"rollups": (COUNT,) * len(FIGURES)},
                      rollups=await _summed(conn, span, "stats"))


async def tag_rollup_rows(conn: Connection, span: ReportSpan) -> ReportRows | None:
    """The ``tag_stats`` rows of an hourly span by one kept tracking field, like
    ``rollup_rows``; None when the field is not kept (then the rows answer)."""
    tag = tag_rolled_up(span)
    if tag is None:
        raise ValueError("the tag roll-ups answer a span by one tracking field only")
    # One snapshot: the field is kept whole for the rows read.
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        if tag not in await kept(conn):
            return None
        rows = await _summed(conn, span, "tag_stats", tag)
    return ReportRows(shapes={"rollups": (COUNT,) * len(FIGURES)}, rollups=rows)


async def raw_rows(conn: Connection, span: ReportSpan) -> ReportRows:
    """The four queries of ``raw_figures``, in one snapshot."""
    counted = "status IN ('approved', 'reversed')"
    # Repeatable read: the four queries see one snapshot, so they agree.
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        leads = None
        if with_leads(span):
            select, group = bucket_select(span, "created_at", tag=tag_sql(None))
            where = _where(span, "created_at", keys=("cid", "pid"))
            leads = await _rows(
                conn, f"SELECT {select}, count(*), coalesce(sum(cost_micro), 0)"
                      f" FROM leads WHERE {where.sql} GROUP BY {group}", where)
        events = None
        if with_events(span):
            select, group = bucket_select(span, "fired_at", tag=tag_sql("events"))
            where = _where(span, "fired_at")
            events = await _rows(conn, f"SELECT {select}, count(*) FROM events"
                                       f" WHERE {where.sql} GROUP BY {group}", where)
        # Approved conversions (reversed ones included) count on their conversion date;
        # pending ones are shown apart; rejected ones count only in rejected_conversions,
        # asked for with the status counts.
        select, group = bucket_select(span, "converted_at", tag=tag_sql("events"))
        where = _where(span, "converted_at")
        if not span.status_counts:
            where.add("status != 'rejected'")
        conversions = await _rows(
            conn, f"SELECT {select}, count(*) FILTER (WHERE {counted}),"
                  f" coalesce(sum(revenue_micro) FILTER (WHERE {counted}), 0),"
                  f" coalesce(sum(payout_micro) FILTER (WHERE {counted}), 0),"
                  " count(*) FILTER (WHERE status = 'pending'),"
                  " coalesce(sum(revenue_micro) FILTER (WHERE status = 'pending'), 0)"
                  f"{_STATUS_COUNTS if span.status_counts else ''}"
                  f" FROM events WHERE conversion AND {where.sql}"
                  f" GROUP BY {group}", where)
        # Reversals count when they happened, against the conversion's own keys.
        select, group = bucket_select(span, "changed_at", "c.", key_prefix="e.",
                                      tag=tag_sql("e"))
        where = _where(span, "changed_at", "c.", key_prefix="e.")
        reversals = await _rows(
            conn, f"SELECT {select}, count(*), coalesce(sum(e.revenue_micro), 0),"
                  " coalesce(sum(e.payout_micro), 0)"
                  " FROM conversion_changes AS c"
                  " JOIN events AS e ON e.conversion_id = c.conversion_id"
                  f" WHERE c.to_status = 'reversed' AND {where.sql} GROUP BY {group}", where)
    shapes = _RAW_SHAPES if not span.status_counts else _RAW_SHAPES | {
        "conversions": (*_RAW_SHAPES["conversions"], COUNT, COUNT, COUNT)}
    return ReportRows(shapes=shapes, leads=leads, events=events,
                      conversions=conversions, reversals=reversals)
