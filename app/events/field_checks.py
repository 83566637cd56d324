"""The rules on an event field's value once it has the right type: dates, the seed's
timezones and currency codes, each a function answering the documented reason or None."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

from app.config.rates import CURRENCY, CURRENCY_FORM

# The seed's fixed offsets; an absent timezone means UTC.
TIMEZONES: dict[str, dt.timezone] = {
    "UTC": dt.UTC,
    "PST": dt.timezone(dt.timedelta(hours=-8)),
    "MST": dt.timezone(dt.timedelta(hours=-7)),
    "CST": dt.timezone(dt.timedelta(hours=-6)),
    "EST": dt.timezone(dt.timedelta(hours=-5)),
    "AST": dt.timezone(dt.timedelta(hours=-4)),
    "AKST": dt.timezone(dt.timedelta(hours=-9)),
    "HST": dt.timezone(dt.timedelta(hours=-10)),
    "SST": dt.timezone(dt.timedelta(hours=-11)),
}


_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}")


def conversion_time(text: str, timezone: dt.tzinfo) -> dt.datetime:
    """'YYYY-MM-DD' or 'YYYY-MM-DD HH:MM:SS' in ``timezone``, as an aware UTC datetime."""
    if _DATE.fullmatch(text):
        moment = dt.datetime.combine(dt.date.fromisoformat(text), dt.time())
    elif _DATE_TIME.fullmatch(text):
        moment = dt.datetime.fromisoformat(text)
    else:
        raise ValueError(f"not a conversion date: {text!r}")
    return moment.replace(tzinfo=timezone).astimezone(dt.UTC)


OUT_OF_RANGE = "Expected a date between 0001-01-01 and 9999-12-31 in UTC"


def _timezone_problem(value: str) -> str | None:
    return None if value.upper() in TIMEZONES else "Expected one of " + ", ".join(TIMEZONES)


def _conversion_date_problem(value: str) -> str | None:
    try:
        conversion_time(value, dt.UTC)
    except ValueError:
        return "Expected 'YYYY-MM-DD' or 'YYYY-MM-DD HH:MM:SS'"
    except OverflowError:
        return OUT_OF_RANGE
    return None


def _currency_problem(value: str) -> str | None:
    return None if CURRENCY.fullmatch(value) else CURRENCY_FORM


def _date_problem(value: str) -> str | None:
    try:
        if not _DATE.fullmatch(value):
            raise ValueError(value)
        dt.date.fromisoformat(value)
    except ValueError:
        return "Expected 'YYYY-MM-DD'"
    return None


Check = Callable[[Any], "str | None"]

# Rules on a field's value once it has the right type.
EVENT_CHECKS: dict[str, Check] = {
    "conversion_date": _conversion_date_problem,
    "conversion_timezone": _timezone_problem,
    "tcpa_consent_date": _date_problem,
    "currency": _currency_problem,
}
