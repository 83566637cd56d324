"""The hourly roll-ups on PostgreSQL: storage/sqlite/rollups.py's table, the same deltas.

The deltas come from storage/rollups.py's pure functions; only the SQL differs. Several
processes write one database, so the stored values a cost or status change replaces are
read ``FOR NO KEY UPDATE`` (the lock an UPDATE takes; other processes may still insert
events that refer to the row): a concurrent batch changing the same lead or conversion
waits until this one commits, then reads the value this one wrote, and the deltas add up
exactly.
Rows are locked (and ``stats`` rows upserted) in key order, so two batches never wait on
each other in a circle.

Money is in millionths in ``bigint`` columns. PostgreSQL's bigint addition raises
("bigint out of range") rather than wrapping, and a ``sum`` cast back to bigint raises
the same way, so a total too large for 64 bits fails loudly instead of going wrong.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import msgspec
from asyncpg.pool import PoolConnectionProxy

from storage.records import ConversionChange, EventRow, LeadChange, LeadRow
from storage.rollups import (
    FIGURES,
    MONEY,
    NO_EVENT,
    Deltas,
    cost_changes,
    hourly,
    new_rows,
    status_changes,
)

# "C": hours compare byte by byte, like their UTC text, whatever the database's locale.
# The table as migration 3 made it; migration 4 makes its money columns numeric (NUMERIC).
CREATE = f"""
CREATE TABLE stats (
    hour TEXT COLLATE "C" NOT NULL,
    cid TEXT NOT NULL,
    pid TEXT NOT NULL,
    event_id TEXT NOT NULL,
    {", ".join(f"{name} BIGINT NOT NULL DEFAULT 0" for name in FIGURES)},
    PRIMARY KEY (hour, cid, pid, event_id)
);
"""

# A money sum passes bigint after ten conversions of the largest amount in one hour and
# key; numeric is exact at any size.
NUMERIC = "ALTER TABLE stats " + ", ".join(
    f"ALTER COLUMN {name} TYPE numeric" for name in FIGURES if name in MONEY) + ";"

_COLUMNS = ("hour", "cid", "pid", "event_id", *FIGURES)
_KEY_TYPES = ("text",) * 4
UPSERT = (
    f"INSERT INTO stats ({', '.join(_COLUMNS)}) SELECT "
    + ", ".join(f"(v->>{i})::{kind}" for i, kind in enumerate((
        *_KEY_TYPES, *("numeric" if name in MONEY else "bigint" for name in FIGURES))))
    + " FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS r(v, n) ORDER BY n"
    + " ON CONFLICT (hour, cid, pid, event_id) DO UPDATE SET "
    + ", ".join(f"{name} = stats.{name} + excluded.{name}" for name in FIGURES)
)

_COUNTED = "status IN ('approved', 'reversed')"


def parts(leads: str = "") -> str:
    """Every stored figure as a row of (transaction_id, hour, cid, pid, event_id,
    *FIGURES), as storage/sqlite/rollups.py's ``parts`` in PostgreSQL's dialect.
    ``leads``: only those leads' (SQL giving an array of transaction ids)."""
    def only(column: str) -> str:
        return f" AND {column} = ANY({leads})" if leads else ""

    return " UNION ALL ".join((
        f"SELECT transaction_id, substr(created_at, 1, 13) AS hour, cid, pid,"
        f" '{NO_EVENT}'::text AS event_id, 1 AS clicks, coalesce(cost_micro, 0) AS cost,"
        " 0 AS events, 0 AS conversions, 0::bigint AS revenue, 0::bigint AS payout,"
        " 0 AS pending_conversions, 0::bigint AS pending_revenue, 0 AS reversals,"
        " 0::bigint AS reversed_revenue, 0::bigint AS reversed_payout FROM leads WHERE true"
        f"{only('transaction_id')}",
        "SELECT transaction_id, substr(fired_at, 1, 13), cid, pid, event_id, 0, 0, 1, 0, 0,"
        f" 0, 0, 0, 0, 0, 0 FROM events WHERE true{only('transaction_id')}",
        f"SELECT transaction_id, substr(converted_at, 1, 13), cid, pid, event_id, 0, 0, 0,"
        f" ({_COUNTED})::int,"
        f" CASE WHEN {_COUNTED} THEN coalesce(revenue_micro, 0) ELSE 0 END,"
        f" CASE WHEN {_COUNTED} THEN coalesce(payout_micro, 0) ELSE 0 END,"
        " (status = 'pending')::int,"
        " CASE WHEN status = 'pending' THEN coalesce(revenue_micro, 0) ELSE 0 END, 0, 0, 0"
        f" FROM events WHERE conversion AND status != 'rejected'{only('transaction_id')}",
        "SELECT e.transaction_id, substr(c.changed_at, 1, 13), e.cid, e.pid, e.event_id,"
        " 0, 0, 0, 0, 0, 0, 0, 0, 1, coalesce(e.revenue_micro, 0),"
        " coalesce(e.payout_micro, 0)"
        " FROM conversion_changes AS c JOIN events AS e ON e.conversion_id = c.conversion_id"
        f" WHERE c.to_status = 'reversed'{only('e.transaction_id')}",
    ))


