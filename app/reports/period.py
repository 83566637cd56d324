"""A report's period in UTC, and how finely its times must be bucketed to fold exactly."""

from __future__ import annotations

import datetime as dt
import functools
from datetime import UTC
from typing import get_args
from zoneinfo import ZoneInfo

import msgspec

from actors.clock import utc_text
from app.reports.params import TIME_KEYS, ReportParams
from storage.reports import Key, ReportSpan, with_events

# Stored times are "2026-11-28T17:05:09.123456Z": these prefixes are one hour, minute, second.
HOUR, MINUTE, SECOND = 13, 16, 19
# The group keys the SQL groups by (the others are time buckets it leaves to the caller).
_SQL_KEYS: dict[str, Key] = {key: key for key in get_args(Key)}


def bounds(first: dt.date, last: dt.date, zone: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """[local midnight of ``first``, local midnight after ``last``), as UTC instants."""
    start = dt.datetime.combine(first, dt.time(), zone).astimezone(UTC)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), zone).astimezone(UTC)
    return start, end


def bucket_width(start: dt.datetime, end: dt.datetime, zone: ZoneInfo) -> int:
    """The coarsest UTC bucket that lies whole inside one local hour all through the period.

    Whole-hour offsets (most zones, DST included) fold UTC hours exactly; zones a half or
    quarter hour off (India, Nepal, Lord Howe's DST, ...) need minutes.
    """
    seconds = _offsets(start, end, zone)
    if all(value % 3600 == 0 for value in seconds):
        return HOUR
    if all(value % 60 == 0 for value in seconds):
        return MINUTE
    return SECOND


# A month is 744 hours to convert, ~2 ms of the event loop per report; dashboards and
# scripts ask for the same few periods over and over.
@functools.lru_cache(maxsize=256)
def _offsets(start: dt.datetime, end: dt.datetime, zone: ZoneInfo) -> frozenset[int]:
    """Every UTC offset, in seconds, that ``zone`` has at an hour of [start, end)."""
    seconds: set[int] = set()
    moment = start.replace(minute=0, second=0, microsecond=0)
    while moment < end:
        offset = moment.astimezone(zone).utcoffset()
        seconds.add(int(offset.total_seconds()) if offset is not None else 0)
        moment += dt.timedelta(hours=1)
    return frozenset(seconds)


def _on_hour(moment: dt.datetime) -> bool:
    return moment.minute == moment.second == moment.microsecond == 0


def span_of(params: ReportParams) -> ReportSpan:
    """What the SQL reads for ``params``."""
    zone = params.zone
    start, end = bounds(params.first, params.last, zone)
    timed = any(key in TIME_KEYS for key in params.group_by)
    width = bucket_width(start, end, zone)
    span = ReportSpan(
        start=utc_text(start), end=utc_text(end),
        width=width if timed else 0,
        keys=tuple(_SQL_KEYS[key] for key in params.group_by if key in _SQL_KEYS),
        cids=params.cids, pids=params.pids, event_ids=params.event_ids,
        status_counts=params.status_counts)
    # The hourly roll-ups answer exactly when no hour is cut (both ends on a UTC hour and
    # every local hour of the period a whole UTC hour) and they hold every key asked for:
    # they have no conversion status or hold reason.
    hourly = (width == HOUR and _on_hour(start) and _on_hour(end) and with_events(span)
              and not params.status_counts)
    return msgspec.structs.replace(span, hourly=hourly)
