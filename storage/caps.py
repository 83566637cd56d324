"""Caps, as both stores keep them: each cap's use per period, and each conversion's share.

A conversion's charges are added in its write's transaction, each only if it keeps the
cap's use at or under its limit: the database decides, so a cap is exact whatever the
concurrency and however many processes share it. A conversion rejected or reversed
gives its share back in the transaction of that change.
"""

from __future__ import annotations

import structlog

from storage.records import CapCharge

log = structlog.get_logger("storage.caps")

# A cap this full (in tenths) logs one warning as a charge crosses it.
WARN_TENTHS = 9


def note_use(charge: CapCharge, used: int) -> None:
    """Warn once, as the charge that takes a cap to 90 % or more of its limit lands."""
    if used * 10 >= charge.limit * WARN_TENTHS > (used - charge.amount) * 10:
        log.warning("cap_nearly_reached", cap=charge.cap, period=charge.period,
                    used=used, limit=charge.limit)
