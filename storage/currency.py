"""What a conversion sent in another currency keeps beside its converted amounts: the
revenue as sent, its currency (ISO 4217) and the rate it was converted at.

Its revenue, payout and cost are in the report currency, like every other amount stored;
these say where the revenue came from. All three are None for an event sent in the report
currency. The views list them after their own fields, as the columns were added after.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec

from storage.money import money_value


class Sent(msgspec.Struct, frozen=True, kw_only=True):
    original_revenue: Decimal | None = None
    currency: str | None = None
    rate: Decimal | None = None


# The columns, in the order ``sent_fields`` takes them.
SENT_COLUMNS = "original_revenue, currency, rate"


def sent_fields(original_revenue: str | None, currency: str | None,
                rate: str | None) -> dict[str, Any]:
    """A view's fields from the stored columns."""
    return {"original_revenue": money_value(original_revenue), "currency": currency,
            "rate": None if rate is None else Decimal(rate)}
