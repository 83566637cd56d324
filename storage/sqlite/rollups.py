"""SQLite's hourly roll-ups table: its upsert, its recount and a batch's record.

The deltas come from storage/rollups.py's pure functions; only the SQL lives here.

SQLite's integers stop at 2^63 and an addition past it silently turns into a float, so
each money figure is kept as two integers: the column itself holds the low part, in
[0, 10^18), and ``<figure>_high`` the number of 10^18 millionths above it. Two low parts
add up to less than 2 * 10^18, far from overflowing, and the upsert carries into the
high part; the high part of the largest hour any client could fill stays tiny.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import msgspec

from storage.records import ConversionChange, EventRow, LeadChange, LeadRow
from storage.reports import BILLION, COUNT, SPLIT, join_sums, split_sum
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

UNIT = 10**18
_rows = msgspec.json.Encoder()
HIGH = tuple(f"{name}_high" for name in FIGURES if name in MONEY)
# How each figure of a stats row reads back as one exact integer (see join_sums): the low
# part split in two like any sum, then the high part.
READ_SHAPE = tuple((BILLION, 1, UNIT) if name in MONEY else COUNT for name in FIGURES)

# The table as migration 6 made it; migration 7 adds the high parts (ADD_HIGH).
CREATE = f"""
CREATE TABLE stats (
    hour TEXT NOT NULL,
    cid TEXT NOT NULL,
    pid TEXT NOT NULL,
    event_id TEXT NOT NULL,
    {", ".join(f"{name} INTEGER NOT NULL DEFAULT 0" for name in FIGURES)},
    PRIMARY KEY (hour, cid, pid, event_id)
) WITHOUT ROWID
"""

ADD_HIGH = tuple(f"ALTER TABLE stats ADD COLUMN {name} INTEGER NOT NULL DEFAULT 0"
                 for name in HIGH)

def _added(name: str) -> str:
    if name not in MONEY:
        return f"{name} = {name} + excluded.{name}"
    # Both sides refer to the row as it was: SQLite evaluates every SET on the old row.
    return (f"{name} = ({name} + excluded.{name}) % {UNIT}, {name}_high = {name}_high"
            f" + excluded.{name}_high + ({name} + excluded.{name}) / {UNIT}")


def upsert(table: str, keys: Sequence[str]) -> str:
    """One statement per batch: the rows travel as one JSON array, like the writer's
    inserts, each added to the row of its key ("WHERE true" lets SQLite parse the upsert
    clause after a SELECT)."""
    columns = (*keys, *FIGURES, *HIGH)
    return (f"INSERT INTO {table} ({', '.join(columns)}) SELECT "
            + ", ".join(f"json_extract(value, '$[{i}]')" for i in range(len(columns)))
            + f" FROM json_each(?) WHERE true ON CONFLICT ({', '.join(keys)}) DO UPDATE SET "
            + ", ".join(_added(name) for name in FIGURES))


UPSERT = upsert("stats", ("hour", "cid", "pid", "event_id"))


def stats_row(key: Sequence[str], figures: Sequence[int]) -> list[object]:
    """A row for UPSERT: the key, each figure (money as its low part), the high parts."""
    lows: list[int] = []
    highs: list[int] = []
    for name, value in zip(FIGURES, figures, strict=True):
        if name in MONEY:
            high, low = divmod(value, UNIT)  # low in [0, UNIT) for a negative delta too
            highs.append(high)
            lows.append(low)
        else:
            lows.append(value)
    return [*key, *lows, *highs]


def parts(leads: str = "") -> str:
    """Every stored figure as a row of (transaction_id, hour, cid, pid, event_id,
    *FIGURES): the same rules as the exact report queries. ``leads``: only those leads'
    (SQL giving a list of transaction ids)."""
    def only(column: str) -> str:
        return f" AND {column} IN ({leads})" if leads else ""

    return " UNION ALL ".join((
        f"SELECT transaction_id, substr(created_at, 1, 13) AS hour, cid, pid,"
        f" '{NO_EVENT}' AS event_id, 1 AS clicks, coalesce(cost_micro, 0) AS cost,"
        " 0 AS events, 0 AS conversions, 0 AS revenue, 0 AS payout,"
        " 0 AS pending_conversions, 0 AS pending_revenue, 0 AS reversals,"
        f" 0 AS reversed_revenue, 0 AS reversed_payout FROM leads WHERE true"
        f"{only('transaction_id')}",
        "SELECT transaction_id, substr(fired_at, 1, 13), cid, pid, event_id, 0, 0, 1, 0, 0,"
        f" 0, 0, 0, 0, 0, 0 FROM events WHERE true{only('transaction_id')}",
        "SELECT transaction_id, substr(converted_at, 1, 13), cid, pid, event_id, 0, 0, 0,"
        " status IN ('approved', 'reversed'),"
        " CASE WHEN status IN ('approved', 'reversed') THEN coalesce(revenue_micro, 0)"
        " ELSE 0 END,"
        " CASE WHEN status IN ('approved', 'reversed') THEN coalesce(payout_micro, 0)"
        " ELSE 0 END,"
        " status = 'pending',"
        " CASE WHEN status = 'pending' THEN coalesce(revenue_micro, 0) ELSE 0 END, 0, 0, 0"
        f" FROM events WHERE conversion = 1 AND status != 'rejected'"
        f"{only('transaction_id')}",
        "SELECT e.transaction_id, substr(c.changed_at, 1, 13), e.cid, e.pid, e.event_id,"
        " 0, 0, 0, 0, 0, 0, 0, 0, 1, coalesce(e.revenue_micro, 0),"
        " coalesce(e.payout_micro, 0)"
        " FROM conversion_changes AS c JOIN events AS e ON e.conversion_id = c.conversion_id"
        f" WHERE c.to_status = 'reversed'{only('e.transaction_id')}",
    ))


# Each money figure's recount is split in two sums (see split_sum): a month of the
# largest conversions sums past 2^63 in SQL, never in Python.
SUMS = ", ".join(split_sum(name) if name in MONEY else f"sum({name})" for name in FIGURES)
RECOUNT_SHAPE = tuple(SPLIT if name in MONEY else COUNT for name in FIGURES)
_RECOUNT = (f"SELECT hour, cid, pid, event_id, {SUMS} FROM ({parts()})"
            " GROUP BY hour, cid, pid, event_id")


def recount(conn: sqlite3.Connection) -> int:
    """Replace the roll-ups by a recount of the stored rows, exact; how many rows."""
    conn.execute("DELETE FROM stats")
    rows = join_sums(conn.execute(_RECOUNT), 4, RECOUNT_SHAPE)
    for start in range(0, len(rows), 10_000):
        conn.execute(UPSERT, (_rows.encode(
            [stats_row(row[:4], row[4:]) for row in rows[start:start + 10_000]]).decode(),))
    return len(rows)


_ids = msgspec.json.Encoder()


def record(conn: sqlite3.Connection, leads: Sequence[LeadRow],
           events: Sequence[EventRow], lead_changes: Sequence[LeadChange],
           conversion_changes: Sequence[ConversionChange], *,
           per_lead: bool = False) -> Deltas:
    """Add a batch to the roll-ups, inside the batch's transaction; its deltas come back,
    counted per lead when ``per_lead`` (for storage/sqlite/tag_rollups.py).

    Call it once the batch's new rows are inserted and before its changes are applied:
    a cost or status change is counted against the value it replaces.
    """
    deltas = new_rows(leads, events, per_lead=per_lead)
    costed = [change for change in lead_changes if change.cost_micro is not None]
    if costed:
        rows = conn.execute(
            "SELECT transaction_id, created_at, cid, pid, cost_micro FROM leads"
            " WHERE transaction_id IN (SELECT value FROM json_each(?))",
            (_ids.encode([change.transaction_id for change in costed]).decode(),)).fetchall()
        cost_changes(deltas, costed, {row[0]: tuple(row[1:]) for row in rows},
                     per_lead=per_lead)
    if conversion_changes:
        ids = list({change.conversion_id: None for change in conversion_changes})
        rows = conn.execute(
            "SELECT conversion_id, status, cid, pid, event_id, converted_at, revenue_micro,"
            " payout_micro, transaction_id FROM events WHERE conversion_id IN"
            " (SELECT value FROM json_each(?))", (_ids.encode(ids).decode(),)).fetchall()
        status_changes(deltas, conversion_changes, {row[0]: tuple(row[1:]) for row in rows},
                       per_lead=per_lead)
    if deltas:
        conn.execute(UPSERT, (encoded(hourly(deltas) if per_lead else deltas),))
    return deltas


def encoded(deltas: Deltas) -> str:
    return _rows.encode([stats_row(key, figures) for key, figures in deltas.items()]).decode()
