"""What both stores do alike around their writer and loader: queue, bound, flush, load.

Each store opens its own connections and, in its ``open``, starts ``_writer`` (a
``BatchWriter`` on them) and ``_loader`` (a ``BatchLoader`` with its query); everything
here then works the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

from storage.errors import StoreUnavailable
from storage.loader import BatchLoader
from storage.records import StoredTransaction, WriteOp
from storage.writer import BatchWriter

W = TypeVar("W", bound=BatchWriter)


class BatchedStore(Generic[W]):
    """Writes through one batch writer, cold loads through one batch loader.

    ``write_timeout`` bounds how long a commit, a flush and closing wait for a failing
    store.
    """

    def __init__(self, *, write_timeout: float) -> None:
        self.write_timeout = write_timeout
        self._writer: W | None = None
        self._loader: BatchLoader | None = None
        self._commit_listeners: list[Callable[[list[WriteOp]], None]] = []

    def on_commit(self, listener: Callable[[list[WriteOp]], None]) -> None:
        """Call ``listener`` with the ops of every batch, right after it commits."""
        self._commit_listeners.append(listener)

    def _committed(self, ops: list[WriteOp]) -> None:
        for listener in self._commit_listeners:
            listener(ops)

    @property
    def writer(self) -> W:
        if self._writer is None:
            raise RuntimeError("store is not open")
        return self._writer

    @property
    def cold_loads(self) -> int:
        """How many transactions were read back from the database since it opened."""
        return 0 if self._loader is None else self._loader.transactions_asked

    def has_room(self) -> bool:
        return self.writer.has_room()

    def submit(self, op: WriteOp, *, bounded: bool = True) -> asyncio.Future[None]:
        return self.writer.submit(op, bounded=bounded)

    async def commit(self, op: WriteOp) -> None:
        """Write ``op`` and wait for its commit; StoreUnavailable past the write timeout.

        For the service's own writes (not clients' events), which the queue bound does
        not apply to.
        """
        await self._bounded(self.writer.submit(op, bounded=False))

    async def _bounded(self, written: asyncio.Future[None]) -> None:
        await asyncio.wait((written,), timeout=self.write_timeout)
        if not written.done():
            raise StoreUnavailable
        written.result()

    def settled(self) -> asyncio.Future[None]:
        """A future that completes once every write queued so far has committed or been
        refused for good, however long a failing store takes; StoreClosed if the store
        closes first. Raises StoreClosed once closing.

        The writer commits in queue order, so a barrier queued now completes only after
        every earlier write has met its fate.
        """
        return self.writer.barrier()

    async def flush(self) -> None:
        """Wait until every write queued so far has committed.

        Raises StoreUnavailable when that takes longer than the write timeout.
        """
        await self._bounded(self.writer.barrier())

    async def load_transaction(self, transaction_id: str) -> StoredTransaction | None:
        if self._loader is None:
            raise RuntimeError("store is not open")
        return await self._loader.load(transaction_id)

    async def _close_queues(self) -> None:
        """Commit every queued write (bounded by the write timeout), stop the loader."""
        if self._writer is not None:
            await self._writer.close(self.write_timeout)
        if self._loader is not None:
            await self._loader.close()
