"""SQLite's writer: each batch in one transaction on the store's one write connection."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from dataclasses import dataclass
from functools import partial
from typing import Any

import msgspec
import structlog

from storage.endpoints import EndpointOutcome
from storage.errors import CapReached, PostbackBeingSent
from storage.records import (
    AnswerRow,
    AttemptRow,
    ConversionChange,
    EventRow,
    LeadRow,
    WriteOp,
)
from storage.sqlite import caps, catalog, endpoints, rollups
from storage.sqlite.connection import WriteConnection
from storage.sqlite.lead_keys import INSERT as _INSERT_LEAD_KEYS
from storage.sqlite.tag_rollups import TagBatch
from storage.writer import (
    BatchRows,
    BatchWriter,
    merge_lead_changes,
    note_paused,
    postback_rounds,
    recorded_outcomes,
)

log = structlog.get_logger("storage.writer")


def _bulk_insert(table: str, row: type[msgspec.Struct]) -> str:
    """INSERT of a whole batch passed as one JSON array of rows (one array per row).

    SQLite unpacks it with json_each in a single statement step, so the batch costs one
    statement and one conversion of its rows, not one per row.
    """
    columns = row.__struct_fields__
    values = ", ".join(f"json_extract(value, '$[{i}]')" for i in range(len(columns)))
    return f"INSERT INTO {table} ({', '.join(columns)}) SELECT {values} FROM json_each(?)"


_INSERT_LEADS = _bulk_insert("leads", LeadRow)
_INSERT_EVENTS = _bulk_insert("events", EventRow)
_INSERT_POSTBACKS = endpoints.insert_postbacks()
_INSERT_ATTEMPTS = _bulk_insert("postback_attempts", AttemptRow)
# "WHERE true" lets SQLite parse the upsert clause after a SELECT. The first answer stored
# under a key is the one every retry gets.
_INSERT_ANSWERS = (_bulk_insert("idempotency_keys", AnswerRow)
                   + " WHERE true ON CONFLICT (key) DO NOTHING")
# IMMEDIATE: the batch takes the write lock as it begins, not at its first write.
_BEGIN = "BEGIN IMMEDIATE"
# Expired answers go whenever new ones are stored: the table holds about a day of keys.
_PURGE_ANSWERS = "DELETE FROM idempotency_keys WHERE expires_at <= ?"
# At most one change per row and batch (see _merge_lead_changes), as UPDATE ... FROM
# applies only one of several matches.
_UPDATE_LEADS = """
UPDATE leads SET
    fields = CASE WHEN c.patch IS NULL THEN leads.fields ELSE json_patch(leads.fields, c.patch) END,
    cost = coalesce(c.cost, leads.cost),
    cost_micro = coalesce(c.cost_micro, leads.cost_micro)
FROM (SELECT json_extract(value, '$[0]') AS transaction_id,
             json_extract(value, '$[1]') AS patch,
             json_extract(value, '$[2]') AS cost,
             json_extract(value, '$[3]') AS cost_micro
      FROM json_each(?)) AS c
WHERE leads.transaction_id = c.transaction_id
"""
# Only from the state the change was decided from (see PostbackChange): an attempt's
# outcome lands on the pending postback it was sent as (or one its endpoint paused while
# it was being sent: delivered, it is delivered; failed, it waits paused), a resend on
# one not delivered; a delivered postback is never made pending again.
_UPDATE_POSTBACKS = """
UPDATE postbacks SET
    status = CASE WHEN postbacks.status = 'paused' AND c.status = 'pending' AND NOT c.resend
                  THEN 'paused' ELSE c.status END,
    attempts = c.attempts, max_attempts = c.max_attempts,
    next_attempt_at = c.next_attempt_at,
    last_status_code = CASE WHEN c.deferred THEN postbacks.last_status_code
                            ELSE c.last_status_code END,
    last_error = CASE WHEN c.deferred THEN postbacks.last_error ELSE c.last_error END,
    updated_at = c.updated_at,
    requeued_by = CASE WHEN c.resend THEN c.token ELSE postbacks.requeued_by END
