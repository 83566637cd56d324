"""Queries on the read connection for the admin view and postback rendering."""

from __future__ import annotations

from typing import Any

import aiosqlite

from storage.currency import SENT_COLUMNS, sent_fields
from storage.money import money_value
from storage.records import (
    EventView,
    TransactionView,
    conversion_id_text,
    decode_fields,
)
from storage.sqlite import outbox
from storage.views import conversions_by_status

_LEAD = (
    "SELECT cid, pid, fields, cost, created_at FROM leads WHERE transaction_id = ?"
)
_FIELDS = "SELECT fields FROM leads WHERE transaction_id = ?"
_EVENTS = (
    "SELECT event_id, pid, conversion, conversion_id, revenue, payout, converted_at, fired_at,"
    " fields, status, decided_at, hold_reason, payout_rule, duplicate_of, " + SENT_COLUMNS
    + " FROM events"
    " WHERE transaction_id = ?"
    " ORDER BY id"
)


async def lead_fields(conn: aiosqlite.Connection, transaction_id: str) -> dict[str, Any]:
    rows = list(await conn.execute_fetchall(_FIELDS, (transaction_id,)))
    return decode_fields(rows[0][0]) if rows else {}


async def transaction_view(
    conn: aiosqlite.Connection, transaction_id: str
) -> TransactionView | None:
    leads = list(await conn.execute_fetchall(_LEAD, (transaction_id,)))
    if not leads:
        return None
    cid, pid, fields, cost, created_at = leads[0]
    events = [
        EventView(
            event_id=event_id,
            pid=event_pid,
            conversion=bool(conversion),
            conversion_id=conversion_id_text(conversion_id),
            revenue=money_value(revenue),
            payout=money_value(payout),
            converted_at=converted_at,
            fired_at=fired_at,
            fields=decode_fields(event_fields),
            status=status,
            decided_at=decided_at,
            reason=hold_reason,
            payout_rule=payout_rule,
            duplicate_of=duplicate_of,
            **sent_fields(*sent),
        )
        for (event_id, event_pid, conversion, conversion_id, revenue, payout, converted_at,
             fired_at, event_fields, status, decided_at, hold_reason, payout_rule, duplicate_of,
             *sent)
        in await conn.execute_fetchall(_EVENTS, (transaction_id,))
    ]
    return TransactionView(
        postbacks=await outbox.postbacks_of_transaction(conn, transaction_id),
        transaction_id=transaction_id,
        cid=cid,
        pid=pid,
        fields=decode_fields(fields),
        cost=money_value(cost),
        created_at=created_at,
        events=events,
        conversions=conversions_by_status(events),
    )
