"""Cold loads, batched: every transaction asked for meanwhile is read in one query.

An actor that is not in memory needs its lead and fired events before its first
message. Under load many arrive together; one query for all of them returns a single
result, so a batch costs one round trip to the database instead of several per
transaction. Each store brings its query (storage/sqlite/loader.py, storage/postgres).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from storage.batcher import Batcher
from storage.records import StoredTransaction

Query = Callable[[list[str]], Awaitable[dict[str, StoredTransaction]]]


# The most transactions one query reads.
MAX_BATCH = 512


class BatchLoader:
    """Gathers the transactions asked for meanwhile; ``query`` reads a batch of them."""

    def __init__(self, query: Query, *, max_batch: int = MAX_BATCH) -> None:
        async def read(batch: dict[str, None]) -> dict[str, StoredTransaction]:
            return await query(list(batch))

        self._batches: Batcher[str, None, StoredTransaction | None] = Batcher(
            read, missing=None, max_batch=max_batch, task_name="cold-loads",
            failure="cold_load_failed", size_name="transactions")

    @property
    def transactions_asked(self) -> int:
        return self._batches.asked

    def start(self) -> None:
        self._batches.start()

    def load(self, transaction_id: str) -> asyncio.Future[StoredTransaction | None]:
        """The stored transaction, or None if there is no such lead."""
        return self._batches.ask(transaction_id, None)

    async def close(self) -> None:
        await self._batches.close()
