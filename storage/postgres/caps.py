"""Cap charges on PostgreSQL (see storage/caps.py), in the writer's transaction.

``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` takes the row's lock: processes charging
one cap at once wait for each other and each sees the use the one before left.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from storage.caps import note_use
from storage.errors import CapReached
from storage.records import CapCharge

Connection = asyncpg.Connection | PoolConnectionProxy

_CHARGE = """
INSERT INTO cap_usage AS u (cap, period, used) SELECT $1, $2, $3::numeric WHERE $3 <= $4
ON CONFLICT (cap, period) DO UPDATE SET used = u.used + excluded.used
WHERE u.used + excluded.used <= $4
RETURNING used
"""
_RECORD = "INSERT INTO cap_charges (conversion_id, cap, period, amount) VALUES ($1, $2, $3, $4)"
_GIVE_BACK = """
UPDATE cap_usage SET used = cap_usage.used - c.amount
FROM (SELECT cap, period, sum(amount) AS amount FROM cap_charges
      WHERE conversion_id = ANY($1::text[]) GROUP BY cap, period) AS c
WHERE cap_usage.cap = c.cap AND cap_usage.period = c.period
"""
_FORGET = "DELETE FROM cap_charges WHERE conversion_id = ANY($1::text[])"


async def charge(conn: Connection, charges: list[CapCharge]) -> None:
    """Add every charge, or raise CapReached at the first that does not fit."""
    for each in charges:
        used = await conn.fetchval(_CHARGE, each.cap, each.period, each.amount, each.limit)
        if used is None:
            raise CapReached(each.cap)
        await conn.execute(_RECORD, each.conversion_id, each.cap, each.period, each.amount)
        note_use(each, int(used))


async def give_back(conn: Connection, conversion_ids: list[str]) -> None:
    """Take what these conversions added off every cap they were charged to."""
    if conversion_ids:
        await conn.execute(_GIVE_BACK, conversion_ids)
        await conn.execute(_FORGET, conversion_ids)


async def usage(pool: Any, wanted: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """The use of each (cap, period) asked for; one not charged yet is left out."""
    if not wanted:
        return {}
    rows = await pool.fetch(
        "SELECT cap, period, used FROM cap_usage"
        " WHERE (cap, period) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
        [cap for cap, _ in wanted], [period for _, period in wanted])
    return {(cap, period): int(used) for cap, period, used in rows}
