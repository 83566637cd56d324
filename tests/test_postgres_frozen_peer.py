"""A node frozen inside its transaction does not hold the other nodes' writes for long.

A process stopped (SIGSTOP, a stalled VM) in the middle of its writer's transaction keeps
that transaction's row locks, the hourly roll-ups' among them: every other node's batch
waited for it, and a postback recorded that late had lost its lease and was sent twice.
PostgreSQL now ends a store's session idle in a transaction for the write timeout.
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import pytest

from storage.postgres.store import PostgresStore


async def test_a_transaction_left_idle_is_ended_and_its_locks_freed(pg_url: str) -> None:
    store = PostgresStore(pg_url, write_timeout=1.0)
    await store.open()
    other = await asyncpg.connect(pg_url)
    try:
        await other.execute("CREATE TABLE held (id int PRIMARY KEY, n int)")
        await other.execute("INSERT INTO held VALUES (1, 0)")
        async with store._db().acquire() as frozen:  # as the writer holds it
            transaction = frozen.transaction()
            await transaction.start()
            await frozen.execute("UPDATE held SET n = n + 1 WHERE id = 1")
            # The frozen node sends nothing more; the other one writes the same row, and
            # would wait on it forever if the session stayed (the bound here is the
            # test's, far above the one-second timeout).
            await asyncio.wait_for(other.execute("UPDATE held SET n = n + 10 WHERE id = 1"),
                                   timeout=20)
            # Thawed, the frozen node finds its session gone: its batch failed whole.
            # (Whatever the driver makes of the closed session: the writer retries on any.)
            with pytest.raises(Exception):  # noqa: B017
                await frozen.execute("UPDATE held SET n = n + 100 WHERE id = 1")
            with contextlib.suppress(Exception):  # the dead session's rollback
                await transaction.rollback()
        assert await other.fetchval("SELECT n FROM held WHERE id = 1") == 10
    finally:
        await other.close()
        await store.close()