SUMS = ", ".join(f"sum({name})" for name in FIGURES)
# sum() of bigint is numeric; storing it back in a bigint column raises on overflow.
REBUILD = (
    f"INSERT INTO stats ({', '.join(_COLUMNS)})"
    f" SELECT hour, cid, pid, event_id, {SUMS}"
    f" FROM ({parts()}) AS parts GROUP BY hour, cid, pid, event_id;"
)

_STORED_LEADS = (
    "SELECT transaction_id, created_at, cid, pid, cost_micro FROM leads"
    " WHERE transaction_id = ANY($1::text[]) ORDER BY transaction_id FOR NO KEY UPDATE")
_STORED_CONVERSIONS = (
    "SELECT conversion_id, status, cid, pid, event_id, converted_at, revenue_micro,"
    " payout_micro, transaction_id FROM events WHERE conversion_id = ANY($1::text[])"
    " ORDER BY conversion_id FOR NO KEY UPDATE")
# A conversion's lead never changes: read without a lock, to lock the leads first.
_CONVERSION_LEADS = ("SELECT DISTINCT transaction_id FROM events"
                     " WHERE conversion_id = ANY($1::text[])")
_rows = msgspec.json.Encoder()


async def record(conn: asyncpg.Connection | PoolConnectionProxy, leads: Sequence[LeadRow],
                 events: Sequence[EventRow], lead_changes: Sequence[LeadChange],
                 conversion_changes: Sequence[ConversionChange], *,
                 per_lead: bool = False) -> Deltas:
    """Add a batch to the roll-ups, inside the batch's transaction; its deltas come back,
    counted per lead when ``per_lead`` (for storage/postgres/tag_rollups.py).

    Call it once the batch's new rows are inserted and before its changes are applied
    (``lead_changes`` merged to one per lead): a cost or status change is counted against
    the value it replaces, which stays locked until the batch commits. ``per_lead``
    locks every lead the batch counts for, first, so that no other batch changes their
    tracking fields before this one commits.
    """
    deltas = new_rows(leads, events, per_lead=per_lead)
    ids = list({change.conversion_id: None for change in conversion_changes})
    costed = [change for change in lead_changes if change.cost_micro is not None]
    locked = sorted({change.transaction_id for change in costed})
    if per_lead:
        owners = [row[0] for row in await conn.fetch(_CONVERSION_LEADS, ids)] if ids else []
        locked = sorted({*locked, *(event.transaction_id for event in events),
                         *(change.transaction_id for change in lead_changes), *owners})
    if locked:
        rows = await conn.fetch(_STORED_LEADS, locked)
        cost_changes(deltas, costed, {row[0]: tuple(row[1:]) for row in rows},
                     per_lead=per_lead)
    if ids:
        rows = await conn.fetch(_STORED_CONVERSIONS, ids)
        status_changes(deltas, conversion_changes, {row[0]: tuple(row[1:]) for row in rows},
                       per_lead=per_lead)
    summed = hourly(deltas) if per_lead else deltas
    if summed:
        # Money as text: a batch's delta may pass 64 bits, which JSON numbers here cannot.
        await conn.execute(UPSERT, _rows.encode(
            [[*key, *(str(value) if name in MONEY else value
                      for name, value in zip(FIGURES, summed[key], strict=True))]
             for key in sorted(summed)]).decode())
    return deltas
