"""A postback's outcome counts only from whoever still holds it; a delivered one stays so.

A process frozen past its lease (SIGSTOP, a long pause) wakes up with an answer that no
longer counts: another process has taken the postback since, and maybe delivered it. Its
record is refused, so the postback is neither set back to pending nor sent again. An
operator's resend of a postback being delivered answers 409 instead of sending it twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from app.config.schema import DeliveryConfig
from app.postbacks.dispatcher import Dispatcher
from storage.backend import EventStore
from storage.errors import PostbackBeingSent
from storage.postgres.store import PostgresStore
from storage.records import (
    AttemptRow,
    DuePostback,
    HostLoad,
    LeadRow,
    PostbackChange,
    PostbackRow,
    PostbackStatus,
    WriteOp,
)
from storage.sqlite.store import Store
from tests.conftest import FakeClock, Harness, error, postgres_store
from tests.receiver import Answer, Receiver
from tests.test_postbacks import AUTH, convert, only_buyer, postback_config

NOW = "2026-11-28T12:00:00.000000Z"  # the fake clock's start, as stored
ANY_HOST = HostLoad(per_host=100, in_flight={})


def _lead() -> LeadRow:
    return LeadRow(transaction_id="t1", cid="c", pid="p", fields="{}", cost=None, ip=None,
                   user_agent=None, created_at=NOW)


def _postback() -> PostbackRow:
    return PostbackRow(
        transaction_id="t1", cid="c", pid="p", event_id="sale", conversion_id=None,
        kind="buyer", method="GET", url="https://buyer.example/pb", host="buyer.example",
        body=None, secret=None, status="pending", max_attempts=3, next_attempt_at=NOW,
        created_at=NOW, updated_at=NOW)


def _outcome(due: DuePostback, status: PostbackStatus, code: int | None) -> WriteOp:
    """What the dispatcher records after sending ``due``: its attempt and new state."""
    attempt = due.attempts + 1
    return WriteOp(
        attempt=AttemptRow(postback_id=due.id, attempt=attempt, started_at=NOW,
                           url=due.url, status_code=code,
                           error=None if code else "timeout: ReadTimeout", latency_ms=1.0,
                           response=None),
        postback_change=PostbackChange(
            postback_id=due.id, status=status, attempts=attempt, max_attempts=due.max_attempts,
            next_attempt_at=NOW, last_status_code=code, last_error=None, updated_at=NOW,
            lease=due.lease))


async def _due(store: EventStore) -> list[DuePostback]:
    return await store.due_postbacks(NOW, limit=10, skip_ids=[], hosts=ANY_HOST)


@pytest.fixture
async def stores(db: str) -> AsyncIterator[tuple[FakeClock, EventStore, EventStore]]:
    """Two nodes on one database (on SQLite, the one process that serves it, twice)."""
    clock = FakeClock()
    one: EventStore
    two: EventStore
    if db.startswith("postgresql"):
        one, two = postgres_store(db, clock), postgres_store(db, clock)
        await one.open()
        await two.open()
    else:
        one = two = Store(db)
        await one.open()
    await one.commit(WriteOp(lead=_lead()))
    await one.commit(WriteOp(postbacks=(_postback(),)))
    try:
        yield clock, one, two
    finally:
        await one.close()
        if two is not one:
            await two.close()


def _run_out(clock: FakeClock, store: EventStore) -> None:
    if isinstance(store, PostgresStore):
        clock.advance(store.lease_seconds)


async def test_a_late_outcome_after_another_delivery_is_not_recorded_nor_sent_again(
        stores: tuple[FakeClock, EventStore, EventStore]) -> None:
    clock, frozen, other = stores
    [stale] = await _due(frozen)
    _run_out(clock, frozen)  # the first node sleeps past its lease
    [taken] = await _due(other) if other is not frozen else [stale]
    await other.commit(_outcome(taken, "delivered", 200))
    # The frozen node wakes up with its timeout.
    await frozen.commit(_outcome(stale, "pending", None))

    view = await other.postback(stale.id)
    assert view is not None
    assert (view.status, view.attempts) == ("delivered", 1)
    assert [(a.attempt, a.status_code) for a in view.attempt_log or []] == [(1, 200)]
    clock.advance(3600)
    assert await _due(frozen) == [] and await _due(other) == []


async def test_a_delivered_postback_is_never_resent_by_an_operator_change(
        stores: tuple[FakeClock, EventStore, EventStore]) -> None:
    _, store, _ = stores
    [due] = await _due(store)
    await store.commit(_outcome(due, "delivered", 200))
    resend = PostbackChange(postback_id=due.id, status="pending", attempts=1, max_attempts=3,
                            next_attempt_at=NOW, last_status_code=200, last_error=None,
                            updated_at=NOW, resend=True)
    with pytest.raises(PostbackBeingSent):
        await store.commit(WriteOp(postback_change=resend))
    view = await store.postback(due.id)
    assert view is not None and view.status == "delivered"


async def test_a_stale_outcome_before_the_new_holders_is_refused_and_the_holders_counts(
        pg_url: str) -> None:
    """The frozen node records first, while the other still sends: only the holder's
    answer is kept, whichever comes first."""
    clock = FakeClock()
    frozen, other = postgres_store(pg_url, clock), postgres_store(pg_url, clock)
    await frozen.open()
    await other.open()
    try:
        await frozen.commit(WriteOp(lead=_lead()))
        await frozen.commit(WriteOp(postbacks=(_postback(),)))
        [stale] = await _due(frozen)
        clock.advance(frozen.lease_seconds)
        [taken] = await _due(other)
        await frozen.commit(_outcome(stale, "pending", None))
        await other.commit(_outcome(taken, "delivered", 200))
        view = await other.postback(taken.id)
        assert view is not None
        assert (view.status, view.attempts) == ("delivered", 1)
        assert [(a.attempt, a.status_code) for a in view.attempt_log or []] == [(1, 200)]
    finally:
        await frozen.close()
        await other.close()


class _Held:
    """An HTTP client whose one answer waits until the test lets it go."""

    def __init__(self, status: int) -> None:
        self.asked = asyncio.Event()
        self.go = asyncio.Event()
        self.calls = 0

        async def answer(request: httpx.Request) -> httpx.Response:
            self.calls += 1
            self.asked.set()
            await self.go.wait()
            return httpx.Response(status)

        self.client = httpx.AsyncClient(transport=httpx.MockTransport(answer))


async def test_dispatchers_on_two_nodes_keep_only_the_lease_holders_answer(
        pg_url: str) -> None:
    """End to end through the dispatcher: the frozen node's 504 arrives while the node
    that took the postback over is still sending; its 200 is the one kept."""
    clock = FakeClock()
    one, two = postgres_store(pg_url, clock), postgres_store(pg_url, clock)
    await one.open()
    await two.open()
    slow, fast = _Held(504), _Held(200)
    settings = DeliveryConfig(timeout_seconds=600)
    frozen = Dispatcher(one, clock, settings, client=slow.client)
    other = Dispatcher(two, clock, settings, client=fast.client)
    try:
        await one.commit(WriteOp(lead=_lead()))
        await one.commit(WriteOp(postbacks=(_postback(),)))
        first = asyncio.create_task(frozen.drain())
        await slow.asked.wait()
        clock.advance(one.lease_seconds)
        second = asyncio.create_task(other.drain())
        await fast.asked.wait()
        slow.go.set()
        await first
        fast.go.set()
        await second
        [row] = await one.postbacks(status=None, cid=None, limit=10)
        view = await one.postback(row.id)
        assert view is not None
        assert (view.status, view.attempts) == ("delivered", 1)
        assert [(a.attempt, a.status_code) for a in view.attempt_log or []] == [(1, 200)]
        clock.advance(3600)
        await frozen.drain()
        await other.drain()
        assert (slow.calls, fast.calls) == (1, 1)
    finally:
        await frozen.close()
        await other.close()
        await slow.client.aclose()
        await fast.client.aclose()
        await one.close()
        await two.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running_receiver:
        yield running_receiver


@pytest.fixture
async def api(request: pytest.FixtureRequest, receiver: Receiver,
              db_path: Path) -> AsyncIterator[Harness]:
    from tests.conftest import running_on

    async with running_on(request, postback_config(receiver, db_path)) as harness:
        yield harness


@pytest.mark.both_stores
async def test_a_resend_while_the_postback_is_being_delivered_answers_409(
        api: Harness, receiver: Receiver) -> None:
    receiver.script("/buyer", Answer(hang=True))
    await convert(api)
    for _ in range(500):  # the dispatcher sends it in the background
        if receiver.hanging:
            break
        await asyncio.sleep(0.01)
    assert receiver.hanging == 1
    buyer = await only_buyer(api)
    answer = await api.client.post(f"/api/postbacks/{buyer['id']}/retry", headers=AUTH)
    assert answer.json() == error(409, "Postback being delivered")
    receiver.release()
    await api.services.dispatcher.drain()
    buyer = await only_buyer(api)
    assert (buyer["status"], buyer["attempts"]) == ("delivered", 1)
    assert len(receiver.of("/buyer")) == 1


async def test_a_resend_on_one_node_while_another_delivers_answers_409(
        receiver: Receiver, db_path: Path, pg_url: str) -> None:
    from app.config.schema import with_server_overrides
    from tests.conftest import running

    clock = FakeClock()
    config = with_server_overrides(postback_config(receiver, db_path), "test", db=pg_url)
    other = postgres_store(pg_url, clock)
    await other.open()
    try:
        # The other node leases everything due before this one's dispatcher looks.
        async with running(config, clock, postgres_store(pg_url, clock)) as api:
            await api.services.dispatcher.close()
            await convert(api)
            await api.services.store.flush()
            taken = await _due(other)
            buyer = await only_buyer(api)
            assert buyer["id"] in [due.id for due in taken]
            path = f"/api/postbacks/{buyer['id']}/retry"
            answer = await api.client.post(path, headers=AUTH)
            assert answer.json() == error(409, "Postback being delivered")
            # The other node died: once its lease has run out, the resend goes ahead.
            clock.advance(other.lease_seconds)
            answer = await api.client.post(path, headers=AUTH)
            assert answer.status_code == 202
            assert answer.json()["data"]["status"] == "pending"
    finally:
        await other.close()


@pytest.mark.both_stores
async def test_a_resend_of_a_dead_letter_still_sends_it(api: Harness,
                                                         receiver: Receiver) -> None:
    receiver.script("/buyer", Answer(400))
    await convert(api)
    await api.services.dispatcher.drain()
    buyer = await only_buyer(api)
    assert buyer["status"] == "failed"
    answer = await api.client.post(f"/api/postbacks/{buyer['id']}/retry", headers=AUTH)
    assert answer.status_code == 202
    await api.services.dispatcher.drain()
    buyer = await only_buyer(api)
    assert (buyer["status"], buyer["attempts"]) == ("delivered", 2)
