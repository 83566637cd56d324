"""Requests that queue on one transaction: each gets its own answer, in order, none lost.

While one request is being handled, the others wait in the actor's mailbox and are
handled by a task of their own; a failure of one of them is its answer alone.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import structlog

from actors.messages import FireEvent, Verdict
from storage.records import WriteOp
from tests.conftest import CID, Harness, error, make_config, running

# A queued request whose answer is lost would hang: fail instead.
ANSWERS_WITHIN = 10


@pytest.mark.parametrize("durability", ["commit", "write-behind"])
async def test_queued_requests_each_get_their_answer(db_path: Path, durability: str) -> None:
    async with running(make_config(db_path, durability=durability)) as api:
        transaction_id = await api.click()
        events = ["quote_viewed", "form_step", "quote_viewed", "form_step", "sale_completed"]
        responses = await asyncio.wait_for(asyncio.gather(*(
            api.fire(transaction_id, event_id, revenue="5") for event_id in events)),
            ANSWERS_WITHIN)
        answers = [(r.status_code, r.json()["message"]) for r in responses]
        fired = (200, "Event triggered successfully")
        locked = (403, "Concurrent event in progress")
        # Handled in the order they came: the first of each event fires, the rest are locked.
        assert answers == [fired, fired, locked, locked, fired]
        rows = await api.query("SELECT event_id FROM events ORDER BY id")
        assert rows == [("quote_viewed",), ("form_step",), ("sale_completed",)]
        # The mailbox emptied and the actor went idle.
        actor = api.services.registry._actors[transaction_id]
        assert not actor.busy


async def test_a_queued_request_whose_write_is_refused_gets_its_own_500(db_path: Path) -> None:
    async with running(make_config(db_path, durability="commit")) as api:
        transaction_id = await api.click()
        writer = api.services.store.writer
        real_apply = writer._apply

        async def refusing(ops: list[WriteOp]) -> Any:
            if any(op.event is not None and op.event.event_id == "form_step" for op in ops):
                raise sqlite3.IntegrityError("refused for the test")
            return await real_apply(ops)

        writer._apply = refusing  # type: ignore[method-assign]
        with structlog.testing.capture_logs():
            first, queued, last = await asyncio.wait_for(asyncio.gather(
                api.fire(transaction_id, "quote_viewed"),
                api.fire(transaction_id, "form_step"),
                api.fire(transaction_id, "sale_completed", revenue="5")), ANSWERS_WITHIN)
        assert first.status_code == 200
        assert queued.json() == error(500, "Internal server error")
        assert last.status_code == 200, last.text
        rows = await api.query("SELECT event_id FROM events ORDER BY id")
        assert rows == [("quote_viewed",), ("sale_completed",)]


async def test_a_caller_that_went_away_does_not_stop_the_queue(db_path: Path) -> None:
    async with running(make_config(db_path, durability="commit")) as api:
        transaction_id = await api.click()
        registry = api.services.registry
        def event(event_id: str) -> FireEvent:
            return FireEvent(transaction_id=transaction_id, cid=CID,
                             event_id=event_id, pid="organic", conversion=False, once=True)

        first = asyncio.ensure_future(registry.fire(event("quote_viewed")))
        gone = asyncio.ensure_future(registry.fire(event("form_step")))
        last = asyncio.ensure_future(registry.fire(event("sale_completed")))
        await asyncio.sleep(0)
        gone.cancel()  # its caller went away while it waited in the mailbox
        await asyncio.wait_for(asyncio.gather(first, last), ANSWERS_WITHIN)
        assert gone.cancelled()
        rows = await api.query("SELECT event_id FROM events ORDER BY id")
        assert rows == [("quote_viewed",), ("sale_completed",)]


async def test_queued_requests_on_an_unknown_transaction_leave_no_actor(db_path: Path) -> None:
    async with running(make_config(db_path)) as api:
        responses = await asyncio.wait_for(asyncio.gather(*(
            api.fire("txn_unknown", "quote_viewed") for _ in range(3))), ANSWERS_WITHIN)
        assert {r.json()["message"] for r in responses} == {
            "Invalid transaction_id for this campaign"}
        # An unknown transaction is not worth remembering once its mailbox is empty.
        assert "txn_unknown" not in api.services.registry


def count_loads(api: Harness) -> list[str]:
    """The transactions the actors ask the store for, one entry per read."""
    store = api.services.store
    real_load = store.load_transaction
    loads: list[str] = []

    async def counted(transaction_id: str) -> Any:
        loads.append(transaction_id)
        return await real_load(transaction_id)

    store.load_transaction = counted  # type: ignore[method-assign]
    return loads


async def test_queued_requests_on_an_unknown_transaction_read_it_once(db_path: Path) -> None:
    # On one machine nothing else can create the lead while the mailbox drains (on a
    # shared database it is asked for again: see the PostgreSQL tests).
    async with running(make_config(db_path)) as api:
        loads = count_loads(api)
        await asyncio.wait_for(asyncio.gather(*(
            api.fire("txn_unknown", "quote_viewed") for _ in range(3))), ANSWERS_WITHIN)
        assert loads == ["txn_unknown"]


async def test_a_known_transaction_is_read_once_then_answered_from_memory(
    db_path: Path,
) -> None:
    async with running(make_config(db_path)) as api:
        transaction_id = await api.click()
    async with running(make_config(db_path)) as api:  # a restart: the actor starts cold
        loads = count_loads(api)
        for event_id in ("quote_viewed", "form_step", "sale_completed"):
            response = await api.fire(transaction_id, event_id, revenue="5")
            assert response.status_code == 200, response.text
        assert loads == [transaction_id]


async def test_an_idle_actor_handles_a_request_in_the_callers_own_task(db_path: Path) -> None:
    """No drain task to start and switch to for a request that finds its actor idle: the
    hot path's common case."""
    async with running(make_config(db_path, durability="commit")) as api:
        transaction_id = await api.click()
        store = api.services.store
        real_submit = store.submit
        submitted_in: list[asyncio.Task[Any] | None] = []

        def noted(op: WriteOp, **options: Any) -> Any:
            submitted_in.append(asyncio.current_task())
            return real_submit(op, **options)

        store.submit = noted  # type: ignore[method-assign]
        reply = await api.services.registry.fire(FireEvent(
            transaction_id=transaction_id, cid=CID, event_id="quote_viewed", pid="organic",
            conversion=False, once=True))
        assert reply.verdict == Verdict.FIRED, reply
        assert submitted_in == [asyncio.current_task()]


