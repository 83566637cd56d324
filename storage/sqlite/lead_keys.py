"""Duplicate leads on SQLite: the keyed hashes of lead field values (app/events/dedupe.py)."""

from __future__ import annotations

import aiosqlite
import msgspec

from storage.records import LeadKeyRow

# A hash the lead already has (the same value sent again) is kept once.
INSERT = (f"INSERT INTO lead_keys ({', '.join(LeadKeyRow.__struct_fields__)})"
          " SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'),"
          " json_extract(value, '$[2]'), json_extract(value, '$[3]') FROM json_each(?)"
          " WHERE true ON CONFLICT DO NOTHING")
# Times are stored as ISO-8601 UTC text of one width, so text order is time order; the
# bound keeps the lead's own fraction of a second after moving it back ``days``, and the
# search walks the (cid, digest, created_at) primary key. A lead not stored yet (the
# event creates it) counts as created at ?5. Leads created at the same moment are told
# apart by transaction id, so of two only one repeats the other. The hashes compared are
# the event's and those the lead already has (lead_keys_by_lead): one query, no read of
# the lead's fields first.
_FIRST = """
WITH me AS (SELECT coalesce((SELECT created_at FROM leads WHERE transaction_id = ?2), ?5) AS at)
SELECT k.transaction_id FROM lead_keys AS k, me
WHERE k.cid = ?1 AND k.digest IN (SELECT value FROM json_each(?3) UNION
                                  SELECT digest FROM lead_keys
                                  WHERE transaction_id = ?2 AND cid = ?1)
  AND k.created_at >= strftime('%Y-%m-%dT%H:%M:%S', me.at, ?4) || substr(me.at, 20)
  AND (k.created_at, k.transaction_id) < (me.at, ?2)
ORDER BY k.created_at, k.transaction_id
LIMIT 1
"""
_digests = msgspec.json.Encoder()


async def first_lead_sharing(conn: aiosqlite.Connection, cid: str, transaction_id: str,
                             digests: tuple[str, ...], days: int, new_at: str) -> str | None:
    rows = list(await conn.execute_fetchall(_FIRST, (
        cid, transaction_id, _digests.encode(digests).decode(), f"-{days} days", new_at)))
    return rows[0][0] if rows else None
