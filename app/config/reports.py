"""The ``[reports]`` section: how reports are counted, and in which currency."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from storage.reports import TagKey


class ReportsConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How reports are counted."""

    # Lead fields whose hourly roll-ups the writer keeps, so reports grouped by them read
    # the roll-ups; a report by another field counts the raw rows (exact, slower).
    breakdowns: Annotated[list[TagKey], Meta(max_length=10)] = []
    # What every amount is reported, paid and capped in (ISO 4217); amounts sent in another
    # currency are converted as they arrive ([[rates]], app/config/rates.py).
    currency: str = "USD"
