"""What a report asks each store for, and the shape of the rows it gets back.

Both stores answer a ``ReportSpan`` with ``RawFigures``: from the hourly roll-ups when the
span is whole UTC hours and not grouped by a conversion's status or hold reason (the roll-ups
have neither; ``split_rollups`` splits their rows into the four sources), from the exact
queries over the raw rows otherwise (storage/sqlite/reports.py,
storage/postgres/reports.py). Times are grouped by a prefix of their stored UTC text
(``2026-11-28T17`` for an hour); the caller folds those buckets into local days and hours.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, get_args

import msgspec

# The lead tracking fields a report may be grouped by (the value stored on the lead).
TagKey = Literal["sub1", "sub2", "sub3", "sub4", "sub5", "utm_source", "utm_medium",
                 "utm_campaign", "utm_term", "utm_content"]
Key = Literal["cid", "pid", "event_id", "status", "reason", TagKey]
TAG_KEYS: tuple[TagKey, ...] = get_args(TagKey)
# Keys only a conversion has: leads and plain events belong to none of their groups.
CONVERSION_KEYS: tuple[Key, ...] = ("status", "reason")
# What a conversion approved as it fired, which has no hold reason, is grouped under.
NO_REASON = "none"
# The SQL of each key, where it is not a column of the same name.
_COLUMNS = {"reason": f"coalesce({{}}hold_reason, '{NO_REASON}')"}

# An integer sum in SQL stays below 2^63 only when its terms are small: a money column is
# summed as two sums, of its billions and of its remainder, each far from overflowing,
# and the two are combined in Python, whose integers have no bound.
BILLION = 10**9


def split_sum(expression: str) -> str:
    """Two exact SQL sums whose ``join_sums`` is the sum of ``expression`` (never NULL)."""
    return (f"coalesce(sum(({expression}) / {BILLION}), 0),"
            f" coalesce(sum(({expression}) % {BILLION}), 0)")


# How a figure is read back: one column, or split_sum's two.
COUNT: tuple[int, ...] = (1,)
SPLIT: tuple[int, ...] = (BILLION, 1)


def join_sums(rows: Iterable[Sequence[Any]], width: int,
              shape: Sequence[Sequence[int]]) -> list[tuple[Any, ...]]:
    """Rows of ``width`` leading keys then figures, each figure spread over as many
    columns as its entry in ``shape`` has weights, as exact Python integers: the sum of
    each column times its weight (``COUNT`` for one column, ``SPLIT`` for split_sum's).

    PostgreSQL's numeric sums come back as Decimal; they are whole numbers of millionths.
    """
    plan = []
    at = width
    for weights in shape:
        if not 1 <= len(weights) <= 3:
            raise ValueError("a figure spans one to three columns")
        plan.append((at, tuple(weights)))
        at += len(weights)
    joined = []
    # Written out by the number of columns: a report reads thousands of these rows, and
    # a generic sum over zipped columns cost it more than its SQL.
    for row in rows:
        values: list[Any] = list(row[:width])
        for at, weights in plan:
            if len(weights) == 1:
                values.append(int(row[at]) * weights[0])
            elif len(weights) == 2:
                values.append(int(row[at]) * weights[0] + int(row[at + 1]) * weights[1])
            else:
                values.append(int(row[at]) * weights[0] + int(row[at + 1]) * weights[1]
                              + int(row[at + 2]) * weights[2])
        joined.append(tuple(values))
    return joined


class ReportSpan(msgspec.Struct, frozen=True, kw_only=True):
    """What to count: times in [start, end) (stored UTC text), grouped and filtered.

    ``width`` is how many leading characters of a time make its bucket: 13 for UTC hours,
    16 for minutes, 0 for no time buckets at all. ``hourly``: the period starts and ends
    on UTC hours, ``width`` is 13 or 0 and no key is a conversion's status or reason, so
    the hourly roll-ups answer it exactly. ``status_counts``: count conversions by status
    too, rejected ones included, which only the rows can (never ``hourly``).
    """

    start: str
    end: str
    width: int
    hourly: bool = False
    keys: tuple[Key, ...] = ()
    cids: tuple[str, ...] = ()
    pids: tuple[str, ...] = ()
    event_ids: tuple[str, ...] = ()
    status_counts: bool = False


class RawFigures(msgspec.Struct, frozen=True, kw_only=True):
    """Rows of (bucket, *keys, *counts) from each source; see the queries for the counts.

    Asked for (``status_counts``, never from the roll-ups: they keep no status), a
    conversions row ends with its approved, reversed and rejected counts.
    """

    leads: list[tuple[Any, ...]] | None  # None: leads do not apply (event ids in play)
    events: list[tuple[Any, ...]] | None  # None: grouped by status or reason
    conversions: list[tuple[Any, ...]]
    reversals: list[tuple[Any, ...]]


class ReportRows(msgspec.Struct, frozen=True, kw_only=True):
    """What a store's queries returned for a span, before any Python work on them.

    ``fold`` makes ``RawFigures`` of it anywhere: a report process does (app/reports/
    processes.py), so the serving process spends on a report only its SQL. ``shapes``
    says how each source's figure columns join (see ``join_sums``); a source without one
    is already whole integers.
    """

    shapes: dict[str, tuple[tuple[int, ...], ...]]
    rollups: list[tuple[Any, ...]] | None = None  # the stats rows, for an hourly span
    leads: list[tuple[Any, ...]] | None = None
    events: list[tuple[Any, ...]] | None = None
    conversions: list[tuple[Any, ...]] = msgspec.field(default_factory=list)
    reversals: list[tuple[Any, ...]] = msgspec.field(default_factory=list)


def fold(span: ReportSpan, rows: ReportRows) -> RawFigures:
    """The figures of ``rows``, read for ``span``: exact integers, in the four sources."""
    width = 1 + len(span.keys)

    def joined(name: str, found: list[tuple[Any, ...]] | None) -> list[tuple[Any, ...]] | None:
        if found is None or name not in rows.shapes:
            return found
        return join_sums(found, width, rows.shapes[name])

    if rows.rollups is not None:
        return split_rollups(span, joined("rollups", rows.rollups) or [])
    return RawFigures(leads=joined("leads", rows.leads), events=joined("events", rows.events),
                      conversions=joined("conversions", rows.conversions) or [],
                      reversals=joined("reversals", rows.reversals) or [])


def bucket_select(span: ReportSpan, time_column: str, prefix: str = "",
                  key_prefix: str | None = None,
                  tag: Callable[[TagKey], str] | None = None) -> tuple[str, str]:
    """The bucket-and-keys select list and its GROUP BY (the same SQL on both stores).

    ``tag`` gives the store's SQL for a lead's tracking field (``''`` when the lead has
    none), read from the lead of the row being counted.
    """
    bucket = f"substr({prefix}{time_column}, 1, {span.width})" if span.width else "''"
    key_prefix = prefix if key_prefix is None else key_prefix
    columns = [bucket]
    for key in span.keys:
        if key in TAG_KEYS:
            if tag is None:
                raise ValueError(f"no SQL given for the lead field {key}")
            columns.append(tag(key))
        else:
            columns.append(_COLUMNS.get(key, "{}" + key).format(key_prefix))
    group = ", ".join(str(n) for n in range(1, len(columns) + 1))
    return ", ".join(columns), group


def hourly_span(span: ReportSpan) -> ReportSpan:
    """``span`` with its ends cut to the hours the ``stats`` rows are keyed by."""
    if not span.hourly or span.width not in (0, 13):
        raise ValueError("the roll-ups hold whole UTC hours only")
    if not with_events(span) or span.status_counts:
        raise ValueError("the roll-ups hold no conversion status or hold reason")
    return msgspec.structs.replace(span, start=span.start[:13], end=span.end[:13])


def tag_rolled_up(span: ReportSpan) -> TagKey | None:
    """The tracking field whose roll-ups (storage/tag_rollups.py) would answer ``span``,
    if that field is kept: an hourly span grouped by that one field (two fields need
    their values together, which only the rows hold)."""
    keys = [key for key in TAG_KEYS if key in span.keys]
    if not span.hourly or span.status_counts or len(keys) != 1 or not with_events(span):
        return None
    return keys[0]


def tagged(span: ReportSpan) -> bool:
    """Grouped by a lead's tracking field: the rows must be joined to their leads."""
    return any(key in TAG_KEYS for key in span.keys)


def with_leads(span: ReportSpan) -> bool:
    """Leads have no event id: they count unless event ids are grouped or filtered."""
    return ("event_id" not in span.keys and not span.event_ids
            and with_events(span))


def with_events(span: ReportSpan) -> bool:
    """Plain events have no status or hold reason: they count unless those are grouped."""
    return not any(key in CONVERSION_KEYS for key in span.keys)


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
