"""The rows a fired event writes: its event row, and its lead's creation or change."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from actors.clock import utc_text
from actors.messages import FireEvent
from storage.money import micro, money_text
from storage.records import ConversionStatus, EventRow, LeadChange, LeadRow, encode_fields


def event_row(transaction_id: str, event: FireEvent, conversion_id: str, moment: datetime,
              status: ConversionStatus | None, why: str | None,
              fired_at: str | None = None) -> EventRow:
    """The event as stored; ``status`` and ``why`` as actors.rules.fire_status gave them.

    ``fired_at``: ``moment`` as utc_text gives it, when the caller has it already.
    """
    if fired_at is None:
        fired_at = utc_text(moment)
    conversion = event.conversion
    return EventRow(
        transaction_id=transaction_id,
        cid=event.cid,
        event_id=event.event_id,
        pid=event.pid,
        once=event.once,
        conversion=conversion,
        conversion_id=conversion_id or None,
        revenue=money_text(event.revenue),
        payout=money_text(event.payout) if conversion else None,
        converted_at=(fired_at if event.converted_at is None else utc_text(event.converted_at))
        if conversion else None,
        fields=encode_fields(event.event_fields),
        ip=event.ip,
        user_agent=event.user_agent,
        fired_at=fired_at,
        status=status,
        decided_at=fired_at if status in ("approved", "rejected") else None,
        revenue_micro=None if event.revenue is None else micro(event.revenue),
        payout_micro=micro(event.payout) if conversion and event.payout is not None else None,
        hold_reason=why,
        payout_rule=event.payout_rule if conversion else None,
        duplicate_of=event.duplicate_of if conversion else None,
        original_revenue=money_text(event.original_revenue),
        currency=event.currency,
        rate=None if event.rate is None else format(event.rate, "f"),
    )


def lead_write(transaction_id: str, event: FireEvent, *, created: bool, cost: Decimal | None,
               fired_at: str) -> tuple[LeadRow | None, LeadChange | None]:
    """The lead the event creates, or the change it makes to its lead (fields, cost)."""
    if created:
        return LeadRow(transaction_id=transaction_id, cid=event.cid, pid=event.pid,
                       fields=encode_fields(event.lead_fields), cost=money_text(cost),
                       ip=event.ip, user_agent=event.user_agent, created_at=fired_at,
                       cost_micro=None if cost is None else micro(cost)), None
    if event.lead_fields or cost is not None:
        return None, LeadChange(
            transaction_id=transaction_id,
            fields_patch=encode_fields(event.lead_fields) if event.lead_fields else None,
            cost=money_text(cost),
            cost_micro=None if cost is None else micro(cost),
            cost_delta=_cost_delta(event),  # pragma: no mutate
        )
    return None, None


def _cost_delta(event: FireEvent) -> str | None:
    """The signed amount an add or a subtract moves the cost by; None for an override."""
    if event.cost is None or event.cost_operation == "override":
        return None
    return money_text(event.cost if event.cost_operation == "add" else -event.cost)
