"""The parameters of a report, as the query string and the command line give them."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal, get_args
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from msgspec import Meta

from app.edge import errors
from storage.reports import TagKey

# day_of_week is ISO: 1 Monday to 7 Sunday; hour_of_day 0 to 23; both local to the zone.
TimeKey = Literal["day", "hour", "hour_of_day", "day_of_week"]
TIME_KEYS: tuple[str, ...] = get_args(TimeKey)
GroupKey = Literal[TimeKey, "cid", "pid", "event_id", "status", "reason", TagKey]
GROUP_KEYS: tuple[str, ...] = get_args(GroupKey)
MAX_KEYS = 3
MAX_DAYS = 366
# Rows past the limit fold into one row (see app/reports/limit.py).
MAX_LIMIT = 10_000
_REPEATABLE = ("cid", "pid", "event_id")
Day = Annotated[str, Meta(pattern=r"^\d{4}-\d{2}-\d{2}$")]
Name = Annotated[str, Meta(min_length=1, max_length=255)]
Names = Annotated[list[Name], Meta(max_length=100)]


class ReportQuery(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    from_day: Day = msgspec.field(name="from")
    to_day: Day = msgspec.field(name="to")
    tz: Annotated[str, Meta(min_length=1, max_length=64)] = "UTC"
    group_by: Annotated[str, Meta(
        max_length=64,
        description=f"Comma list of at most {MAX_KEYS} distinct keys among"
                    f" {', '.join(GROUP_KEYS)}")] = "day"
    cid: Names = []
    pid: Names = []
    event_id: Names = []
    format: Literal["json", "csv"] = "json"
    limit: Annotated[int, Meta(ge=1, le=MAX_LIMIT)] = 1000
    status_counts: Annotated[bool, Meta(
        description="Count conversions by status (approved, reversed, rejected) too: read"
                    " from the rows, not the hourly roll-ups")] = False


class ReportParams(msgspec.Struct, frozen=True, kw_only=True):
    """A checked report request: real dates in order, a known zone, known group keys."""

    first: dt.date
    last: dt.date
    tz: str
    group_by: tuple[GroupKey, ...]
    cids: tuple[str, ...] = ()
    pids: tuple[str, ...] = ()
    event_ids: tuple[str, ...] = ()
    format: Literal["json", "csv"] = "json"
    status_counts: bool = False
    limit: int = 1000

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)


def params_from_query(query: str) -> ReportParams:
    """Parse a query string; raises the API's 400 naming the first bad parameter."""
    raw: dict[str, Any] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in _REPEATABLE:
            raw.setdefault(name, []).append(value)
        else:
            raw[name] = value  # as elsewhere, the last one wins
    return checked(raw)


def checked(raw: dict[str, Any]) -> ReportParams:
    """The parameters from a dict of query values; raises the API's 400 on a bad one."""
    try:
        query = msgspec.convert(raw, ReportQuery, strict=False)
    except msgspec.ValidationError as exc:
        raise _invalid(exc) from None
    first = _date(query.from_day, "from")
    last = _date(query.to_day, "to")
    if last < first:
        raise errors.invalid_fields({"to": "Expected a day on or after from"})
    if (last - first).days + 1 > MAX_DAYS:
        raise errors.invalid_fields({"to": f"Expected at most {MAX_DAYS} days from from"})
    return ReportParams(first=first, last=last, tz=_zone(query.tz),
                        group_by=_group_by(query.group_by), cids=tuple(query.cid),
                        pids=tuple(query.pid), event_ids=tuple(query.event_id),
                        format=query.format, status_counts=query.status_counts,
                        limit=query.limit)


def _date(text: str, name: str) -> dt.date:
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise errors.invalid_fields({name: "Expected a real day, YYYY-MM-DD"}) from None
    # Before 1900 zones had local mean times with odd seconds; nothing was recorded then.
    if day.year < 1970:
        raise errors.invalid_fields({name: "Expected a day from 1970"})
    # A period ends at the midnight after its last day, and 9999-12-31 has none.
    if day == dt.date.max:
        raise errors.invalid_fields({name: "Expected a day before 9999-12-31"})
    return day


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    # A folder of the zone database (tz=America) is an OSError, not a missing zone.
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise errors.invalid_fields({"tz": "Expected an IANA time zone name"}) from None
    return name


_GROUP_BY_RULE = (f"Expected a comma list of at most {MAX_KEYS} distinct keys among"
                  f" {', '.join(GROUP_KEYS)}")


def _group_by(text: str) -> tuple[GroupKey, ...]:
    keys = [key.strip() for key in text.split(",") if key.strip()]
    unknown = [key for key in keys if key not in GROUP_KEYS]
    if not keys or unknown or len(set(keys)) != len(keys) or len(keys) > MAX_KEYS:
        raise errors.invalid_fields({"group_by": _GROUP_BY_RULE})
    return tuple(keys)  # type: ignore[arg-type]


def _invalid(exc: msgspec.ValidationError) -> errors.ApiError:
    """msgspec's message -> 400 naming the parameter (or saying it is required)."""
    text = str(exc)
    if text.startswith("Object missing required field `"):
        return errors.required([text.split("`")[1]])
    if text.startswith("Object contains unknown field `"):
        return errors.invalid_fields({text.split("`")[1]: "Unknown parameter"})
    return errors.invalid_from(exc, "query")
