"""A lock window given back on PostgreSQL: the one its claim opened, never one claimed since."""

from __future__ import annotations

import structlog

from tests.conftest import FakeClock, postgres_store


async def test_a_released_window_can_be_claimed_again_at_once(pg_url: str) -> None:
    clock = FakeClock()
    store = postgres_store(pg_url, clock)
    await store.open()
    try:
        assert store.windows is not None
        until = await store.windows.claim("t1", "sale_completed", 60)
        assert until is not None
        await store.windows.release("t1", "sale_completed", until)
        assert await store.windows.claim("t1", "sale_completed", 60) == until
    finally:
        await store.close()


async def test_a_release_after_the_window_ran_out_keeps_the_window_claimed_since(
    pg_url: str,
) -> None:
    clock = FakeClock()
    one, two = postgres_store(pg_url, clock), postgres_store(pg_url, clock)
    await one.open()
    await two.open()
    try:
        assert one.windows is not None and two.windows is not None
        mine = await one.windows.claim("t1", "sale_completed", 5)
        assert mine is not None
        clock.advance(5)
        theirs = await two.windows.claim("t1", "sale_completed", 60)
        assert theirs is not None and theirs != mine
        await one.windows.release("t1", "sale_completed", mine)
        # The other node's window still holds, for either node.
        assert await one.windows.claim("t1", "sale_completed", 60) is None
        assert await two.windows.claim("t1", "sale_completed", 60) is None
    finally:
        await one.close()
        await two.close()


async def test_a_release_on_a_closed_store_does_not_raise(pg_url: str) -> None:
    clock = FakeClock()
    store = postgres_store(pg_url, clock)
    await store.open()
    windows = store.windows
    assert windows is not None
    until = await windows.claim("t1", "sale_completed", 60)
    assert until is not None
    await store.close()
    with structlog.testing.capture_logs() as logs:
        await windows.release("t1", "sale_completed", until)
    [line] = [entry for entry in logs if entry["event"] == "window_release_failed"]
    assert line["log_level"] == "warning"