FROM (SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS status,
             json_extract(value, '$[2]') AS attempts, json_extract(value, '$[3]') AS max_attempts,
             json_extract(value, '$[4]') AS next_attempt_at,
             json_extract(value, '$[5]') AS last_status_code,
             json_extract(value, '$[6]') AS last_error, json_extract(value, '$[7]') AS updated_at,
             json_extract(value, '$[8]') AS resend, json_extract(value, '$[10]') AS deferred,
             json_extract(value, '$[11]') AS token
      FROM json_each(?)) AS c
WHERE postbacks.id = c.id AND CASE WHEN c.resend
    THEN postbacks.status <> 'delivered' AND postbacks.attempts = c.attempts
    WHEN c.deferred THEN postbacks.status = 'pending' AND postbacks.attempts = c.attempts
    ELSE postbacks.status IN ('pending', 'paused') AND postbacks.attempts = c.attempts - 1 END
RETURNING postbacks.id
"""
_INSERT_CONVERSION_CHANGES = _bulk_insert("conversion_changes", ConversionChange)
# The changes of one batch were decided one after another: the last one stands.
_UPDATE_CONVERSIONS = """
UPDATE events SET status = c.to_status, decided_at = c.changed_at
FROM (SELECT json_extract(value, '$[0]') AS conversion_id,
             json_extract(value, '$[2]') AS to_status,
             json_extract(value, '$[5]') AS changed_at
      FROM json_each(?)) AS c
WHERE events.conversion_id = c.conversion_id
"""
_rows = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class _Written:
    """What a committed batch leaves for the event loop to report."""

    paused: list[str]
    not_recorded: list[int]


class Writer(BatchWriter):
    """SQLite's writer, on its one write connection.

    A batch is one call to the connection's thread: BEGIN, every statement, COMMIT (or
    ROLLBACK), as plain sqlite3 code. Each call is a round trip through the event loop
    and a handoff of the interpreter lock between the two threads; with a call per
    statement, a commit-mode batch of events made four, one touching postbacks ten or more.
    """

    task_name = "sqlite-writer"
    permanent = (CapReached, PostbackBeingSent, sqlite3.IntegrityError, sqlite3.DataError,
                 sqlite3.ProgrammingError, sqlite3.InterfaceError, ValueError, TypeError)

    def __init__(self, conn: WriteConnection, **options: Any) -> None:
        super().__init__(**options)
        self._conn = conn
        # A rollback that failed inside a batch's call, for _rollback to report.
        self._rollback_error: Exception | None = None

    @property
    def round_trips(self) -> int:
        """Calls made to the connection's thread so far."""
        return self._conn.round_trips

    async def _apply(self, ops: list[WriteOp]) -> None:
        abandon = threading.Event()
        call = asyncio.ensure_future(self._conn.run(partial(self._transaction, ops, abandon)))
        try:
            # Shielded: a cancelled await would not stop the thread, only forget it.
            written = await asyncio.shield(call)
        except asyncio.CancelledError:
            await self._abandon(call, abandon)
            raise
        for postback_id in written.not_recorded:
            log.warning("postback_attempt_not_recorded", postback_id=postback_id,
                        reason="changed_since_sent")
        note_paused(written.paused)

    async def _abandon(self, call: asyncio.Future[_Written], abandon: threading.Event) -> None:
        """Shutdown gave up on the batch being written (close()'s timeout): it is rolled
        back unless it has committed already, and then its ops are settled here, so
        that only what was really lost is reported lost and failed."""
        abandon.set()
        self._conn.interrupt()
        try:
            await call
        except BaseException:
            return  # rolled back: close() logs and fails its ops
        for _, future in self._committing:
            if not future.done():
                future.set_result(None)
        self._committing = []

    def _transaction(self, ops: list[WriteOp], abandon: threading.Event,
                     conn: sqlite3.Connection) -> _Written:
        """In the connection's thread: the batch in one transaction, or nothing."""
        try:
            conn.execute(_BEGIN)
            written = _write(conn, ops)
            if abandon.is_set():
                raise _Abandoned
            conn.commit()
        except BaseException:
            try:
                if conn.in_transaction:
                    conn.rollback()
            except Exception as exc:  # the connection itself may be gone
                self._rollback_error = exc
            raise
        return written

    async def _rollback(self) -> None:
        """The batch's own call rolled back already. A rollback that failed there is
        reported here and tried once more, as is a transaction left open otherwise."""
        failed, self._rollback_error = self._rollback_error, None
        if failed is not None:
            log.error("rollback_failed", error=repr(failed))
        try:
            if self._conn.in_transaction:
                await self._conn.rollback()
        except Exception as exc:  # the connection itself may be gone
            log.error("rollback_failed", error=repr(exc))


