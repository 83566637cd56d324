"""The PostgreSQL writer: the same queue and batches as SQLite's, one transaction a batch.

Each table's rows of a whole batch go in one statement (a JSON array unpacked by
``jsonb_array_elements``), so concurrent requests share the round trips and the commit.
The second insert of a fire-once event breaks the ``events_fire_once`` index; that op alone
fails, with DuplicateEvent, and its answer is the duplicate rule's. The hourly roll-ups
(storage/postgres/rollups.py) change in the batch's transaction.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec
from asyncpg.pool import PoolConnectionProxy

from storage.postgres import rollups
from storage.records import (
    AnswerRow,
    AttemptRow,
    ConversionChange,
    EventRow,
    LeadChange,
    LeadRow,
    PostbackChange,
    PostbackRow,
    WriteOp,
)
from storage.writer import BatchWriter, DuplicateEvent, _merge_lead_changes

# Columns that are not text, by name (AnswerRow's status is its HTTP status code).
_TYPES = {
    "once": "boolean", "conversion": "boolean", "cost_micro": "bigint",
    "revenue_micro": "bigint", "payout_micro": "bigint", "max_attempts": "integer",
    "attempts": "integer", "postback_id": "bigint", "attempt": "integer",
    "status_code": "integer", "latency_ms": "double precision", "last_status_code": "integer",
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
_INSERT_POSTBACKS = _bulk_insert("postbacks", PostbackRow)
_INSERT_ATTEMPTS = _bulk_insert("postback_attempts", AttemptRow)
_INSERT_CONVERSION_CHANGES = _bulk_insert("conversion_changes", ConversionChange)
_INSERT_ANSWERS = (_bulk_insert("idempotency_keys", AnswerRow, {"status": "integer"})
                   + " ON CONFLICT (key) DO NOTHING")
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
_UPDATE_POSTBACKS = f"""
UPDATE postbacks SET
    status = c.status, attempts = c.attempts, max_attempts = c.max_attempts,
    next_attempt_at = c.next_attempt_at, last_status_code = c.last_status_code,
    last_error = c.last_error, updated_at = c.updated_at, claimed_until = NULL
FROM (SELECT {_columns(PostbackChange)} FROM jsonb_array_elements($1::jsonb) AS v) AS c
WHERE postbacks.id = c.postback_id
"""
_UPDATE_CONVERSIONS = f"""
UPDATE events SET status = c.to_status, decided_at = c.changed_at
FROM (SELECT {_columns(ConversionChange)} FROM jsonb_array_elements($1::jsonb) AS v) AS c
WHERE events.conversion_id = c.conversion_id
"""
_rows = msgspec.json.Encoder()

# Errors that no retry can cure: the op itself is wrong and is refused alone.
_PERMANENT = (DuplicateEvent, asyncpg.IntegrityConstraintViolationError, asyncpg.DataError,
              ValueError, TypeError)


async def _execute(conn: PoolConnectionProxy, steps: list[tuple[str, list[Any]]]) -> None:
    for sql, rows in steps:
        if not rows:
            continue
        try:
            await conn.execute(sql, _rows.encode(rows).decode())
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name == "events_fire_once":
                raise DuplicateEvent from exc
            raise


class PostgresWriter(BatchWriter):
    permanent = _PERMANENT
    task_name = "postgres-writer"

    def __init__(self, pool: asyncpg.Pool, **options: Any) -> None:
        super().__init__(**options)
        self._pool = pool

    async def _apply(self, ops: list[WriteOp]) -> None:
        leads = [op.lead for op in ops if op.lead is not None]
        events = [op.event for op in ops if op.event is not None]
        changes = [op.change for op in ops if op.change is not None]
        lead_changes = _merge_lead_changes(changes) if len(changes) > 1 else changes
        conversion_changes = [change for op in ops for change in op.conversion_changes]
        answers = [op.answer for op in ops if op.answer is not None]
        # The last state of a postback, and of a conversion, is the one to keep.
        postback_changes = {op.postback_change.postback_id: op.postback_change
                            for op in ops if op.postback_change is not None}
        last_changes = {change.conversion_id: change for change in conversion_changes}
        # Fixed order: a row is inserted before rows that refer to it and changes to it.
        inserts: list[tuple[str, list[Any]]] = [(_INSERT_LEADS, leads),
                                                (_INSERT_EVENTS, events)]
        steps: list[tuple[str, list[Any]]] = [
            (_UPDATE_LEADS, lead_changes),
            (_INSERT_POSTBACKS, [row for op in ops for row in op.postbacks]),
            (_INSERT_ATTEMPTS, [op.attempt for op in ops if op.attempt is not None]),
            (_UPDATE_POSTBACKS, list(postback_changes.values())),
            (_INSERT_CONVERSION_CHANGES, conversion_changes),
            (_UPDATE_CONVERSIONS, list(last_changes.values())),
            (_INSERT_ANSWERS, answers),
        ]
        async with self._pool.acquire() as conn, conn.transaction():
            if answers:
                await conn.execute(_PURGE_ANSWERS, min(row.created_at for row in answers))
            await _execute(conn, inserts)
            # The roll-ups count a change against the stored value it replaces.
            await rollups.record(conn, leads, events, lead_changes, conversion_changes)
            await _execute(conn, steps)

    async def _rollback(self) -> None:
        """Nothing to do: the transaction's context rolled it back."""
