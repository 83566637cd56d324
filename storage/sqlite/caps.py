"""Cap charges on SQLite (see storage/caps.py), in the writer's transaction."""

from __future__ import annotations

import aiosqlite
import msgspec

from storage.caps import note_use
from storage.errors import CapReached
from storage.records import CapCharge

# One statement per charge: a first charge of the period inserts the row, a later one adds
# to it; neither when the limit would be passed, and then no row comes back.
_CHARGE = """
INSERT INTO cap_usage (cap, period, used) SELECT ?1, ?2, ?3 WHERE ?3 <= ?4
ON CONFLICT (cap, period) DO UPDATE SET used = used + excluded.used
WHERE used + excluded.used <= ?4
RETURNING used
"""
_RECORD = "INSERT INTO cap_charges (conversion_id, cap, period, amount) VALUES (?, ?, ?, ?)"
_GIVE_BACK = """
UPDATE cap_usage SET used = used - c.amount
FROM (SELECT cap, period, sum(amount) AS amount FROM cap_charges
      WHERE conversion_id IN (SELECT value FROM json_each(?1)) GROUP BY cap, period) AS c
WHERE cap_usage.cap = c.cap AND cap_usage.period = c.period
"""
_FORGET = "DELETE FROM cap_charges WHERE conversion_id IN (SELECT value FROM json_each(?1))"
_ids = msgspec.json.Encoder()


async def charge(conn: aiosqlite.Connection, charges: list[CapCharge]) -> None:
    """Add every charge, or raise CapReached at the first that does not fit."""
    for each in charges:
        rows = list(await conn.execute_fetchall(
            _CHARGE, (each.cap, each.period, each.amount, each.limit)))
        if not rows:
            raise CapReached(each.cap)
        await conn.execute(_RECORD, (each.conversion_id, each.cap, each.period, each.amount))
        note_use(each, rows[0][0])


async def give_back(conn: aiosqlite.Connection, conversion_ids: list[str]) -> None:
    """Take what these conversions added off every cap they were charged to."""
    if conversion_ids:
        ids = _ids.encode(conversion_ids).decode()
        await conn.execute(_GIVE_BACK, (ids,))
        await conn.execute(_FORGET, (ids,))


async def usage(conn: aiosqlite.Connection,
                wanted: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """The use of each (cap, period) asked for; one not charged yet is left out."""
    if not wanted:
        return {}
    rows = await conn.execute_fetchall(
        "SELECT cap, period, used FROM cap_usage WHERE (cap, period) IN"
        " (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]')"
        "  FROM json_each(?))", (_ids.encode(wanted).decode(),))
    return {(cap, period): used for cap, period, used in rows}
