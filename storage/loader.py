"""Cold loads, batched: every transaction asked for meanwhile is read in one query.

An actor that is not in memory needs its lead and fired events before its first
message. Under load many arrive together; one query for all of them returns a single
JSON row, so a batch costs one round trip to the read connection's thread and one
handoff of the GIL instead of several per transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from decimal import Decimal

import aiosqlite
import msgspec
import structlog

from storage.records import StoredTransaction

log = structlog.get_logger("storage.loader")

_LOAD = """
SELECT json_group_array(json_array(
    l.transaction_id, l.cid, l.pid, l.cost,
    (SELECT json_group_array(DISTINCT e.event_id) FROM events AS e
     WHERE e.transaction_id = l.transaction_id)))
FROM leads AS l
WHERE l.transaction_id IN (SELECT value FROM json_each(?))
"""
_ids = msgspec.json.Encoder()
_rows = msgspec.json.Decoder(list[tuple[str, str, str, str | None, list[str]]])


Query = Callable[[list[str]], Awaitable[dict[str, StoredTransaction]]]


# The most transactions one query reads (SQLite allows 32,766 parameters).
MAX_BATCH = 512


class BatchLoader:
    """Gathers the transactions asked for meanwhile; ``query`` reads a batch of them."""

    task_name = "cold-loads"

    def __init__(self, query: Query, *, max_batch: int = MAX_BATCH) -> None:
        self._query = query
        self._max_batch = max_batch
        self._waiting: dict[str, list[asyncio.Future[StoredTransaction | None]]] = {}
        # The batch being read: close() can cancel the read, and must fail these too.
        self._reading: dict[str, list[asyncio.Future[StoredTransaction | None]]] = {}
        self._has_work = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.transactions_asked = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=self.task_name)  # pragma: no mutate (a debugging label)

    def load(self, transaction_id: str) -> asyncio.Future[StoredTransaction | None]:
        """The stored transaction, or None if there is no such lead."""
        future: asyncio.Future[StoredTransaction | None] = (
            asyncio.get_running_loop().create_future())
        self._waiting.setdefault(transaction_id, []).append(future)
        self._has_work.set()
        return future

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for futures in [*self._reading.values(), *self._waiting.values()]:
            for future in futures:
                if not future.done():
                    future.set_exception(RuntimeError("store closed"))
        self._reading = {}
        self._waiting.clear()

    async def _run(self) -> None:
        while True:
            await self._has_work.wait()
            self._has_work.clear()
            while self._waiting:
                ids = list(self._waiting)[: self._max_batch]
                batch = self._reading = {transaction_id: self._waiting.pop(transaction_id)
                                         for transaction_id in ids}
                self.transactions_asked += len(ids)
                try:
                    found = await self._query(ids)
                except Exception as exc:
                    self._reading = {}
                    log.error("cold_load_failed", error=repr(exc), transactions=len(ids))
                    for futures in batch.values():
                        for future in futures:
                            if not future.done():
                                future.set_exception(exc)
                    continue
                self._reading = {}
                for transaction_id, futures in batch.items():
                    result = found.get(transaction_id)
                    for future in futures:
                        if not future.done():
                            future.set_result(result)


async def query_sqlite(conn: aiosqlite.Connection, ids: list[str]) -> dict[str, StoredTransaction]:
    """Every transaction among ``ids`` with its lead and fired event ids, in one query."""
    rows = list(await conn.execute_fetchall(_LOAD, (_ids.encode(ids).decode(),)))
    return {
        transaction_id: StoredTransaction(
            cid=cid, pid=pid, cost=None if cost is None else Decimal(cost),
            fired=frozenset(fired))
        for transaction_id, cid, pid, cost, fired in _rows.decode(rows[0][0])
    }
