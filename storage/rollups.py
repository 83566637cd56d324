"""Hourly roll-ups: what reports count, summed per UTC hour, cid, pid and event id.

The writer adds each batch's deltas in the transaction that stores the batch, so the
``stats`` table always equals a recount of the rows it sums (``REBUILD`` is that recount,
run by the migration that adds the table). Leads have no event id: theirs is ``''``.

Each figure lands in the hour of the time the exact report reads it by: clicks and cost
at the lead's ``created_at``, events at ``fired_at``, conversions at ``converted_at`` (by
status: approved and reversed ones count, pending ones apart, rejected ones not at all)
and reversals at the ``changed_at`` of the change. Money is in millionths, as integers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import aiosqlite
import msgspec

from storage.records import ConversionChange, EventRow, LeadChange, LeadRow

# The figures of a stats row, in column order.
FIGURES = ("clicks", "cost", "events", "conversions", "revenue", "payout",
           "pending_conversions", "pending_revenue", "reversals", "reversed_revenue",
           "reversed_payout")
(CLICKS, COST, EVENTS, CONVERSIONS, REVENUE, PAYOUT, PENDING, PENDING_REVENUE, REVERSALS,
 REVERSED_REVENUE, REVERSED_PAYOUT) = range(len(FIGURES))
NO_EVENT = ""

Key = tuple[str, str, str, str]  # UTC hour ("2026-11-28T17"), cid, pid, event id
Deltas = dict[Key, list[int]]

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

_COLUMNS = ("hour", "cid", "pid", "event_id", *FIGURES)
# One statement per batch: the rows travel as one JSON array, like the writer's inserts.
# "WHERE true" lets SQLite parse the upsert clause after a SELECT.
UPSERT = (
    f"INSERT INTO stats ({', '.join(_COLUMNS)}) SELECT "
    + ", ".join(f"json_extract(value, '$[{i}]')" for i in range(len(_COLUMNS)))
    + " FROM json_each(?) WHERE true ON CONFLICT (hour, cid, pid, event_id) DO UPDATE SET "
    + ", ".join(f"{name} = {name} + excluded.{name}" for name in FIGURES)
)


def _counted(status: str | None) -> bool:
    return status in ("approved", "reversed")


# The recount from the stored rows: the same rules as the exact report queries.
_PARTS = (
    f"SELECT substr(created_at, 1, 13) AS hour, cid, pid, '{NO_EVENT}' AS event_id,"
    " 1 AS clicks, coalesce(cost_micro, 0) AS cost, 0 AS events, 0 AS conversions,"
    " 0 AS revenue, 0 AS payout, 0 AS pending_conversions, 0 AS pending_revenue,"
    " 0 AS reversals, 0 AS reversed_revenue, 0 AS reversed_payout FROM leads",
    "SELECT substr(fired_at, 1, 13), cid, pid, event_id, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0"
    " FROM events",
    "SELECT substr(converted_at, 1, 13), cid, pid, event_id, 0, 0, 0,"
    " status IN ('approved', 'reversed'),"
    " CASE WHEN status IN ('approved', 'reversed') THEN coalesce(revenue_micro, 0) ELSE 0 END,"
    " CASE WHEN status IN ('approved', 'reversed') THEN coalesce(payout_micro, 0) ELSE 0 END,"
    " status = 'pending',"
    " CASE WHEN status = 'pending' THEN coalesce(revenue_micro, 0) ELSE 0 END, 0, 0, 0"
    " FROM events WHERE conversion = 1 AND status != 'rejected'",
    "SELECT substr(c.changed_at, 1, 13), e.cid, e.pid, e.event_id, 0, 0, 0, 0, 0, 0, 0, 0,"
    " 1, coalesce(e.revenue_micro, 0), coalesce(e.payout_micro, 0)"
    " FROM conversion_changes AS c JOIN events AS e ON e.conversion_id = c.conversion_id"
    " WHERE c.to_status = 'reversed'",
)
REBUILD = (
    f"INSERT INTO stats ({', '.join(_COLUMNS)})"
    f" SELECT hour, cid, pid, event_id, {', '.join(f'sum({name})' for name in FIGURES)}"
    f" FROM ({' UNION ALL '.join(_PARTS)}) GROUP BY hour, cid, pid, event_id"
)

_rows = msgspec.json.Encoder()
_ids = msgspec.json.Encoder()


def _row(deltas: Deltas, key: Key) -> list[int]:
    found = deltas.get(key)
    if found is None:
        found = deltas[key] = [0] * len(FIGURES)
    return found


def _conversion(deltas: Deltas, key: Key, status: str | None, revenue: int | None,
                payout: int | None, sign: int) -> None:
    """Add (sign 1) or take off (sign -1) what a conversion in ``status`` counts."""
    if _counted(status):
        row = _row(deltas, key)
        row[CONVERSIONS] += sign
        row[REVENUE] += sign * (revenue or 0)
        row[PAYOUT] += sign * (payout or 0)
    elif status == "pending":
        row = _row(deltas, key)
        row[PENDING] += sign
        row[PENDING_REVENUE] += sign * (revenue or 0)


def new_rows(leads: Sequence[LeadRow], events: Sequence[EventRow]) -> Deltas:
    """What newly stored leads and events add (the hot path: no reads, a dict per batch)."""
    deltas: Deltas = {}
    for lead in leads:
        row = _row(deltas, (lead.created_at[:13], lead.cid, lead.pid, NO_EVENT))
        row[CLICKS] += 1
        if lead.cost_micro:
            row[COST] += lead.cost_micro
    for event in events:
        key = (event.fired_at[:13], event.cid, event.pid, event.event_id)
        _row(deltas, key)[EVENTS] += 1
        if event.conversion and event.converted_at is not None:
            _conversion(deltas, (event.converted_at[:13], event.cid, event.pid,
                                 event.event_id),
                        event.status, event.revenue_micro, event.payout_micro, 1)
    return deltas


def cost_changes(deltas: Deltas, changes: Iterable[LeadChange],
                 stored: dict[str, tuple[Any, ...]]) -> None:
    """A lead's cost, moved from its stored value to the change's, at its creation hour.

    ``changes`` holds at most one change per lead (the writer merges them); ``stored`` is
    each lead's (created_at, cid, pid, cost_micro) before the batch changes it.
    """
    for change in changes:
        if change.cost_micro is None or change.transaction_id not in stored:
            continue
        created_at, cid, pid, before = stored[change.transaction_id]
        _row(deltas, (created_at[:13], cid, pid, NO_EVENT))[COST] += (
            change.cost_micro - (before or 0))


def status_changes(deltas: Deltas, changes: Sequence[ConversionChange],
                   stored: dict[str, tuple[Any, ...]]) -> None:
    """A conversion moved from its stored status to the last one of the batch; reversals.

    ``stored`` is each conversion's (status, cid, pid, event_id, converted_at,
    revenue_micro, payout_micro) before the batch changes it. Every change to "reversed"
    counts a reversal when it happened, as the audit trail keeps one row per change.
    """
    last = {change.conversion_id: change.to_status for change in changes}
    for conversion_id, status in last.items():
        if conversion_id not in stored:
            continue
        before, cid, pid, event_id, converted_at, revenue, payout = stored[conversion_id]
        key = (converted_at[:13], cid, pid, event_id)
        _conversion(deltas, key, before, revenue, payout, -1)
        _conversion(deltas, key, status, revenue, payout, 1)
    for change in changes:
        if change.to_status != "reversed" or change.conversion_id not in stored:
            continue
        _, cid, pid, event_id, _, revenue, payout = stored[change.conversion_id]
        row = _row(deltas, (change.changed_at[:13], cid, pid, event_id))
        row[REVERSALS] += 1
        row[REVERSED_REVENUE] += revenue or 0
        row[REVERSED_PAYOUT] += payout or 0


async def record(conn: aiosqlite.Connection, leads: Sequence[LeadRow],
                 events: Sequence[EventRow], lead_changes: Sequence[LeadChange],
                 conversion_changes: Sequence[ConversionChange]) -> None:
    """Add a batch to the roll-ups, inside the batch's transaction.

    Call it once the batch's new rows are inserted and before its changes are applied:
    a cost or status change is counted against the value it replaces.
    """
    deltas = new_rows(leads, events)
    costed = [change for change in lead_changes if change.cost_micro is not None]
    if costed:
        rows = await conn.execute_fetchall(
            "SELECT transaction_id, created_at, cid, pid, cost_micro FROM leads"
            " WHERE transaction_id IN (SELECT value FROM json_each(?))",
            (_ids.encode([change.transaction_id for change in costed]).decode(),))
        cost_changes(deltas, costed, {row[0]: tuple(row[1:]) for row in rows})
    if conversion_changes:
        ids = list({change.conversion_id: None for change in conversion_changes})
        rows = await conn.execute_fetchall(
            "SELECT conversion_id, status, cid, pid, event_id, converted_at, revenue_micro,"
            " payout_micro FROM events WHERE conversion_id IN"
            " (SELECT value FROM json_each(?))", (_ids.encode(ids).decode(),))
        status_changes(deltas, conversion_changes, {row[0]: tuple(row[1:]) for row in rows})
    if deltas:
        await conn.execute(UPSERT, (_rows.encode(
            [[*key, *figures] for key, figures in deltas.items()]).decode(),))
