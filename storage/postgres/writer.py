"""The PostgreSQL writer: the same queue and batches as SQLite's, one transaction a batch.

Each table's rows of a whole batch go in one statement (a JSON array unpacked by
``jsonb_array_elements``), so concurrent requests share the round trips and the commit.
The second insert of a fire-once event breaks the ``events_fire_once`` index; that op alone
fails, with DuplicateEvent, and its answer is the duplicate rule's. The hourly roll-ups
(storage/postgres/rollups.py) change in the batch's transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec
import structlog
from asyncpg.pool import PoolConnectionProxy

from storage.endpoints import EndpointOutcome
from storage.errors import (
    CapReached,
    ConversionConflict,
    DuplicateEvent,
    LeadExists,
    PostbackBeingSent,
)
from storage.money import micro, money_text, money_value
from storage.postgres import caps, catalog, endpoints, rollups
from storage.postgres.lead_keys import INSERT as _INSERT_LEAD_KEYS
from storage.postgres.tag_rollups import TagBatch
from storage.records import (
    RESERVED,
    AnswerRow,
    AttemptRow,
    ConversionChange,
    EventRow,
    LeadChange,
    LeadRow,
    PostbackChange,
    WriteOp,
)
from storage.writer import (
    BatchRows,
    BatchWriter,
    merge_lead_changes,
    note_paused,
    postback_rounds,
    recorded_outcomes,
)

# Columns that are not text, by name (AnswerRow's status is its HTTP status code).
_TYPES = {
    "once": "boolean", "conversion": "boolean", "cost_micro": "bigint",
    "revenue_micro": "bigint", "payout_micro": "bigint", "max_attempts": "integer",
    "attempts": "integer", "postback_id": "bigint", "attempt": "integer",
    "status_code": "integer", "latency_ms": "double precision", "last_status_code": "integer",
    "resend": "boolean", "lease": "timestamptz", "deferred": "boolean",
}


def _columns(row: type[msgspec.Struct], types: dict[str, str] | None = None) -> str:
    """``(v->>0)::type AS name, ...`` for a row sent as a JSON array in field order."""
    types = _TYPES | (types or {})
    return ", ".join(f"(v->>{i})::{types.get(name, 'text')} AS {name}"
                     for i, name in enumerate(row.__struct_fields__))


def _bulk_insert(table: str, row: type[msgspec.Struct],
                 types: dict[str, str] | None = None) -> str:
    names = ", ".join(row.__struct_fields__)
    return (f"INSERT INTO {table} ({names}) SELECT {_columns(row, types)}"
            " FROM jsonb_array_elements($1::jsonb) AS v")


_INSERT_LEADS = _bulk_insert("leads", LeadRow)
_INSERT_EVENTS = _bulk_insert("events", EventRow)
_INSERT_POSTBACKS = endpoints.insert_postbacks()
_INSERT_ATTEMPTS = _bulk_insert("postback_attempts", AttemptRow)
_INSERT_CONVERSION_CHANGES = _bulk_insert("conversion_changes", ConversionChange)
# An answer takes the place of its key's reservation (storage.postgres.queries), never of
# another answer.
_INSERT_ANSWERS = (
    _bulk_insert("idempotency_keys AS k", AnswerRow, {"status": "integer"})
    + " ON CONFLICT (key) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in AnswerRow.__struct_fields__[1:])
    + f" WHERE k.status = {RESERVED}")
_RELEASE_KEYS = (f"DELETE FROM idempotency_keys WHERE status = {RESERVED}"
                 " AND key IN (SELECT jsonb_array_elements_text($1::jsonb))")
_PURGE_ANSWERS = "DELETE FROM idempotency_keys WHERE expires_at <= $1"
# A JSON merge patch of flat fields: the patch's keys win, a null removes its key.
_UPDATE_LEADS = f"""
UPDATE leads SET
    fields = CASE WHEN c.fields_patch IS NULL THEN leads.fields ELSE
        ((leads.fields::jsonb || c.fields_patch::jsonb)
         - ARRAY(SELECT key FROM jsonb_each(c.fields_patch::jsonb)
                 WHERE value = 'null'::jsonb))::text END,
    cost = coalesce(c.cost, leads.cost),
    cost_micro = coalesce(c.cost_micro, leads.cost_micro)
