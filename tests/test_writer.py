"""The single writer: group commit, isolation of a bad op, retries, bound, drain on close."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from storage.errors import StoreBusy, StoreClosed
from storage.loader import BatchLoader
from storage.records import EventRow, LeadRow, PostbackRow, StoredTransaction, WriteOp
from storage.sqlite.connection import open_writer, prepare
from storage.sqlite.store import Store
from storage.sqlite.writer import Writer


def lead(transaction_id: str) -> WriteOp:
    return WriteOp(lead=LeadRow(transaction_id=transaction_id, cid="c", pid="organic",
                                fields="{}", cost=None, ip=None, user_agent=None,
                                created_at="2026-01-01T00:00:00.000000Z"))


def event(transaction_id: str, event_id: str = "e") -> WriteOp:
    return WriteOp(event=EventRow(
        transaction_id=transaction_id, cid="c", event_id=event_id, pid="organic", once=True,
        conversion=False, conversion_id=None, revenue=None, payout=None, converted_at=None,
        fields="{}", ip=None, user_agent=None, fired_at="2026-01-01T00:00:00.000000Z"))


def count(path: Path, table: str) -> int:
    with sqlite3.connect(path) as conn:
        (n,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(n)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = Store(tmp_path / "w.db", max_pending=100)
    await store.open()
    yield store
    await store.close()


async def test_ops_queued_together_commit_in_one_transaction(store: Store) -> None:
    futures = [store.submit(lead(f"t{index}")) for index in range(50)]
    await asyncio.gather(*futures)
    assert store.writer.batches_committed == 1
    assert count(store.path, "leads") == 50


async def test_bad_op_is_refused_alone_and_the_rest_of_its_batch_commits(store: Store) -> None:
    good_before = store.submit(lead("a"))
    orphan_op = event("no-such-lead")
    orphan = store.submit(orphan_op)  # breaks the foreign key
    good_after = store.submit(lead("b"))
    with structlog.testing.capture_logs() as logs:
        await asyncio.gather(good_before, good_after)
        with pytest.raises(sqlite3.IntegrityError) as refused:
            await orphan
    assert count(store.path, "leads") == 2
    assert count(store.path, "events") == 0
    # The operator's record of what was refused: the error and which op, never its rows'
    # contents (lead fields are personal data).
    [line] = [entry for entry in logs if entry["event"] == "write_refused"]
    assert line["log_level"] == "error"
    assert line["error"] == repr(refused.value)
    assert line["op"] == {"parts": ["event"], "transaction_id": "no-such-lead"}
    assert "fields" not in repr(line)


async def test_the_database_refuses_a_second_fire_once_event(store: Store) -> None:
    await store.submit(lead("a"))
    await store.submit(event("a"))
    with pytest.raises(sqlite3.IntegrityError):
        await store.submit(event("a"))
    assert count(store.path, "events") == 1


def postback_row(transaction_id: str, method: str = "GET") -> PostbackRow:
    return PostbackRow(
        transaction_id=transaction_id, cid="c", pid="organic", event_id="e",
        conversion_id="conv_1", kind="buyer", method=method,  # type: ignore[arg-type]
        url="http://buyer.example/pb", host="buyer.example", body=None, secret=None,
        status="pending", max_attempts=8, next_attempt_at="2026-01-01T00:00:00.000000Z",
        created_at="2026-01-01T00:00:00.000000Z", updated_at="2026-01-01T00:00:00.000000Z")


async def test_an_event_and_its_postbacks_commit_together_or_not_at_all(store: Store) -> None:
    await store.submit(lead("a"))
    refused = WriteOp(event=event("a").event, postbacks=(postback_row("a", method="PUT"),))
    with pytest.raises(sqlite3.IntegrityError):
        await store.submit(refused)
    assert (count(store.path, "events"), count(store.path, "postbacks")) == (0, 0)
    await store.submit(WriteOp(event=event("a").event, postbacks=(postback_row("a"),) * 2))
    assert (count(store.path, "events"), count(store.path, "postbacks")) == (1, 2)


async def test_commit_listeners_see_each_committed_batch(store: Store) -> None:
    seen: list[int] = []
    store.on_commit(lambda ops: seen.append(len(ops)))
    await asyncio.gather(*(store.submit(lead(f"t{index}")) for index in range(3)))
    assert seen == [3]


async def test_a_listener_that_raises_is_logged_and_the_writer_goes_on(store: Store) -> None:
    def broken(ops: list[WriteOp]) -> None:
        raise RuntimeError("listener bug")

    store.on_commit(broken)
    with structlog.testing.capture_logs() as logs:
        await asyncio.wait_for(store.submit(lead("a")), 5)
        await asyncio.wait_for(store.submit(lead("b")), 5)
    assert count(store.path, "leads") == 2
    failures = [entry for entry in logs if entry["event"] == "commit_listener_failed"]
    assert [(entry["log_level"], entry["exc_info"]) for entry in failures] == [
        ("error", True)] * 2


async def test_each_commit_is_observed_with_its_size_and_duration(store: Store) -> None:
    observed: list[tuple[int, float]] = []
    store.writer.commit_observer = lambda size, seconds: observed.append((size, seconds))
    started = time.perf_counter()
    await asyncio.gather(*(store.submit(lead(f"t{index}")) for index in range(3)))
    elapsed = time.perf_counter() - started
    [(size, seconds)] = observed
    assert size == 3
    assert 0 < seconds <= elapsed  # the commit's own span, within the test's


async def test_passing_failure_is_retried_until_the_batch_commits(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = store.writer
    real_apply = writer._apply
    failures = 3
    seen_failing: list[bool] = []

    async def flaky(ops: list[WriteOp]) -> Any:
        nonlocal failures
        if failures:
            failures -= 1
            seen_failing.append(writer.failing)
            raise sqlite3.OperationalError("disk I/O error")
        return await real_apply(ops)

    monkeypatch.setattr(writer, "_apply", flaky)
    monkeypatch.setattr(writer, "_retry_initial", 0.001)
    with structlog.testing.capture_logs() as logs:
        await asyncio.wait_for(store.submit(lead("a")), 5)
    assert count(store.path, "leads") == 1
    assert seen_failing == [False, True, True]
    assert writer.failing is False
    # Each failure is logged with its error, the batch's size and the doubling wait.
    retries = [entry for entry in logs if entry["event"] == "write_failed_retrying"]
    assert [(entry["log_level"], entry["error"], entry["ops"], entry["retry_in"])
            for entry in retries] == [
        ("warning", repr(sqlite3.OperationalError("disk I/O error")), 1, wait)
        for wait in (0.001, 0.002, 0.004)]


async def test_a_rollback_that_fails_too_is_logged_and_the_batch_still_commits(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = store.writer
    conn = writer._conn  # type: ignore[attr-defined]
    real_apply, real_rollback = writer._apply, conn.rollback
    failures = {"apply": 1, "rollback": 1}

    async def apply_failing_mid_batch(ops: list[WriteOp]) -> Any:
        if failures["apply"]:
            failures["apply"] -= 1
            await conn.execute("BEGIN IMMEDIATE")
            raise sqlite3.OperationalError("disk I/O error")
        return await real_apply(ops)

    async def rollback_of_a_lost_connection() -> None:
        if failures["rollback"]:
            failures["rollback"] -= 1
            raise sqlite3.OperationalError("connection lost")
        await real_rollback()

    monkeypatch.setattr(writer, "_apply", apply_failing_mid_batch)
    monkeypatch.setattr(conn, "rollback", rollback_of_a_lost_connection)
    monkeypatch.setattr(writer, "_retry_initial", 0.001)
    with structlog.testing.capture_logs() as logs:
        await asyncio.wait_for(store.submit(lead("a")), 5)
    assert count(store.path, "leads") == 1
    [failed] = [line for line in logs if line["event"] == "rollback_failed"]
    assert failed["log_level"] == "error"
    assert failed["error"] == repr(sqlite3.OperationalError("connection lost"))


async def test_submit_past_the_bound_is_refused(tmp_path: Path) -> None:
    store = Store(tmp_path / "b.db", max_pending=2, gather_seconds=60)
    await store.open()
    try:
        first, second = store.submit(lead("a")), store.submit(lead("b"))
        with pytest.raises(StoreBusy):
            store.submit(lead("c"))
        assert not store.has_room()
    finally:
        await store.close()
    assert first.done() and second.done()
    assert count(tmp_path / "b.db", "leads") == 2


async def test_close_commits_what_is_queued_and_is_idempotent(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.db", gather_seconds=60)
    await store.open()
    pending = [store.submit(lead(f"t{index}")) for index in range(10)]
    await store.close()
    await store.close()
    assert all(future.done() and future.exception() is None for future in pending)
    assert count(tmp_path / "c.db", "leads") == 10
    with pytest.raises(StoreClosed):
        store.submit(lead("late"))


async def test_barrier_waits_for_earlier_writes_without_the_gather_delay(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "d.db", gather_seconds=60)
    await store.open()
    try:
        store.submit(lead("a"))
        await asyncio.wait_for(store.flush(), 5)
        assert count(tmp_path / "d.db", "leads") == 1
    finally:
        await store.close()


async def test_schema_version_is_recorded(store: Store) -> None:
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] >= 1
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_cold_loads_asked_together_are_read_in_one_query(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    await asyncio.gather(store.submit(lead("a")), store.submit(lead("b")))
    await store.submit(event("a", "e1"))
    await store.submit(event("a", "e2"))
    loader = store._loader
    assert loader is not None
    queries: list[list[str]] = []
    batches = loader._batches
    real_query = batches._query

    async def counted(batch: dict[str, None]) -> Any:
        queries.append(list(batch))
        return await real_query(batch)

    monkeypatch.setattr(batches, "_query", counted)
    a, b, again, missing = await asyncio.gather(
        store.load_transaction("a"), store.load_transaction("b"),
        store.load_transaction("a"), store.load_transaction("nope"))
    assert len(queries) == 1 and sorted(queries[0]) == ["a", "b", "nope"]
    assert a is not None and a.fired == frozenset({"e1", "e2"}) and a.cid == "c"
    assert b is not None and b.fired == frozenset()
    assert again == a
    assert missing is None


class FakeClock:
    """The writer's clock, moved by hand: the gathering delay is read from it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def slow_gatherer(tmp_path: Path) -> AsyncIterator[tuple[Writer, FakeClock]]:
    """A write-behind writer that would gather for an hour by its clock."""
    path = tmp_path / "g.db"
    prepare(path)
    conn = await open_writer(path, synchronous="NORMAL")
    clock = FakeClock()
    writer = Writer(conn, max_pending=100, gather_seconds=3600, clock=clock)
    writer.start()
    yield writer, clock
    await writer.close(5)
    await conn.close()


