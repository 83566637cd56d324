"""SQLite's cold-load query: a batch of transactions with their leads and fired events.

One query for all of them returns a single JSON row, so a batch costs one round trip to
the read connection's thread and one handoff of the GIL instead of several per transaction.
"""

from __future__ import annotations

from decimal import Decimal

import aiosqlite
import msgspec

from storage.records import StoredTransaction

_LOAD = """
SELECT json_group_array(json_array(
    l.transaction_id, l.cid, l.pid, l.cost, l.created_at,
    (SELECT json_group_array(DISTINCT e.event_id) FROM events AS e
     WHERE e.transaction_id = l.transaction_id)))
FROM leads AS l
WHERE l.transaction_id IN (SELECT value FROM json_each(?))
"""
_ids = msgspec.json.Encoder()
_rows = msgspec.json.Decoder(list[tuple[str, str, str, str | None, str, list[str]]])


async def query_sqlite(conn: aiosqlite.Connection, ids: list[str]) -> dict[str, StoredTransaction]:
    """Every transaction among ``ids`` with its lead and fired event ids, in one query."""
    rows = list(await conn.execute_fetchall(_LOAD, (_ids.encode(ids).decode(),)))
    return {
        transaction_id: StoredTransaction(
            cid=cid, pid=pid, cost=None if cost is None else Decimal(cost),
            created_at=created_at, fired=frozenset(fired))
        for transaction_id, cid, pid, cost, created_at, fired in _rows.decode(rows[0][0])
    }
