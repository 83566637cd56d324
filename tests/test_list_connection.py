"""A long list or count never holds up the event path's reads (cold loads)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import storage.postgres.store
import storage.sqlite.store
from tests.conftest import Harness

# About a second of work for SQLite, on whichever connection runs it.
_SLOW_SQLITE = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c"
                " WHERE x < 3000000) SELECT count(*) FROM c")


@pytest.mark.both_stores
async def test_a_cold_load_is_answered_while_a_long_list_runs(
        api: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    transaction_id = await api.click()
    await api.services.store.flush()
    finished: list[str] = []
    started = asyncio.Event()

    async def slow_sqlite(conn: Any, **_: Any) -> list[Any]:
        started.set()
        await conn.execute_fetchall(_SLOW_SQLITE)
        finished.append("list")
        return []

    async def slow_postgres(pool: Any, **_: Any) -> list[Any]:
        started.set()
        await pool.fetchval("SELECT pg_sleep(1)")
        finished.append("list")
        return []

    monkeypatch.setattr(storage.sqlite.store.outbox, "postbacks", slow_sqlite)
    monkeypatch.setattr(storage.postgres.store.queries, "postbacks", slow_postgres)

    async def cold_load() -> None:
        await started.wait()
        await api.services.store.load_transaction(transaction_id)
        finished.append("load")

    await asyncio.gather(api.services.store.postbacks(status=None, cid=None, limit=10),
                         cold_load())
    assert finished == ["load", "list"]