FROM (SELECT {_columns(LeadChange)} FROM jsonb_array_elements($1::jsonb) AS v) AS c
WHERE leads.transaction_id = c.transaction_id
"""
# Only from the state the change was decided from (see PostbackChange), which every
# process reads the same: an attempt's outcome lands while its lease is the one the
# postback holds (a lease taken since by another process has another claimed_until), a
# resend only once no lease is live ($2 stands in for the database's clock in tests). An
# outcome also lands on a postback its endpoint paused while it was being sent (see the
# SQLite writer). A delivered postback is never made pending again.
_UPDATE_POSTBACKS = f"""
UPDATE postbacks SET
    status = CASE WHEN postbacks.status = 'paused' AND c.status = 'pending' AND NOT c.resend
                  THEN 'paused' ELSE c.status END,
    attempts = c.attempts, max_attempts = c.max_attempts,
    next_attempt_at = c.next_attempt_at,
    last_status_code = CASE WHEN c.deferred THEN postbacks.last_status_code
                            ELSE c.last_status_code END,
    last_error = CASE WHEN c.deferred THEN postbacks.last_error ELSE c.last_error END,
    updated_at = c.updated_at, claimed_until = NULL,
    requeued_by = CASE WHEN c.resend THEN c.token ELSE postbacks.requeued_by END
FROM (SELECT {_columns(PostbackChange)} FROM jsonb_array_elements($1::jsonb) AS v) AS c
WHERE postbacks.id = c.postback_id AND CASE WHEN c.resend
    THEN postbacks.status <> 'delivered' AND postbacks.attempts = c.attempts
         AND (postbacks.claimed_until IS NULL
              OR postbacks.claimed_until <= coalesce($2::timestamptz, now()))
    WHEN c.deferred THEN postbacks.status = 'pending' AND postbacks.attempts = c.attempts
         AND (c.lease IS NULL OR postbacks.claimed_until = c.lease)
    ELSE postbacks.status IN ('pending', 'paused') AND postbacks.attempts = c.attempts - 1
         AND (c.lease IS NULL OR postbacks.claimed_until = c.lease) END
RETURNING postbacks.id
"""
# Compare-and-set: a conversion moves only from the status its change was decided from,
# which another process may have changed since it was read.
_UPDATE_CONVERSIONS = """
UPDATE events SET status = c.to_status, decided_at = c.changed_at
FROM (SELECT v->>0 AS conversion_id, v->>1 AS from_status, v->>2 AS to_status,
             v->>3 AS changed_at FROM jsonb_array_elements($1::jsonb) AS v) AS c
