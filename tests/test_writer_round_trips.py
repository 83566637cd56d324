"""SQLite's writer sends a whole batch to its connection's thread in one call.

Every call to that thread is a round trip through the event loop and a handoff of the
interpreter lock; the thread is handed in, so the test counts what is sent to it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgspec
import pytest
import structlog

from storage.errors import CapReached, StoreClosed
from storage.records import AnswerRow, CapCharge, LeadKeyRow, WriteOp
from storage.sqlite.connection import open_writer, prepare
from storage.sqlite.writer import Writer
from tests.test_writer import count, event, lead, postback_row

AT = "2026-01-01T00:00:00.000000Z"


class CountedThread(ThreadPoolExecutor):
    """A one-thread pool that counts the calls handed to it."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.calls = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.calls += 1
        return super().submit(fn, *args, **kwargs)


@pytest.fixture
async def counted(tmp_path: Path) -> AsyncIterator[tuple[Writer, CountedThread]]:
    path = tmp_path / "r.db"
    prepare(path)
    thread = CountedThread()
    conn = await open_writer(path, synchronous="NORMAL", thread=thread)
    writer = Writer(conn, max_pending=100, gather_seconds=0)
    writer.start()
    yield writer, thread
    await writer.close(5)
    await conn.close()


def charge(conversion_id: str, limit: int) -> CapCharge:
    return CapCharge(conversion_id=conversion_id, cap="cap", period="total", amount=1,
                     limit=limit)


def rich_op(transaction_id: str, *, cap_limit: int = 10) -> WriteOp:
    """An op that writes to most tables: lead, event, postback, lead key, answer, cap."""
    return WriteOp(
        lead=lead(transaction_id).lead,
        event=event(transaction_id).event,
        postbacks=(postback_row(transaction_id),),
        lead_keys=(LeadKeyRow(cid="c", digest=f"d-{transaction_id}", created_at=AT,
                              transaction_id=transaction_id),),
        answer=AnswerRow(key=f"k-{transaction_id}", fingerprint="f", status=200,
                         content_type="application/json", headers="[]", body="",
                         created_at=AT, expires_at="2026-01-02T00:00:00.000000Z"),
        cap_charges=(charge(f"conv-{transaction_id}", cap_limit),))


async def test_a_commit_mode_batch_is_one_call_to_the_connections_thread(
    counted: tuple[Writer, CountedThread],
) -> None:
    writer, thread = counted
    before = thread.calls
    await asyncio.wait_for(asyncio.gather(
        writer.submit(rich_op("a"), bounded=True), writer.submit(rich_op("b"), bounded=True)), 20)
    assert writer.batches_committed == 1
    assert thread.calls - before <= 2
    assert writer.round_trips == thread.calls - 1  # all but opening the connection


async def test_a_refused_op_costs_one_call_per_op_of_its_batch_and_no_separate_rollback(
    counted: tuple[Writer, CountedThread],
) -> None:
    writer, thread = counted
    before = thread.calls
    # The cap holds one: the batch fails whole, then each op is written alone.
    first = writer.submit(rich_op("a", cap_limit=1), bounded=True)
    second = writer.submit(rich_op("b", cap_limit=1), bounded=True)
    with structlog.testing.capture_logs():
        await asyncio.wait_for(first, 20)
        with pytest.raises(CapReached):
            await asyncio.wait_for(second, 20)
    assert thread.calls - before == 3


async def test_a_batch_that_fails_leaves_no_transaction_open(
    tmp_path: Path, counted: tuple[Writer, CountedThread],
) -> None:
    writer, _ = counted
    with pytest.raises(sqlite3.IntegrityError):
        await asyncio.wait_for(writer.submit(event("no-such-lead"), bounded=True), 20)
    assert not writer._conn.in_transaction
    await asyncio.wait_for(writer.submit(lead("a"), bounded=True), 20)
    await writer.close(5)
    assert count(tmp_path / "r.db", "leads") == 1


class SlowThread(ThreadPoolExecutor):
    """A one-thread pool whose calls take ``before`` seconds to start (a disk that stalls
    before the commit) or ``after`` seconds to come back once done (one that stalls
    after it)."""

    def __init__(self, *, before: float = 0.0, after: float = 0.0) -> None:
        super().__init__(max_workers=1)
        self.before, self.after = before, after

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        def slowly() -> Any:
            time.sleep(self.before)
            try:
                return fn(*args, **kwargs)
            finally:
                time.sleep(self.after)
        return super().submit(slowly)


@pytest.mark.parametrize("stall", ["before", "after"])
async def test_a_batch_given_up_at_shutdown_is_reported_lost_only_if_it_is(
    tmp_path: Path, stall: str
) -> None:
    """close() past its timeout gives up on the batch in the writer's thread: one not yet
    committed rolls back and is reported lost; one that committed is not reported, and
    its caller learns it was stored."""
    path = tmp_path / "s.db"
    prepare(path)
    conn = await open_writer(path, synchronous="NORMAL",
                             thread=SlowThread(**{stall: 0.5}))
    writer = Writer(conn, max_pending=100, gather_seconds=0)
    writer.start()
    signed = msgspec.structs.replace(postback_row("t1"), secret="legacy-s3cret",
                                     signing_secrets="whsec_c2lnbmluZy1zM2NyZXQ=")
    written = writer.submit(msgspec.structs.replace(lead("t1"), postbacks=(signed,)),
                            bounded=True)
    await asyncio.sleep(0.05)  # the batch is in the thread
    with structlog.testing.capture_logs() as logs:
        await writer.close(0.1)
    await conn.close()
    lost = [line for line in logs if line["event"] == "write_abandoned"]
    if stall == "before":
        assert isinstance(written.exception(), StoreClosed)
        assert (len(lost), count(path, "leads")) == (1, 0)
        # What a recovery needs is logged, the config's secrets are not.
        assert "t1" in str(lost) and "s3cr" not in str(lost) and "whsec" not in str(lost)
    else:
        assert written.exception() is None
        assert (len(lost), count(path, "leads")) == (0, 1)