# The wait_for bounds below only keep a broken writer from hanging the suite: a writer
# that gathers again waits an hour, one that does not commits on the next turns of the loop.

async def test_gathering_counts_from_the_oldest_ops_arrival(
    slow_gatherer: tuple[Writer, FakeClock],
) -> None:
    writer, clock = slow_gatherer
    first = writer.submit(lead("a"), bounded=True)
    clock.now += 3601  # the op waited its interval before the writer got round to it
    await asyncio.wait_for(first, 20)
    assert writer.batches_committed == 1


async def test_ops_that_waited_out_a_long_commit_commit_without_gathering_again(
    slow_gatherer: tuple[Writer, FakeClock], monkeypatch: pytest.MonkeyPatch,
) -> None:
    writer, clock = slow_gatherer
    real_apply = writer._apply
    behind: list[asyncio.Future[None]] = []

    async def long_commit(ops: list[WriteOp]) -> None:
        if not behind:
            behind.append(writer.submit(lead("b"), bounded=True))  # queues while this batch commits
            clock.now += 3601  # ... and the commit outlasts its whole interval
        await real_apply(ops)

    monkeypatch.setattr(writer, "_apply", long_commit)
    first = writer.submit(lead("a"), bounded=True)
    clock.now += 3601
    await asyncio.wait_for(first, 20)
    await asyncio.wait_for(behind[0], 20)
    assert writer.batches_committed == 2


