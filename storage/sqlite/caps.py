"""Cap charges on SQLite (see storage/caps.py), in the writer's transaction."""

from __future__ import annotations

import sqlite3
from typing import Any

import aiosqlite
import msgspec

from storage.caps import by_period, first_left_out, note_uses
from storage.errors import CapReached
from storage.records import CapCharge

# One statement for a batch's charges, summed per cap and period: each row is inserted, or
# added to the row there, only where the sum stays at or under the limit; the rows that fit
# come back.
_CHARGE = """
INSERT INTO cap_usage (cap, period, used)
SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]')
FROM json_each(?1) WHERE json_extract(value, '$[2]') <= json_extract(value, '$[3]')
ON CONFLICT (cap, period) DO UPDATE SET used = used + excluded.used
WHERE used + excluded.used <= (SELECT json_extract(value, '$[3]') FROM json_each(?1)
                               WHERE json_extract(value, '$[0]') = excluded.cap
                               AND json_extract(value, '$[1]') = excluded.period)
RETURNING cap, period, used
"""
_RECORD = """
INSERT INTO cap_charges (conversion_id, cap, period, amount)
SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
       json_extract(value, '$[3]')
FROM json_each(?) WHERE true
"""
_GIVE_BACK = """
UPDATE cap_usage SET used = used - c.amount
FROM (SELECT cap, period, sum(amount) AS amount FROM cap_charges
      WHERE conversion_id IN (SELECT value FROM json_each(?1)) GROUP BY cap, period) AS c
WHERE cap_usage.cap = c.cap AND cap_usage.period = c.period
"""
_FORGET = "DELETE FROM cap_charges WHERE conversion_id IN (SELECT value FROM json_each(?1))"
_json = msgspec.json.Encoder()


def charge(conn: sqlite3.Connection, charges: list[CapCharge]) -> None:
    """Add every charge, or raise CapReached (for the first that does not fit) with
    nothing added: the writer then retries each op alone, so only its op is refused."""
    if not charges:
        return
    summed = by_period(charges)
    rows = conn.execute(_CHARGE, (_json.encode(
        [[cap, period, amount, limit] for (cap, period), (amount, limit) in summed.items()]
    ).decode(),)).fetchall()
    used: dict[tuple[str, str], Any] = {(cap, period): use for cap, period, use in rows}
    missing = first_left_out(charges, used)
    if missing is not None:
        raise CapReached(missing)
    conn.execute(_RECORD, (_json.encode(
        [[each.conversion_id, each.cap, each.period, each.amount] for each in charges]
    ).decode(),))
    note_uses(summed, used)


def give_back(conn: sqlite3.Connection, conversion_ids: list[str]) -> None:
    """Take what these conversions added off every cap they were charged to."""
    if conversion_ids:
        ids = _json.encode(conversion_ids).decode()
        conn.execute(_GIVE_BACK, (ids,))
        conn.execute(_FORGET, (ids,))


async def usage(conn: aiosqlite.Connection,
                wanted: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """The use of each (cap, period) asked for; one not charged yet is left out."""
    if not wanted:
        return {}
    rows = await conn.execute_fetchall(
        "SELECT cap, period, used FROM cap_usage WHERE (cap, period) IN"
        " (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]')"
        "  FROM json_each(?))", (_json.encode(wanted).decode(),))
    return {(cap, period): used for cap, period, used in rows}