async def test_a_request_arriving_while_a_queued_one_is_handled_is_answered(
    db_path: Path,
) -> None:
    async with running(make_config(db_path, durability="commit")) as api:
        transaction_id = await api.click()
        first = asyncio.ensure_future(api.fire(transaction_id, "quote_viewed"))
        queued = asyncio.ensure_future(api.fire(transaction_id, "form_step"))
        actor = None
        for _ in range(10_000):  # until the drain task has taken the queued request
            actor = api.services.registry._actors.get(transaction_id)
            if actor is not None and actor.running_task is not None and not actor._mailbox:
                break
            await asyncio.sleep(0.0005)
        late = await asyncio.wait_for(api.fire(transaction_id, "sale_completed",
                                               revenue="1"), ANSWERS_WITHIN)
        assert late.status_code == 200, late.text
        assert [r.status_code for r in await asyncio.gather(first, queued)] == [200, 200]


async def test_no_request_is_handled_before_the_one_ahead_of_it_is_answered(
    db_path: Path,
) -> None:
    """One at a time whatever the actor is doing when a request arrives: handling one in
    the caller's own task, or in its drain task with nothing more queued."""
    async with running(make_config(db_path, durability="commit")) as api:
        transaction_id = await api.click()
        store = api.services.store
        real_submit, real_apply = store.submit, store.writer._apply
        handled: list[str] = []
        commits_allowed = asyncio.Semaphore(0)

        def recording(op: WriteOp, *, bounded: bool = True) -> asyncio.Future[None]:
            if op.event is not None:
                handled.append(op.event.event_id)
            return real_submit(op, bounded=bounded)

        async def held(ops: list[WriteOp]) -> Any:
            await commits_allowed.acquire()
            return await real_apply(ops)

        store.submit = recording  # type: ignore[method-assign]
        store.writer._apply = held  # type: ignore[method-assign]

        async def settle() -> None:  # whatever can run before the next commit, runs
            for _ in range(50):
                await asyncio.sleep(0)

        first = asyncio.ensure_future(api.fire(transaction_id, "quote_viewed"))
        await settle()
        assert handled == ["quote_viewed"]  # handled at once, held at its commit
        queued = asyncio.ensure_future(api.fire(transaction_id, "form_step"))
        await settle()
        assert handled == ["quote_viewed"]  # waits while the first is handled inline

        commits_allowed.release()
        assert (await asyncio.wait_for(first, ANSWERS_WITHIN)).status_code == 200
        await settle()
        # The queued one is now handled by the drain task, its mailbox empty.
        assert handled == ["quote_viewed", "form_step"]
        late = asyncio.ensure_future(api.fire(transaction_id, "sale_completed", revenue="1"))
        await settle()
        assert handled == ["quote_viewed", "form_step"]  # waits for the drained one too

        commits_allowed.release()
        commits_allowed.release()
        answers = await asyncio.wait_for(asyncio.gather(queued, late), ANSWERS_WITHIN)
        assert [r.status_code for r in answers] == [200, 200]
        assert handled == ["quote_viewed", "form_step", "sale_completed"]
        store.writer._apply = real_apply  # type: ignore[method-assign]
        rows = await api.query("SELECT event_id FROM events ORDER BY id")
        assert rows == [("quote_viewed",), ("form_step",), ("sale_completed",)]