async def test_an_op_younger_than_the_interval_still_waits_for_company(
    slow_gatherer: tuple[Writer, FakeClock],
) -> None:
    writer, clock = slow_gatherer
    first = writer.submit(lead("a"), bounded=True)
    clock.now += 3599
    for _ in range(20):
        await asyncio.sleep(0)
    assert not first.done()
    second = writer.submit(lead("b"), bounded=True)
    await asyncio.wait_for(writer.barrier(), 20)
    assert first.done() and second.done()
    assert writer.batches_committed == 1


async def test_a_flush_once_done_is_forgotten_and_later_ops_gather_again(
    slow_gatherer: tuple[Writer, FakeClock],
) -> None:
    writer, _ = slow_gatherer
    writer.submit(lead("a"), bounded=True)
    await asyncio.wait_for(writer.barrier(), 20)
    later = writer.submit(lead("b"), bounded=True)
    for _ in range(20):
        await asyncio.sleep(0)
    # Still queued, waiting for company: the flush asked for the ops before it only.
    assert (writer.pending, later.done()) == (1, False)
    await asyncio.wait_for(writer.barrier(), 20)
    assert writer.batches_committed == 2


async def test_a_flush_behind_more_than_a_batch_sends_every_batch_without_gathering(
    tmp_path: Path,
) -> None:
    path = tmp_path / "f.db"
    prepare(path)
    conn = await open_writer(path, synchronous="NORMAL")
    writer = Writer(conn, max_pending=100, gather_seconds=3600, max_batch=2, clock=FakeClock())
    writer.start()
    try:
        written = [writer.submit(lead(f"t{index}"), bounded=True) for index in range(5)]
        await asyncio.wait_for(writer.barrier(), 20)
        assert all(future.done() for future in written)
        assert writer.batches_committed == 3  # 2 + 2 + the last op with the barrier
    finally:
        await writer.close(5)
        await conn.close()
    assert count(path, "leads") == 5