class _Abandoned(Exception):
    """The batch was given up on before its COMMIT: it rolls back."""


def _write(conn: sqlite3.Connection, ops: list[WriteOp]) -> _Written:
    batch = BatchRows.of(ops)
    changes, answers = batch.changes, batch.answers
    last_changes = list({change.conversion_id: change
                         for change in batch.conversion_changes}.values())
    lead_changes = merge_lead_changes(changes)
    if answers:
        conn.execute(_PURGE_ANSWERS, (min(row.created_at for row in answers),))
    # Fixed order: a row is inserted before rows that refer to it and changes to it.
    for sql, inserted in ((_INSERT_LEADS, batch.leads), (_INSERT_EVENTS, batch.events),
                          (_INSERT_LEAD_KEYS, batch.lead_keys)):
        if inserted:
            conn.execute(sql, (_rows.encode(inserted).decode(),))
    caps.charge(conn, [charge for op in ops for charge in op.cap_charges])
    # The roll-ups, in this transaction: between the new rows and the changes to them.
    tags = TagBatch.begin(conn)
    counted = rollups.record(conn, batch.leads, batch.events, lead_changes,
                             batch.conversion_changes, per_lead=tags is not None)
    if tags is not None:
        tags.count(conn, counted, lead_changes)
    steps: tuple[tuple[str, list[Any]], ...] = (
        (_UPDATE_LEADS, lead_changes), (_INSERT_POSTBACKS, batch.postbacks))
    for sql, rows in steps:
        if rows:
            conn.execute(sql, (_rows.encode(rows).decode(),))
    outcomes, not_recorded = _change_postbacks(conn, ops)
    paused = endpoints.record(conn, outcomes)
    endpoints.requeue(conn, [op.requeue for op in ops if op.requeue is not None])
    catalog.insert(conn, [op.catalog for op in ops if op.catalog is not None])
    for sql, rows in (
        (_INSERT_ATTEMPTS, [op.attempt for op in ops
                            if op.attempt is not None and op.postback_change is None]),
        (_INSERT_CONVERSION_CHANGES, batch.conversion_changes),
        (_UPDATE_CONVERSIONS, last_changes),
        (_INSERT_ANSWERS, answers),
    ):
        if rows:
            conn.execute(sql, (_rows.encode(rows).decode(),))
    caps.give_back(conn, [change.conversion_id for change in last_changes
                          if change.to_status in ("rejected", "reversed")])
    if tags is not None:
        tags.finish(conn)  # after every change: a lead's new field values are stored
    return _Written(paused=paused, not_recorded=not_recorded)


def _change_postbacks(conn: sqlite3.Connection,
                      ops: list[WriteOp]) -> tuple[list[EndpointOutcome], list[int]]:
    """Each postback change that still finds its state, with its attempt; an attempt
    whose change found another state is not recorded (its outcome no longer counts),
    a resend that did not apply refuses its op. The recorded attempts' outcomes come
    back, for their endpoints' health, with the postbacks whose attempt was not."""
    outcomes: list[EndpointOutcome] = []
    not_recorded: list[int] = []
    for round_ops in postback_rounds(ops):
        changes = [op.postback_change for op in round_ops]
        applied = {row[0] for row in conn.execute(
            _UPDATE_POSTBACKS, (_rows.encode(changes).decode(),)).fetchall()}
        not_recorded += _record_attempts(conn, round_ops, applied)
        outcomes += recorded_outcomes(round_ops, applied)
    return outcomes, not_recorded


def _record_attempts(conn: sqlite3.Connection, ops: list[WriteOp],
                     applied: set[int]) -> list[int]:
    """Insert the attempts of the changes that applied; the postbacks of the others."""
    attempts = []
    not_recorded = []
    for op in ops:
        change = op.postback_change
        assert change is not None
        if change.postback_id not in applied:
            if change.resend:
                raise PostbackBeingSent
            not_recorded.append(change.postback_id)
        elif op.attempt is not None:
            attempts.append(op.attempt)
    if attempts:
        conn.execute(_INSERT_ATTEMPTS, (_rows.encode(attempts).decode(),))
    return not_recorded
