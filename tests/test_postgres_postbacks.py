"""Postbacks on PostgreSQL: any process may send any postback, one at a time.

A due postback is leased to the process that takes it (FOR UPDATE SKIP LOCKED, then
``claimed_until``); recording its attempt ends the lease, and a dead process's lease runs
out so that another process sends it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import msgspec
import pytest

from app.config.schema import DeliveryConfig, with_server_overrides
from app.postbacks.dispatcher import Dispatcher
from storage.postgres.store import PostgresStore
from storage.records import DUE_SCAN, HostLoad, PostbackChange, PostbackRow, WriteOp
from tests.conftest import FakeClock, postgres_store, running
from tests.receiver import Answer, Receiver
from tests.test_postbacks import convert, postback_config

ANY_HOST = HostLoad(per_host=100, in_flight={})


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running_receiver:
        yield running_receiver


def _row(host: str = "buyer.example", url: str = "") -> PostbackRow:
    return PostbackRow(
        transaction_id="t1", cid="c", pid="p", event_id="sale", conversion_id=None,
        kind="buyer", method="GET", url=url or f"https://{host}/pb", host=host, body=None,
        secret=None, status="pending", max_attempts=3, next_attempt_at="2026-11-28T11:00:00Z",
        created_at="2026-11-28T11:00:00Z", updated_at="2026-11-28T11:00:00Z")


async def _lead(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("INSERT INTO leads (transaction_id, cid, pid, fields, created_at)"
                           " VALUES ('t1', 'c', 'p', '{}', '2026-11-28T11:00:00Z')")
    finally:
        await conn.close()


async def test_a_due_postback_goes_to_one_process_until_its_lease_runs_out(
        pg_url: str) -> None:
    clock = FakeClock()
    one, two = postgres_store(pg_url, clock), postgres_store(pg_url, clock)
    await one.open()
    await two.open()
    try:
        await _lead(pg_url)
        await one.commit(WriteOp(postbacks=(_row(),)))
        now = "2026-11-28T12:00:00Z"
        due = dict(limit=10, skip_ids=[], hosts=ANY_HOST)
        [taken] = await one.due_postbacks(now, **due)
        assert await two.due_postbacks(now, **due) == []
        assert await one.due_postbacks(now, **due) == []
        # Nothing to wait for while another process holds it.
        assert await two.next_postback_due_at([], []) is None
        clock.advance(one.lease_seconds)
        [again] = await two.due_postbacks(now, **due)
        assert again.id == taken.id
    finally:
        await one.close()
        await two.close()


async def test_recording_an_attempt_ends_the_lease(pg_url: str) -> None:
    clock = FakeClock()
    store = postgres_store(pg_url, clock)
    await store.open()
    try:
        await _lead(pg_url)
        await store.commit(WriteOp(postbacks=(_row(),)))
        now = "2026-11-28T12:00:00Z"
        [taken] = await store.due_postbacks(now, limit=10, skip_ids=[], hosts=ANY_HOST)
        await store.commit(WriteOp(postback_change=PostbackChange(
            postback_id=taken.id, status="pending", attempts=1, max_attempts=3,
            next_attempt_at=now, last_status_code=503, last_error=None, updated_at=now)))
        [retried] = await store.due_postbacks(now, limit=10, skip_ids=[], hosts=ANY_HOST)
        assert (retried.id, retried.attempts) == (taken.id, 1)
    finally:
        await store.close()


async def test_a_read_leases_no_more_for_a_host_than_it_has_room_for(pg_url: str) -> None:
    clock = FakeClock()  # the database's clock stands still: no lease runs out
    one, two = postgres_store(pg_url, clock), postgres_store(pg_url, clock)
    await one.open()
    await two.open()
    try:
        await _lead(pg_url)
        await one.commit(WriteOp(postbacks=(_row("a.example"),) * 3 + (_row("b.example"),)))
        now = "2026-11-28T12:00:00Z"
        room = HostLoad(per_host=2, in_flight={"a.example": 1})
        taken = await one.due_postbacks(now, limit=10, skip_ids=[], hosts=room)
        assert [postback.host for postback in taken] == ["a.example", "b.example"]
        # The two a.example postbacks one had no room for are not leased: two takes them.
        rest = await two.due_postbacks(now, limit=10, skip_ids=[], hosts=ANY_HOST)
        assert [postback.host for postback in rest] == ["a.example", "a.example"]
    finally:
        await one.close()
        await two.close()


async def test_a_full_hosts_backlog_does_not_hide_another_hosts_postback(
        pg_url: str) -> None:
    clock = FakeClock()
    store = postgres_store(pg_url, clock)
    await store.open()
    try:
        await _lead(pg_url)
        await store.commit(WriteOp(postbacks=(_row("down.example"),) * (DUE_SCAN + 10)))
        later = msgspec.structs.replace(_row("up.example"), next_attempt_at="2026-11-28T11:30:00Z")
        await store.commit(WriteOp(postbacks=(later,)))
        hosts = HostLoad(per_host=2, in_flight={"down.example": 2})
        [due] = await store.due_postbacks("2026-11-28T12:00:00Z", limit=10, skip_ids=[],
                                          hosts=hosts)
        assert due.host == "up.example"
    finally:
        await store.close()


async def test_postbacks_held_back_for_a_full_host_go_when_it_has_room(
        pg_url: str, receiver: Receiver) -> None:
    """A burst to one buyer: more is due than ``per_host`` lets a pass send at once. The
    rest go as soon as the host has room, not when a lease runs out."""
    clock = FakeClock()  # frozen: a lease never runs out in this test
    store = postgres_store(pg_url, clock)
    await store.open()
    try:
        await _lead(pg_url)
        host = httpx.URL(receiver.url).netloc.decode()
        await store.commit(WriteOp(postbacks=(_row(host, f"{receiver.url}/buyer"),) * 3))
        async with httpx.AsyncClient() as client:
            sending = Dispatcher(store, clock, DeliveryConfig(per_host=1), client=client)
            await sending.drain()
        assert await store.postback_counts() == {"delivered": 3}
        assert receiver.paths() == ["/buyer"] * 3
    finally:
        await store.close()


async def test_a_postback_being_sent_by_one_node_is_not_sent_by_the_other(
        pg_url: str, receiver: Receiver, tmp_path: Path) -> None:
    # Both postbacks hang at the receiver, and would hang twice if sent twice.
    receiver.script("/buyer", *[Answer(hang=True)] * 2)
    receiver.script("/source", *[Answer(hang=True)] * 2)
    clock = FakeClock()
    config = with_server_overrides(postback_config(receiver, tmp_path / "unused.db"), "test",
                                   db=pg_url)
    async with running(config, clock, postgres_store(pg_url, clock)) as one, \
            running(config, clock, postgres_store(pg_url, clock)) as two:
        await convert(one)
        for _ in range(500):
            if receiver.hanging == 2:
                break
            await asyncio.sleep(0.01)
        assert receiver.hanging == 2
        # Both dispatchers look for due postbacks, again and again, while those hang.
        for _ in range(20):
            one.services.dispatcher.wake()
            two.services.dispatcher.wake()
            await asyncio.sleep(0.01)
        assert receiver.hanging == 2
        receiver.release()
        await asyncio.gather(one.services.dispatcher.drain(), two.services.dispatcher.drain())
        store = one.services.store
        assert isinstance(store, PostgresStore)
        assert await store.postback_counts() == {"delivered": 2}
    assert sorted(receiver.paths()) == ["/buyer", "/source"]