async def test_writes_abandoned_at_shutdown_fail_their_callers_instead_of_hanging(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def failing(ops: list[WriteOp]) -> Any:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(store.writer, "_apply", failing)
    written = store.submit(lead("a"))
    with structlog.testing.capture_logs():
        await store.writer.close(timeout=0.1)
    with pytest.raises(StoreClosed):
        await asyncio.wait_for(written, 5)


async def test_a_load_still_waiting_when_the_store_closes_fails_instead_of_hanging() -> None:
    async def unread(ids: list[str]) -> dict[str, StoredTransaction]:
        raise AssertionError("never read: the loader is closed first")

    loader = BatchLoader(unread)
    waiting = loader.load("txn_1")
    await loader.close()
    with pytest.raises(RuntimeError, match=r"^store closed$"):
        await asyncio.wait_for(waiting, 5)


async def test_a_load_being_read_when_the_store_closes_fails_instead_of_hanging() -> None:
    reading = asyncio.Event()

    async def never_answers(ids: list[str]) -> dict[str, StoredTransaction]:
        reading.set()
        await asyncio.Event().wait()  # cancelled by close()
        raise AssertionError("unreachable")

    loader = BatchLoader(never_answers)
    loader.start()
    waiting = loader.load("txn_1")
    await asyncio.wait_for(reading.wait(), 5)
    await loader.close()
    with pytest.raises(RuntimeError, match=r"^store closed$"):
        await asyncio.wait_for(waiting, 5)


async def test_a_failed_cold_load_fails_its_callers_is_logged_and_the_next_is_read() -> None:
    asked: list[list[str]] = []

    async def query(ids: list[str]) -> dict[str, StoredTransaction]:
        asked.append(ids)
        if len(asked) == 1:
            raise sqlite3.OperationalError("disk I/O error")
        return {}

    loader = BatchLoader(query, max_batch=1)  # one transaction per read
    loader.start()
    with structlog.testing.capture_logs() as logs:
        first, second = loader.load("txn_1"), loader.load("txn_2")
        with pytest.raises(sqlite3.OperationalError):
            await asyncio.wait_for(first, 5)
        assert await asyncio.wait_for(second, 5) is None  # read after the failed one
    await loader.close()
    assert asked == [["txn_1"], ["txn_2"]]
    assert loader.transactions_asked == 2
    [line] = [entry for entry in logs if entry["event"] == "cold_load_failed"]
    assert (line["log_level"], line["error"], line["transactions"]) == (
        "error", repr(sqlite3.OperationalError("disk I/O error")), 1)