WHERE events.conversion_id = c.conversion_id AND events.status = c.from_status
"""
_rows = msgspec.json.Encoder()
# A batch's token, in its own transaction: a retry after a connection lost at COMMIT finds
# it there when the commit went through, and writes nothing twice (an event that may fire
# more than once would otherwise be stored again). Tokens are kept a day.
_MARK_BATCH = ("INSERT INTO committed_batches (token) VALUES ($1) ON CONFLICT DO NOTHING"
               " RETURNING 1")
_PRUNE_BATCHES = "DELETE FROM committed_batches WHERE committed_at < now() - interval '1 day'"
_PRUNE_EVERY = 1000
log = structlog.get_logger("storage.writer")

# Errors that no retry can cure: the op itself is wrong and is refused alone.
_PERMANENT = (DuplicateEvent, LeadExists, ConversionConflict, PostbackBeingSent, CapReached,
              asyncpg.IntegrityConstraintViolationError, asyncpg.DataError, ValueError, TypeError)


async def _execute(conn: PoolConnectionProxy, steps: list[tuple[str, list[Any]]]) -> None:
    for sql, rows in steps:
        if not rows:
            continue
        try:
            done = await conn.execute(sql, _rows.encode(rows).decode())
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name == "events_fire_once":
                raise DuplicateEvent from exc
            if exc.constraint_name == "leads_pkey":
                raise LeadExists from exc
            raise
        if sql is _UPDATE_CONVERSIONS and done != f"UPDATE {len(rows)}":
            raise ConversionConflict


class PostgresWriter(BatchWriter):
    permanent = _PERMANENT
    task_name = "postgres-writer"

    def __init__(self, pool: asyncpg.Pool, *,
                 db_clock: Callable[[], datetime] | None = None, **options: Any) -> None:
        super().__init__(**options)
        self._pool = pool
        self._db_clock = db_clock

    async def _apply(self, ops: list[WriteOp]) -> None:
        batch = BatchRows.of(ops)
        # Per conversion: the status the batch's first change found, the last one's result.
        moves: dict[str, list[str]] = {}
        for change in batch.conversion_changes:
            found = moves.setdefault(change.conversion_id, [change.from_status, "", ""])
            found[1:] = change.to_status, change.changed_at
        # Fixed order: a row is inserted before rows that refer to it and changes to it.
        async with self._pool.acquire() as conn, conn.transaction():
            if await conn.fetchval(_MARK_BATCH, self.batch_token) is None:
                return  # an earlier attempt committed, and only its answer was lost
            if self.batches_committed % _PRUNE_EVERY == 0:
                await conn.execute(_PRUNE_BATCHES)
            if batch.answers:
                await conn.execute(_PURGE_ANSWERS,
                                   min(row.created_at for row in batch.answers))
            await _execute(conn, [(_INSERT_LEADS, batch.leads),
                                  (_INSERT_EVENTS, batch.events),
                                  (_INSERT_LEAD_KEYS, batch.lead_keys)])
            await caps.charge(conn, [charge for op in ops for charge in op.cap_charges])
            lead_changes = merge_lead_changes(await _decide_costs(conn, batch.changes))
            # The roll-ups count a change against the stored value it replaces.
            tags = await TagBatch.begin(conn)
            counted = await rollups.record(conn, batch.leads, batch.events, lead_changes,
                                           batch.conversion_changes, per_lead=tags is not None)
            if tags is not None:
                await tags.count(conn, counted, lead_changes)
            await _execute(conn, [
                (_UPDATE_LEADS, lead_changes),
                (_INSERT_POSTBACKS, batch.postbacks),
            ])
            outcomes = await self._change_postbacks(conn, ops)
            paused = await endpoints.record(conn, outcomes)
            await endpoints.requeue(conn, [op.requeue for op in ops if op.requeue is not None])
            await catalog.insert(conn, [op.catalog for op in ops if op.catalog is not None])
            await _execute(conn, [
                (_INSERT_ATTEMPTS, [op.attempt for op in ops
                                    if op.attempt is not None and op.postback_change is None]),
                (_INSERT_CONVERSION_CHANGES, batch.conversion_changes),
                (_UPDATE_CONVERSIONS, [[conversion_id, *move] for conversion_id, move
                                       in moves.items()]),
                (_INSERT_ANSWERS, batch.answers),
                (_RELEASE_KEYS, batch.released_keys),
            ])
            await caps.give_back(conn, [conversion_id for conversion_id, move in moves.items()
                                        if move[1] in ("rejected", "reversed")])
            if tags is not None:
                await tags.finish(conn)  # after every change: new field values are stored
        note_paused(paused)

    async def _change_postbacks(self, conn: PoolConnectionProxy,
                                ops: list[WriteOp]) -> list[EndpointOutcome]:
        """Each postback change that still finds its state, with its attempt; an attempt
        whose change found another state is not recorded (another process has taken or
        delivered the postback since), a resend that did not apply refuses its op. The
        recorded attempts' outcomes come back, for their endpoints' health."""
        db_now = None if self._db_clock is None else self._db_clock()
        outcomes = []
        for round_ops in postback_rounds(ops):
            changes = [op.postback_change for op in round_ops]
            applied = {row[0] for row in await conn.fetch(
                _UPDATE_POSTBACKS, _rows.encode(changes).decode(), db_now)}
            attempts = []
            for op in round_ops:
                change = op.postback_change
                assert change is not None
                if change.postback_id not in applied:
                    if change.resend:
                        raise PostbackBeingSent
                    log.warning("postback_attempt_not_recorded",
                                postback_id=change.postback_id, reason="lease_lost")
                elif op.attempt is not None:
                    attempts.append(op.attempt)
            await _execute(conn, [(_INSERT_ATTEMPTS, attempts)])
            outcomes += recorded_outcomes(round_ops, applied)
        return outcomes

    async def _rollback(self) -> None:
        """Nothing to do: the transaction's context rolled it back."""


async def _decide_costs(conn: PoolConnectionProxy,
                        changes: list[LeadChange]) -> list[LeadChange]:
    """Each add or subtract applied, in order, to the lead's cost as stored now.

    The rows of every lead whose cost changes stay locked until the batch commits (in
    key order, as the roll-ups lock them), so another process changing the same cost
    waits for this batch and builds on its result: no change is lost.
    """
    if not any(change.cost_delta is not None for change in changes):
        return changes
    costed = sorted({change.transaction_id for change in changes if change.cost is not None})
    rows = await conn.fetch(
        "SELECT transaction_id, cost FROM leads WHERE transaction_id = ANY($1::text[])"
        " ORDER BY transaction_id FOR NO KEY UPDATE", costed)
    costs = {transaction_id: money_value(cost) or Decimal(0) for transaction_id, cost in rows}
    decided = []
    for change in changes:
        known = costs.get(change.transaction_id)
        if known is not None and change.cost_delta is not None:
            cost = known + Decimal(change.cost_delta)
            change = msgspec.structs.replace(change, cost=money_text(cost),
                                             cost_micro=micro(cost), cost_delta=None)
        if known is not None and change.cost is not None:
            costs[change.transaction_id] = Decimal(change.cost)
        decided.append(change)
    return decided
