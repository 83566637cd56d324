"""Duplicate leads on PostgreSQL: the keyed hashes of lead field values
(app/events/dedupe.py), in the table every process shares."""

from __future__ import annotations

import asyncpg

from storage.records import LeadKeyRow

# A hash the lead already has (the same value sent again, or by another process) is kept
# once.
INSERT = (f"INSERT INTO lead_keys ({', '.join(LeadKeyRow.__struct_fields__)})"
          " SELECT v->>0, v->>1, v->>2, v->>3 FROM jsonb_array_elements($1::jsonb) AS v"
          " ON CONFLICT DO NOTHING")
# Times are stored as ISO-8601 UTC text of one width ("C" collation: text order is time
# order); the bound keeps the lead's own fraction of a second after moving it back
# ``days`` (a timestamp without time zone ignores the Z, so the session's zone plays no
# part), and the search walks the (cid, digest, created_at) primary key. A lead not
# stored yet (the event creates it) counts as created at $5. Leads created at the same
# moment are told apart by transaction id, so of two only one repeats the other. The
# hashes compared are the event's and those the lead already has (lead_keys_by_lead).
_FIRST = """
WITH me AS (SELECT coalesce((SELECT created_at FROM leads WHERE transaction_id = $2), $5)
                   COLLATE "C" AS at)
SELECT k.transaction_id FROM lead_keys AS k, me
WHERE k.cid = $1 AND (k.digest = ANY($3::text[]) OR k.digest IN (
    SELECT digest FROM lead_keys WHERE transaction_id = $2 AND cid = $1))
  AND k.created_at >= to_char(me.at::timestamp - make_interval(days => $4),
                              'YYYY-MM-DD"T"HH24:MI:SS') || substr(me.at, 20)
  AND (k.created_at, k.transaction_id COLLATE "C") < (me.at, $2 COLLATE "C")
ORDER BY k.created_at, k.transaction_id COLLATE "C"
LIMIT 1
"""


async def first_lead_sharing(pool: asyncpg.Pool, cid: str, transaction_id: str,
                             digests: tuple[str, ...], days: int, new_at: str) -> str | None:
    found: str | None = await pool.fetchval(_FIRST, cid, transaction_id, list(digests),
                                            days, new_at)
    return found
