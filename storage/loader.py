"""Cold loads, batched: every transaction asked for meanwhile is read in one query.

An actor that is not in memory needs its lead and fired events before its first
message. Under load many arrive together; one query for all of them returns a single
result, so a batch costs one round trip to the database instead of several per
transaction. Each store brings its query (storage/sqlite/loader.py, storage/postgres).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

from storage.records import StoredTransaction

log = structlog.get_logger("storage.loader")


Query = Callable[[list[str]], Awaitable[dict[str, StoredTransaction]]]


# The most transactions one query reads.
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
