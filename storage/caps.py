"""Caps, as both stores keep them: each cap's use per period, and each conversion's share.

A batch's charges are summed per cap and period and added in the batch's transaction in
one statement, each sum only if it keeps the cap's use at or under its limit: the database
decides, so a cap is exact whatever the concurrency and however many processes share it.
A batch with a sum that does not fit is refused whole and each of its ops retried alone,
so exactly the conversions that do not fit are refused. A conversion rejected or reversed
gives its share back in the transaction of that change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog

from storage.records import CapCharge

log = structlog.get_logger("storage.caps")

# A cap this full (in tenths) logs one warning as a charge crosses it.
WARN_TENTHS = 9


def by_period(charges: list[CapCharge]) -> dict[tuple[str, str], tuple[int, int]]:
    """The charges' sum per (cap, period), with that cap's limit, in first-seen order."""
    summed: dict[tuple[str, str], tuple[int, int]] = {}
    for each in charges:
        key = (each.cap, each.period)
        amount, _ = summed.get(key, (0, each.limit))
        summed[key] = (amount + each.amount, each.limit)
    return summed


def first_left_out(charges: list[CapCharge], used: Mapping[tuple[str, str], Any]) -> str | None:
    """The cap of the first charge whose sum was not added (``used`` has those that were)."""
    for each in charges:
        if (each.cap, each.period) not in used:
            return each.cap
    return None


def note_uses(summed: Mapping[tuple[str, str], tuple[int, int]],
              used: Mapping[tuple[str, str], Any]) -> None:
    """Warn once per cap and period, as the batch that takes it to 90 % or more lands."""
    for (cap, period), (amount, limit) in summed.items():
        now = int(used[(cap, period)])
        if now * 10 >= limit * WARN_TENTHS > (now - amount) * 10:
            log.warning("cap_nearly_reached", cap=cap, period=period, used=now, limit=limit)
