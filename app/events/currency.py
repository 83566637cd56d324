"""Amounts sent in another currency, converted into the report currency as they arrive.

An event's ``revenue``, ``amount`` and ``cost`` are converted at the rate in force on the
conversion's day (its ``conversion_date`` if sent, else the day it arrives, UTC), exactly,
then rounded as every amount is (storage.money). Payouts, caps, holds and reports then
see only the converted amounts; the conversion keeps what was sent, its currency and the
rate beside them.
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_EVEN, Context, Decimal

import msgspec

from app.config.rates import RateTable
from app.events.payloads import CONVERTED_FIELDS, Event, EventFields
from storage.money import round_money

# Wide enough for the product of any bounded amount and any bounded rate, so a conversion
# is exact before it is rounded.
_EXACT = Context(prec=80, rounding=ROUND_HALF_EVEN)


def with_rate(event: Event, rates: RateTable, now: dt.datetime) -> Event:
    """The event with the rate its amounts convert at, or with its currency invalid (left
    out and listed, as the lenient rules say) when no rate is in force on its day."""
    currency = event.fields.currency
    if currency is None or "currency" in event.invalid:
        return event
    day = (event.converted_at or now).astimezone(dt.UTC).date()
    problem = rates.problem(currency, day)
    if problem is not None:
        return event.dropping("currency", problem)
    return msgspec.structs.replace(event, rate=rates.rate(currency, day))


def convert(amount: Decimal, rate: Decimal) -> Decimal:
    """``amount`` in the report currency: multiplied exactly, then rounded half-even."""
    return round_money(_EXACT.multiply(amount, rate))


def in_report_currency(fields: EventFields, rate: Decimal | None) -> EventFields:
    """The fields with every converted amount in the report currency (as sent: no rate)."""
    if rate is None:
        return fields
    return msgspec.structs.replace(fields, **{
        name: convert(value, rate) for name in CONVERTED_FIELDS
        if (value := getattr(fields, name)) is not None})
