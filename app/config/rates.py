"""Exchange rates: the ``[[rates]]`` timeline, its checks, and the rate in force on a day.

Every amount is reported, paid and capped in one currency (``[reports] currency``). An
event may send its amounts in another, which the service converts as it arrives at the
rate in force on the conversion's day: the entry with the latest ``from`` on or before it.
"""

from __future__ import annotations

import bisect
import datetime as dt
import re
from collections.abc import Iterable
from decimal import Decimal

import msgspec

# ISO 4217's form; which codes exist is the operator's to say, by listing their rates.
CURRENCY = re.compile(r"[A-Z]{3}")
CURRENCY_FORM = "Expected a currency code of three capital letters (ISO 4217), such as EUR"
# Wide enough for any pair of currencies in use, and small enough that no converted
# amount needs more digits than the exact arithmetic of storage.money keeps.
MIN_RATE = Decimal("1e-12")
MAX_RATE = Decimal(10) ** 9


class RateConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One ``[[rates]]`` entry: report-currency units per one unit of ``currency``,
    in force from the UTC day ``from`` until the currency's next entry."""

    currency: str
    rate: Decimal
    since: dt.date = msgspec.field(name="from")


def rates_problem(report_currency: str,
                  rates: Iterable[RateConfig]) -> tuple[str, str] | None:
    """The first rule ``[reports] currency`` or a ``[[rates]]`` entry breaks, or None."""
    if not CURRENCY.fullmatch(report_currency):
        return "reports.currency", CURRENCY_FORM
    seen: dict[tuple[str, dt.date], int] = {}
    for i, entry in enumerate(rates):
        place = f"rates[{i}]"
        if not CURRENCY.fullmatch(entry.currency):
            return f"{place}.currency", CURRENCY_FORM
        if entry.currency == report_currency:
            return (f"{place}.currency", f"{report_currency} is the report currency"
                                         " ([reports] currency): its rate is always 1")
        if not entry.rate.is_finite() or not MIN_RATE <= entry.rate <= MAX_RATE:
            return (f"{place}.rate", f"must be a number from {MIN_RATE:f} to {MAX_RATE:f}"
                                     f" ({report_currency} per one {entry.currency})")
        key = (entry.currency, entry.since)
        if key in seen:
            return (f"{place}.from", f"{entry.currency} already has a rate from"
                                     f" {entry.since} (rates[{seen[key]}])")
        seen[key] = i
    return None


class RateTable:
    """The rates of a config, looked up by currency and day in logarithmic time."""

    def __init__(self, report_currency: str, rates: Iterable[RateConfig]) -> None:
        self.report_currency = report_currency
        timelines: dict[str, list[tuple[dt.date, Decimal]]] = {}
        for entry in rates:
            timelines.setdefault(entry.currency, []).append((entry.since, entry.rate))
        self._days: dict[str, list[dt.date]] = {}
        self._rates: dict[str, list[Decimal]] = {}
        for currency, timeline in timelines.items():
            timeline.sort()
            self._days[currency] = [day for day, _ in timeline]
            self._rates[currency] = [rate for _, rate in timeline]

    def problem(self, currency: str, day: dt.date) -> str | None:
        """Why an amount in ``currency`` cannot be converted on ``day``, or None."""
        if currency == self.report_currency:
            return None
        days = self._days.get(currency)
        if days is None:
            return (f"Expected {self.report_currency} or a currency with a rate in the"
                    " config's [[rates]]")
        if day < days[0]:
            return f"Expected a currency with a rate in force on {day} ({currency}: from {days[0]})"
        return None

    def rate(self, currency: str, day: dt.date) -> Decimal | None:
        """Report-currency units per one ``currency`` on ``day``: None for the report
        currency itself (nothing to convert) and for a currency with no rate in force."""
        days = self._days.get(currency)
        if days is None:
            return None
        at = bisect.bisect_right(days, day)
        return self._rates[currency][at - 1] if at else None
