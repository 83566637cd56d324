"""Cap charges on PostgreSQL (see storage/caps.py), in the writer's transaction.

``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` takes each row's lock: processes charging
one cap at once wait for each other and each sees the use the one before left.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from storage.caps import by_period, first_left_out, note_uses
from storage.errors import CapReached
from storage.records import CapCharge

Connection = asyncpg.Connection | PoolConnectionProxy

# The batch's sums, one row per cap and period (ON CONFLICT touches a row once a statement).
_CHARGE = """
INSERT INTO cap_usage AS u (cap, period, used)
SELECT c.cap, c.period, c.amount FROM unnest($1::text[], $2::text[], $3::numeric[],
                                             $4::numeric[]) AS c(cap, period, amount, lim)
WHERE c.amount <= c.lim
ON CONFLICT (cap, period) DO UPDATE SET used = u.used + excluded.used
WHERE u.used + excluded.used <= (SELECT l.lim FROM unnest($1::text[], $2::text[],
                                                          $4::numeric[]) AS l(cap, period, lim)
                                 WHERE l.cap = excluded.cap AND l.period = excluded.period)
RETURNING u.cap, u.period, u.used
"""
_RECORD = """
INSERT INTO cap_charges (conversion_id, cap, period, amount)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::numeric[])
"""
_GIVE_BACK = """
UPDATE cap_usage SET used = cap_usage.used - c.amount
FROM (SELECT cap, period, sum(amount) AS amount FROM cap_charges
      WHERE conversion_id = ANY($1::text[]) GROUP BY cap, period) AS c
WHERE cap_usage.cap = c.cap AND cap_usage.period = c.period
"""
_FORGET = "DELETE FROM cap_charges WHERE conversion_id = ANY($1::text[])"


async def charge(conn: Connection, charges: list[CapCharge]) -> None:
    """Add every charge, or raise CapReached (for the first that does not fit) with
    nothing added: the writer then retries each op alone, so only its op is refused."""
    if not charges:
        return
    summed = by_period(charges)
    # In key order, as every process locks them: two batches never wait on each other.
    keys = sorted(summed)
    rows = await conn.fetch(_CHARGE, [cap for cap, _ in keys], [period for _, period in keys],
                            [summed[key][0] for key in keys], [summed[key][1] for key in keys])
    used = {(cap, period): use for cap, period, use in rows}
    missing = first_left_out(charges, used)
    if missing is not None:
        raise CapReached(missing)
    await conn.execute(_RECORD, [each.conversion_id for each in charges],
                       [each.cap for each in charges], [each.period for each in charges],
                       [each.amount for each in charges])
    note_uses(summed, used)


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
