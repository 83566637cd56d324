"""A store that cannot write: every answer is bounded, nothing acknowledged is lost.

The failure is SQLite's own error for a full disk, raised by the writer's commit until the
test "frees the space"; the write timeout is short so the tests do not wait.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from storage.records import WriteOp
from tests.conftest import ADMIN_TOKEN, CID, Harness, error, make_config, running

WRITE_TIMEOUT = 0.3


@contextmanager
def disk_full(api: Harness) -> Iterator[None]:
    """Every commit fails as on a full disk until the block ends."""
    writer = api.services.store.writer
    real_apply = writer._apply
    full = True

    async def failing(ops: list[WriteOp]) -> Any:
        if full:
            raise sqlite3.OperationalError("database or disk is full")
        return await real_apply(ops)

    writer._apply = failing  # type: ignore[method-assign]
    writer._retry_initial = writer._retry_max = 0.01
    try:
        yield
    finally:
        full = False


async def settled(api: Harness) -> None:
    await asyncio.wait_for(api.services.store.flush(), 5)


def unavailable() -> dict[str, Any]:
    return error(503, "Store unavailable")


@pytest.mark.parametrize("durability", ["commit", "write-behind"])
async def test_a_failing_store_answers_503_within_the_write_timeout(
    db_path: Path, durability: str
) -> None:
    config = make_config(db_path, durability=durability, write_timeout_seconds=WRITE_TIMEOUT)
    async with running(config) as api:
        transaction_id = await api.click()
        await settled(api)
        with disk_full(api):
            if durability == "commit":
                # The answer waits for the commit: it is refused, and says so.
                response = await asyncio.wait_for(
                    api.fire(transaction_id, "sale_completed", revenue="10"), 5)
                assert response.status_code == 503
                assert response.headers["Retry-After"] == "5"
                assert response.json() == unavailable()
                click = await asyncio.wait_for(api.client.post("/api/click",
                                                               json={"cid": CID}), 5)
                assert click.json() == unavailable()
            else:
                # Write-behind acknowledges at once; the write waits in the queue.
                response = await api.fire(transaction_id, "sale_completed", revenue="10")
                assert response.status_code == 200
            health = await asyncio.wait_for(api.client.get("/healthz"), 5)
            assert health.json() == error(503, "Store not writable")
            view = await asyncio.wait_for(api.client.get(
                f"/api/transactions/{transaction_id}",
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}), 5)
            assert view.json() == unavailable()
        # Space is back: the queued write lands once, and the service is healthy again.
        await settled(api)
        assert (await api.client.get("/healthz")).status_code == 200
        rows = await api.query("SELECT count(*), min(conversion_id) FROM events")
        assert rows[0][0] == 1
        # The event that got 503 in commit mode was stored after all: a retry says so.
        retry = await api.fire(transaction_id, "sale_completed", revenue="10")
        assert retry.json() == error(403, "Concurrent event in progress")
        api.clock.advance(2.5)
        retry = await api.fire(transaction_id, "sale_completed", revenue="10")
        assert retry.json() == error(400, "Duplicate event for this transaction_id")
        assert (await api.query("SELECT count(*) FROM events"))[0][0] == 1


async def test_an_event_on_a_transaction_with_unsettled_writes_is_bounded_too(
    db_path: Path,
) -> None:
    # Planning a postback reads the lead once this actor's own writes are in.
    config = make_config(db_path, durability="write-behind",
                         write_timeout_seconds=WRITE_TIMEOUT)
    async with running(config) as api:
        transaction_id = await api.click()
        await settled(api)
        with disk_full(api):
            await api.fire(transaction_id, "quote_viewed")
            api.services.planner.wants = lambda *args, **kwargs: True  # type: ignore[method-assign]
            response = await asyncio.wait_for(
                api.fire(transaction_id, "sale_completed", revenue="1"), 5)
            assert response.json() == unavailable()
        await settled(api)
        assert (await api.query("SELECT event_id FROM events")) == [("quote_viewed",)]


@pytest.mark.parametrize("durability", ["commit", "write-behind"])
async def test_shutdown_with_a_failing_store_is_bounded_and_logs_what_was_lost(
    db_path: Path, durability: str
) -> None:
    config = make_config(db_path, durability=durability, write_timeout_seconds=WRITE_TIMEOUT,
                         flush_ms=1)
    with capture_logs() as logs:
        async with running(config) as api:
            transaction_id = await api.click()
            await settled(api)
            with disk_full(api):
                response = await api.fire(transaction_id, "quote_viewed")
                # Leaving the block would free the space: shut down while it is full.
                await asyncio.wait_for(api.services.store.close(), 5)
    expected = 503 if durability == "commit" else 200
    assert response.status_code == expected
    [summary] = [line for line in logs if line["event"] == "writes_abandoned_at_shutdown"]
    assert summary["count"] == 1
    [abandoned] = [line for line in logs if line["event"] == "write_abandoned"]
    assert abandoned["op"]["event"][0] == transaction_id
    assert abandoned["op"]["event"][2] == "quote_viewed"
