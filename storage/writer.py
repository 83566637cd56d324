"""The single writer: drains a bounded queue of ops and commits them in batches.

Every submitted op gets a future that completes exactly once: with ``None`` once its batch
has committed, or with the error that kept it from ever being stored. Errors that may pass
(a full disk, an I/O error) are retried with the batch kept whole, so an op that was
acknowledged in write-behind mode is not dropped; the store reports itself unhealthy
meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections import deque
from collections.abc import Callable
from typing import Any

import aiosqlite
import msgspec
import structlog

from storage.records import WriteOp

log = structlog.get_logger("storage.writer")

_INSERT_LEAD = (
    "INSERT INTO leads (transaction_id, cid, pid, fields, cost, ip, user_agent, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_EVENT = (
    "INSERT INTO events (transaction_id, cid, event_id, pid, once, conversion, conversion_id,"
    " revenue, payout, converted_at, fields, ip, user_agent, fired_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_UPDATE_LEAD = (
    "UPDATE leads SET"
    " fields = CASE WHEN ?1 IS NULL THEN fields ELSE json_patch(fields, ?1) END,"
    " cost = coalesce(?2, cost)"
    " WHERE transaction_id = ?3"
)
_INSERT_POSTBACK = (
    "INSERT INTO postbacks (transaction_id, cid, pid, event_id, conversion_id, kind, method,"
    " url, host, body, secret, status, max_attempts, next_attempt_at, created_at, updated_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_ATTEMPT = (
    "INSERT INTO postback_attempts (postback_id, attempt, started_at, url, status_code, error,"
    " latency_ms, response) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_UPDATE_POSTBACK = (
    "UPDATE postbacks SET status = ?2, attempts = ?3, max_attempts = ?4, next_attempt_at = ?5,"
    " last_status_code = ?6, last_error = ?7, updated_at = ?8 WHERE id = ?1"
)

# Errors that no retry can cure: the op itself is wrong and is refused alone.
_PERMANENT = (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.ProgrammingError,
              sqlite3.InterfaceError, ValueError, TypeError)

_Item = tuple[WriteOp, "asyncio.Future[None]"]


class StoreBusy(Exception):
    """The write queue is at its bound; the caller should answer 503."""


class StoreClosed(Exception):
    """The store is shutting down and takes no more writes."""


class Writer:
    def __init__(
        self,
        conn: aiosqlite.Connection,
        *,
        max_pending: int,
        gather_seconds: float,
        max_batch: int = 2000,
        retry_initial: float = 0.05,
        retry_max: float = 2.0,
        on_commit: Callable[[list[WriteOp]], None] | None = None,
    ) -> None:
        self._conn = conn
        self._max_pending = max_pending
        self._gather_seconds = gather_seconds
        self._max_batch = max_batch
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._on_commit = on_commit
        self._queue: deque[_Item] = deque()
        self._has_work = asyncio.Event()
        self._flush_now = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self.failing = False
        self.batches_committed = 0

    @property
    def pending(self) -> int:
        return len(self._queue)

    def has_room(self) -> bool:
        return not self._closing and len(self._queue) < self._max_pending

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="sqlite-writer")

    def submit(self, op: WriteOp, *, bounded: bool = True) -> asyncio.Future[None]:
        """Queue an op; raises StoreBusy at the bound and StoreClosed after close().

        ``bounded=False`` is for callers whose writes are already limited in number (the
        postback dispatcher records at most one attempt per delivery it runs).
        """
        if self._closing:
            raise StoreClosed
        if bounded and len(self._queue) >= self._max_pending:
            raise StoreBusy
        return self._enqueue(op)

    def barrier(self) -> asyncio.Future[None]:
        """A future that completes once everything queued so far has committed.

        It also cuts short the write-behind gathering delay: whoever asks for a barrier
        wants to read what was written.
        """
        if self._closing:
            raise StoreClosed
        self._flush_now.set()
        return self._enqueue(WriteOp())

    def _enqueue(self, op: WriteOp) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((op, future))
        self._has_work.set()
        return future

    async def close(self, timeout: float = 30.0) -> None:
        """Commit everything queued, then stop. Safe to call more than once."""
        self._closing = True
        self._flush_now.set()
        self._has_work.set()
        task, self._task = self._task, None
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            lost = len(self._queue)
            log.critical("writes_abandoned_at_shutdown", count=lost)
            while self._queue:
                _, future = self._queue.popleft()
                if not future.done():
                    future.set_exception(StoreClosed())

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._has_work.clear()
                await self._has_work.wait()
                continue
            if self._gather_seconds > 0 and not self._flush_now.is_set():
                # Write-behind: let a flush interval's worth of ops join this batch.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._flush_now.wait(), self._gather_seconds)
            take = min(len(self._queue), self._max_batch)
            if not self._closing and take == len(self._queue):
                self._flush_now.clear()
            batch = [self._queue.popleft() for _ in range(take)]
            await self._commit(batch)

    async def _commit(self, batch: list[_Item]) -> None:
        delay = self._retry_initial
        while True:
            try:
                await self._apply([op for op, _ in batch])
            except _PERMANENT as exc:
                await self._rollback()
                if len(batch) > 1:
                    # One bad op must not sink the others: retry each in its own transaction.
                    for item in batch:
                        await self._commit([item])
                    return
                op, future = batch[0]
                log.error("write_refused", error=repr(exc), op=msgspec.to_builtins(op))
                if not future.done():
                    future.set_exception(exc)
                return
            except Exception as exc:
                await self._rollback()
                self.failing = True
                log.warning("write_failed_retrying", error=repr(exc), ops=len(batch),
                            retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max)
                continue
            self.failing = False
            self.batches_committed += 1
            for _, future in batch:
                if not future.done():
                    future.set_result(None)
            if self._on_commit is not None:
                try:
                    self._on_commit([op for op, _ in batch])
                except Exception:  # a listener's bug must not stop the writer
                    log.exception("commit_listener_failed")
            return

    async def _apply(self, ops: list[WriteOp]) -> None:
        leads: list[tuple[Any, ...]] = []
        events: list[tuple[Any, ...]] = []
        changes: list[tuple[Any, ...]] = []
        postbacks: list[tuple[Any, ...]] = []
        attempts: list[tuple[Any, ...]] = []
        postback_changes: list[tuple[Any, ...]] = []
        for op in ops:
            if op.lead is not None:
                leads.append(msgspec.structs.astuple(op.lead))
            if op.event is not None:
                events.append(msgspec.structs.astuple(op.event))
            if op.change is not None:
                change = op.change
                changes.append((change.fields_patch, change.cost, change.transaction_id))
            postbacks.extend(msgspec.structs.astuple(row) for row in op.postbacks)
            if op.attempt is not None:
                attempts.append(msgspec.structs.astuple(op.attempt))
            if op.postback_change is not None:
                postback_changes.append(msgspec.structs.astuple(op.postback_change))
        conn = self._conn
        await conn.execute("BEGIN IMMEDIATE")
        # Fixed order: a row is inserted before rows that refer to it and changes to it.
        if leads:
            await conn.executemany(_INSERT_LEAD, leads)
        if events:
            await conn.executemany(_INSERT_EVENT, events)
        if changes:
            await conn.executemany(_UPDATE_LEAD, changes)
        if postbacks:
            await conn.executemany(_INSERT_POSTBACK, postbacks)
        if attempts:
            await conn.executemany(_INSERT_ATTEMPT, attempts)
        if postback_changes:
            await conn.executemany(_UPDATE_POSTBACK, postback_changes)
        await conn.execute("COMMIT")

    async def _rollback(self) -> None:
        try:
            if self._conn.in_transaction:
                await self._conn.execute("ROLLBACK")
        except Exception as exc:  # the connection itself may be gone
            log.error("rollback_failed", error=repr(exc))
