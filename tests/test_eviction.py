"""A small actor limit: idle actors are evicted and every rule still holds."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from storage.records import WriteOp
from tests.conftest import make_config, running


async def test_evicted_actors_reload_and_still_refuse_duplicates(db_path: Path) -> None:
    async with running(make_config(db_path, max_actors=2)) as api:
        transaction_ids = [await api.click() for _ in range(6)]
        for transaction_id in transaction_ids:
            assert (await api.fire(transaction_id)).status_code == 200
        api.clock.advance(5)
        for transaction_id in transaction_ids:
            response = await api.fire(transaction_id)
            assert response.json()["message"] == "Duplicate event for this transaction_id"
            api.clock.advance(5)
        registry = api.services.registry
        assert registry.evictions > 0
        assert len(registry) <= 2


async def test_actor_with_an_open_window_is_not_evicted(db_path: Path) -> None:
    async with running(make_config(db_path, max_actors=1)) as api:
        first = await api.click()
        assert (await api.fire(first)).status_code == 200
        for _ in range(3):  # pressure on the limit while first's window is open
            other = await api.click()
            await api.fire(other)
        api.clock.advance(1)
        # Evicted and reloaded, it would answer 400 duplicate: the window would be lost.
        assert (await api.fire(first)).status_code == 403
        assert first in api.services.registry


async def test_actor_with_unstored_writes_is_not_evicted(db_path: Path) -> None:
    config = make_config(db_path, max_actors=1, durability="write-behind", flush_ms=60_000)
    async with running(config) as api:
        first = await api.click()
        assert (await api.fire(first)).status_code == 200
        api.clock.advance(5)  # the window is closed; only the queued writes hold it
        for _ in range(3):
            await api.click()
        # Reloaded from disk it would not even find the lead.
        response = await api.fire(first)
        assert response.json()["message"] == "Duplicate event for this transaction_id"


async def test_actor_with_a_write_still_queued_behind_a_stored_one_is_not_evicted(
    db_path: Path,
) -> None:
    """Each of an actor's writes holds it in memory until that write itself is stored,
    not only until the first of them is."""
    config = make_config(db_path, max_actors=1, durability="write-behind")
    async with running(config) as api:
        first = await api.click()
        store = api.services.store
        await store.flush()
        real_apply = store.writer._apply
        commits_allowed, batches_seen = asyncio.Semaphore(0), 0

        async def held(ops: list[WriteOp]) -> Any:
            nonlocal batches_seen
            batches_seen += 1
            await commits_allowed.acquire()
            return await real_apply(ops)

        async def until_batches_seen(count: int) -> None:
            for _ in range(1000):
                if batches_seen >= count:
                    return
                await asyncio.sleep(0.01)
            raise AssertionError(f"the writer never took batch {count}")

        store.writer._apply = held  # type: ignore[method-assign]
        assert (await api.fire(first, "quote_viewed")).status_code == 200
        await until_batches_seen(1)  # taken by the writer, held before its commit
        assert (await api.fire(first, "sale_completed", revenue="9")).status_code == 200
        commits_allowed.release()  # the first write is stored; the sale's waits behind it
        await until_batches_seen(2)
        api.clock.advance(5)  # every window closed: only the queued sale holds the actor
        for _ in range(3):
            await api.click()
        # Reloaded from disk it would not find the sale and would pay for it twice.
        response = await api.fire(first, "sale_completed", revenue="9")
        assert response.json()["message"] == "Duplicate event for this transaction_id"
        for _ in range(10):
            commits_allowed.release()
        store.writer._apply = real_apply  # type: ignore[method-assign]
        rows = await api.query("SELECT event_id FROM events WHERE transaction_id = ?"
                               " ORDER BY id", first)
        assert rows == [("quote_viewed",), ("sale_completed",)]


async def test_unknown_transactions_do_not_stay_in_memory(db_path: Path) -> None:
    async with running(make_config(db_path)) as api:
        for index in range(20):
            response = await api.fire(f"txn_unknown_{index}")
            assert response.status_code == 400
        assert len(api.services.registry) == 0


async def test_idle_actors_are_evicted_to_stay_within_the_limit(db_path: Path) -> None:
    async with running(make_config(db_path, max_actors=3)) as api:
        for _ in range(10):
            await api.click()
            api.clock.advance(0.1)
        assert len(api.services.registry) == 3


async def test_the_actor_a_message_is_for_is_never_evicted_to_make_room(db_path: Path) -> None:
    async with running(make_config(db_path, max_actors=1)) as api:
        first, second = await api.click(), await api.click()
        # form_step allows duplicates: only an open window refuses a second one.
        assert (await api.fire(first, "form_step")).status_code == 200
        api.clock.advance(1)
        assert (await api.fire(second, "form_step")).status_code == 200  # over the limit
        api.clock.advance(1.5)  # first's window closed, second's still open
        assert len(api.services.registry) == 2
        # The registry shrinks back as first fires again; first itself must stay.
        assert (await api.fire(first, "form_step")).status_code == 200
        assert first in api.services.registry
        api.clock.advance(0.1)
        assert (await api.fire(first, "form_step")).status_code == 403


async def test_shrinking_back_to_the_limit_evicts_only_the_excess(db_path: Path) -> None:
    async with running(make_config(db_path, max_actors=2)) as api:
        a, b, c = [await api.click() for _ in range(3)]
        for transaction_id in (a, b, c):
            # form_step allows duplicates: only its open window keeps its actor.
            assert (await api.fire(transaction_id, "form_step")).status_code == 200
        registry = api.services.registry
        assert len(registry) == 3  # over the limit while every window is open
        api.clock.advance(5)
        assert (await api.fire(c, "form_step")).status_code == 200
        # One over the limit, one evicted: the least recently used.
        assert len(registry) == 2
        assert a not in registry and b in registry and c in registry
