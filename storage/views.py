"""Rows as the read API shows them: the columns read and the records built from them.

Both stores keep the same columns in the same text forms, so one function builds each
view from a row of either.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from storage.currency import SENT_COLUMNS, sent_fields
from storage.money import money_value, round_money
from storage.records import (
    ConversionView,
    EventView,
    MoneyByStatus,
    PostbackView,
    conversion_id_text,
)

CONVERSION_COLUMNS = (
    "id, conversion_id, transaction_id, cid, pid, event_id, revenue, payout, status,"
    " converted_at, decided_at, fired_at, hold_reason, payout_rule, duplicate_of, "
    + SENT_COLUMNS
)
POSTBACK_COLUMNS = (
    "id, transaction_id, cid, pid, event_id, conversion_id, kind, method, url, status,"
    " attempts, max_attempts, next_attempt_at, last_status_code, last_error, created_at,"
    " updated_at, requeued_by"
)


def conversion_row(row: Any) -> tuple[int, ConversionView]:
    (id_, conversion_id, transaction_id, cid, pid, event_id, revenue, payout, status,
     converted_at, decided_at, fired_at, hold_reason, payout_rule, duplicate_of,
     *sent) = row
    return id_, ConversionView(
        conversion_id=conversion_id, transaction_id=transaction_id, cid=cid, pid=pid,
        event_id=event_id, revenue=money_value(revenue), payout=money_value(payout),
        status=status, reason=hold_reason, converted_at=converted_at, decided_at=decided_at,
        fired_at=fired_at, payout_rule=payout_rule, duplicate_of=duplicate_of,
        **sent_fields(*sent))


def postback_row(row: Any) -> PostbackView:
    (id_, transaction_id, cid, pid, event_id, conversion_id, kind, method, url, status,
     attempts, max_attempts, next_attempt_at, last_status_code, last_error, created_at,
     updated_at, requeued_by) = row
    return PostbackView(
        id=id_, transaction_id=transaction_id, cid=cid, pid=pid, event_id=event_id,
        conversion_id=conversion_id_text(conversion_id), kind=kind, method=method, url=url,
        status=status,
        attempts=attempts, max_attempts=max_attempts,
        next_attempt_at=next_attempt_at if status == "pending" else None,
        last_status_code=last_status_code, last_error=last_error, created_at=created_at,
        updated_at=updated_at, requeued_by=requeued_by,
    )


def conversions_by_status(events: list[EventView]) -> dict[str, MoneyByStatus]:
    """Count, revenue and payout of the conversions in each status (statuses with none
    are left out)."""
    sums: dict[str, list[Any]] = {}
    for event in events:
        if event.status is None:
            continue
        total = sums.setdefault(event.status, [0, Decimal(0), Decimal(0)])
        total[0] += 1
        total[1] += event.revenue or 0
        total[2] += event.payout or 0
    return {status: MoneyByStatus(count=count, revenue=round_money(revenue),
                                  payout=round_money(payout))
            for status, (count, revenue, payout) in sums.items()}