async def test_closing_waits_for_the_requests_still_queued_in_a_mailbox(db_path: Path) -> None:
    """At shutdown a queued request whose caller is gone is still stored, not dropped."""
    async with running(make_config(db_path, durability="commit")) as api:
        transaction_id = await api.click()
        registry, writer = api.services.registry, api.services.store.writer
        real_apply = writer._apply
        commits_allowed = asyncio.Semaphore(0)

        async def held(ops: list[WriteOp]) -> Any:
            await commits_allowed.acquire()
            return await real_apply(ops)

        def event(event_id: str) -> FireEvent:
            return FireEvent(transaction_id=transaction_id, cid=CID,
                             event_id=event_id, pid="organic", conversion=False, once=True)

        writer._apply = held  # type: ignore[method-assign]
        first = asyncio.ensure_future(registry.fire(event("quote_viewed")))
        queued = asyncio.ensure_future(registry.fire(event("form_step")))
        await asyncio.sleep(0)
        commits_allowed.release()
        await asyncio.wait_for(first, ANSWERS_WITHIN)
        actor = registry._actors[transaction_id]
        for _ in range(1000):  # until the drain task has taken the queued request
            if actor.running_task is not None and not actor._mailbox:
                break
            await asyncio.sleep(0.001)
        queued.cancel()  # its caller went away: only the drain task still holds it
        closing = asyncio.ensure_future(registry.close())
        for _ in range(50):
            await asyncio.sleep(0)
        assert not closing.done()
        commits_allowed.release()
        await asyncio.wait_for(closing, ANSWERS_WITHIN)
        writer._apply = real_apply  # type: ignore[method-assign]
        rows = await api.query("SELECT event_id FROM events ORDER BY id")
        assert rows == [("quote_viewed",), ("form_step",)]
