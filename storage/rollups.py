"""Hourly roll-ups: what reports count, summed per UTC hour, cid, pid and event id.

Each store's writer adds a batch's deltas, computed here, in the transaction that stores
the batch, so the ``stats`` table always equals a recount of the rows it sums (each
store's ``REBUILD`` is that recount). Leads have no event id: theirs is ``''``.

Each figure lands in the hour of the time the exact report reads it by: clicks and cost
at the lead's ``created_at``, events at ``fired_at``, conversions at ``converted_at`` (by
status: approved and reversed ones count, pending ones apart, rejected ones not at all)
and reversals at the ``changed_at`` of the change. Money is in millionths, as integers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from storage.records import ConversionChange, EventRow, LeadChange, LeadRow

# The figures of a stats row, in column order.
FIGURES = ("clicks", "cost", "events", "conversions", "revenue", "payout",
           "pending_conversions", "pending_revenue", "reversals", "reversed_revenue",
           "reversed_payout")
(CLICKS, COST, EVENTS, CONVERSIONS, REVENUE, PAYOUT, PENDING, PENDING_REVENUE, REVERSALS,
 REVERSED_REVENUE, REVERSED_PAYOUT) = range(len(FIGURES))
NO_EVENT = ""
# The figures that are money (millionths): their sums may pass 64 bits (ten conversions of
# the largest accepted amount in one hour and key already do), so each store keeps them
# exactly: PostgreSQL as numeric, SQLite as two integers (see storage/sqlite/rollups.py).
MONEY = frozenset({"cost", "revenue", "payout", "pending_revenue", "reversed_revenue",
                   "reversed_payout"})

# UTC hour ("2026-11-28T17"), cid, pid, event id; counted per lead (``per_lead``), the
# lead's transaction id last.
Key = tuple[str, ...]
Deltas = dict[Key, list[int]]

def _counted(status: str | None) -> bool:
    return status in ("approved", "reversed")


def _lead(found: tuple[Any, ...], per_lead: bool) -> tuple[str, ...]:
    """The key's last part when counted per lead: the stored conversion's lead."""
    return (found[7],) if per_lead else ()


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


def new_rows(leads: Sequence[LeadRow], events: Sequence[EventRow], *,
             per_lead: bool = False) -> Deltas:
    """What newly stored leads and events add (the hot path: no reads, a dict per batch).

    ``per_lead``: each key ends with the lead's transaction id (see ``hourly``).
    """
    deltas: Deltas = {}
    for lead in leads:
        row = _row(deltas, (lead.created_at[:13], lead.cid, lead.pid, NO_EVENT,
                            *((lead.transaction_id,) if per_lead else ())))
        row[CLICKS] += 1
        if lead.cost_micro:
            row[COST] += lead.cost_micro
    for event in events:
        of = (event.transaction_id,) if per_lead else ()
        _row(deltas, (event.fired_at[:13], event.cid, event.pid, event.event_id, *of)
             )[EVENTS] += 1
        if event.conversion and event.converted_at is not None:
            _conversion(deltas, (event.converted_at[:13], event.cid, event.pid,
                                 event.event_id, *of),
                        event.status, event.revenue_micro, event.payout_micro, 1)
    return deltas


def hourly(per_lead: Deltas) -> Deltas:
    """Deltas counted per lead, summed over the leads: the ``stats`` table's."""
    deltas: Deltas = {}
    for key, figures in per_lead.items():
        row = _row(deltas, key[:4])
        for at, value in enumerate(figures):
            row[at] += value
    return deltas


def cost_changes(deltas: Deltas, changes: Iterable[LeadChange],
                 stored: dict[str, tuple[Any, ...]], *, per_lead: bool = False) -> None:
    """A lead's cost, moved from its stored value to the change's, at its creation hour.

    ``changes`` holds at most one change per lead (the writer merges them); ``stored`` is
    each lead's (created_at, cid, pid, cost_micro) before the batch changes it.
    """
    for change in changes:
        if change.cost_micro is None or change.transaction_id not in stored:
            continue
        created_at, cid, pid, before = stored[change.transaction_id][:4]
        of = (change.transaction_id,) if per_lead else ()
        _row(deltas, (created_at[:13], cid, pid, NO_EVENT, *of))[COST] += (
            change.cost_micro - (before or 0))


def status_changes(deltas: Deltas, changes: Sequence[ConversionChange],
                   stored: dict[str, tuple[Any, ...]], *, per_lead: bool = False) -> None:
    """A conversion moved from its stored status to the last one of the batch; reversals.

    ``stored`` is each conversion's (status, cid, pid, event_id, converted_at,
    revenue_micro, payout_micro) before the batch changes it, then, ``per_lead``, its
    lead's transaction id. Every change to "reversed" counts a reversal when it happened,
    as the audit trail keeps one row per change.
    """
    last = {change.conversion_id: change.to_status for change in changes}
    for conversion_id, status in last.items():
        if conversion_id not in stored:
            continue
        before, cid, pid, event_id, converted_at, revenue, payout = stored[conversion_id][:7]
        key = (converted_at[:13], cid, pid, event_id, *_lead(stored[conversion_id], per_lead))
        _conversion(deltas, key, before, revenue, payout, -1)
        _conversion(deltas, key, status, revenue, payout, 1)
    for change in changes:
        if change.to_status != "reversed" or change.conversion_id not in stored:
            continue
        _, cid, pid, event_id, _, revenue, payout = stored[change.conversion_id][:7]
        row = _row(deltas, (change.changed_at[:13], cid, pid, event_id,
                            *_lead(stored[change.conversion_id], per_lead)))
        row[REVERSALS] += 1
        row[REVERSED_REVENUE] += revenue or 0
        row[REVERSED_PAYOUT] += payout or 0
