"""The dispatcher against receivers that answer badly: slowly, in pieces, too much, not UTF-8.

Each test drives one ``Dispatcher`` on its own store, with the receiver below on the test's
own event loop: it sends an answer as the test scripts it (chunk by chunk, a byte at a time
with pauses) and holds requests until the test lets them go, batch by batch, which
``tests.receiver.Receiver`` (one whole answer, one release for good) cannot do. Nothing here
asserts a duration: a slow answer is judged by what was recorded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
import structlog.testing

from actors.clock import utc_text
from app.config.schema import DeliveryConfig
from app.observe.logs import merge_request_fields, start_request
from app.postbacks.dispatcher import Dispatcher
from storage.errors import StoreUnavailable
from storage.records import (
    DUE_SCAN,
    AttemptView,
    DuePostback,
    HostLoad,
    PostbackRow,
    PostbackView,
    WriteOp,
)
from storage.sqlite.store import Store
from tests.conftest import FakeClock
from tests.test_writer import lead


class RawReceiver:
    """An HTTP/1.1 receiver answering 200 with the scripted body pieces, one connection each.

    ``chunked`` sends each piece as an HTTP chunk of its own; otherwise the body has a
    Content-Length and the pieces are written one by one, ``pause`` seconds apart.
    ``hold`` keeps every request waiting until ``release()``, which lets go only the
    requests waiting at that moment; the first ``answer_first`` requests are answered at
    once all the same. ``stall`` promises one byte more than the pieces and never sends
    it: the answer never ends.
    """

    def __init__(self, pieces: list[bytes], *, chunked: bool = False, pause: float = 0.0,
                 hold: bool = False, answer_first: int = 0, stall: bool = False) -> None:
        self.pieces = pieces
        self.answer_first = answer_first
        self.stall = stall
        self.chunked = chunked
        self.pause = pause
        self.hold = hold
        self.received = 0
        self.waiting = 0
        self.peak = 0  # the most requests this receiver was answering at once
        self._open = 0
        self._gate = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self.url = ""

    async def __aenter__(self) -> RawReceiver:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    @property
    def host(self) -> str:
        return self.url.removeprefix("http://")

    def release(self) -> None:
        self._gate.set()
        self._gate = asyncio.Event()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await reader.readuntil(b"\r\n\r\n")
            self.received += 1
            self._open += 1
            self.peak = max(self.peak, self._open)
            try:
                if self.hold and self.received > self.answer_first:
                    self.waiting += 1
                    try:
                        await self._gate.wait()
                    finally:
                        self.waiting -= 1
                await self._answer(writer)
            finally:
                self._open -= 1
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the dispatcher gave up on the answer
        finally:
            writer.close()
            self._handlers.discard(task)

    async def _answer(self, writer: asyncio.StreamWriter) -> None:
        framing = (b"Transfer-Encoding: chunked" if self.chunked else
                   b"Content-Length: %d" % (sum(map(len, self.pieces)) + self.stall))
        writer.write(b"HTTP/1.1 200 OK\r\n" + framing + b"\r\nConnection: close\r\n\r\n")
        await writer.drain()
        for piece in self.pieces:
            if self.pause:
                await asyncio.sleep(self.pause)
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece) if self.chunked else piece)
            await writer.drain()
        if self.stall:
            await asyncio.Event().wait()  # cancelled when the receiver closes
        if self.chunked:
            writer.write(b"0\r\n\r\n")
            await writer.drain()


class StepTimer:
    """A timer the test sets: each reading is the next of the given seconds."""

    def __init__(self, *readings: float) -> None:
        self._readings: Iterator[float] = iter(readings)

    def __call__(self) -> float:
        return next(self._readings)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = Store(tmp_path / "postbacks.db")
    await store.open()
    yield store
    await store.close()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


async def owe(store: Store, clock: FakeClock, url: str, count: int = 1) -> None:
    """``count`` GET postbacks to ``url``, due now (ids 1..count)."""
    now = utc_text(clock.now())
    host = httpx.URL(url).netloc.decode()
    row = PostbackRow(transaction_id="tx", cid="cmp", pid="src", event_id="sold",
                      conversion_id=None, kind="buyer", method="GET", url=url, host=host,
                      body=None, secret=None, status="pending", max_attempts=5,
                      next_attempt_at=now, created_at=now, updated_at=now)
    written = store.submit(WriteOp(postbacks=(row,) * count))
    await store.flush()
    assert written.done()


async def shown(store: Store, postback_id: int = 1) -> tuple[PostbackView, list[AttemptView]]:
    await store.flush()
    postback = await store.postback(postback_id)
    assert postback is not None and postback.attempt_log is not None
    return postback, postback.attempt_log


def dispatcher(store: Store, clock: FakeClock, client: httpx.AsyncClient, *,
               timer: Callable[[], float] = time.perf_counter, **settings: Any) -> Dispatcher:
    return Dispatcher(store, clock, DeliveryConfig(**settings), client=client, timer=timer)


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait, without asserting how long, until ``condition()`` holds (fail after ~10 s)."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


async def test_the_latency_is_the_timed_span_in_milliseconds_to_the_microsecond(
    store: Store, client: httpx.AsyncClient
) -> None:
    clock = FakeClock()
    async with RawReceiver([b"ok"]) as receiver:
        await owe(store, clock, f"{receiver.url}/buyer")
        # 12.3456 ms between the two readings: stored as 12.346.
        sending = dispatcher(store, clock, client, timer=StepTimer(2.5, 2.5123456))
        with structlog.testing.capture_logs() as logs:
            await sending.drain()
    _, [attempt] = await shown(store)
    assert attempt.latency_ms == 12.346
    [line] = [entry for entry in logs if entry["event"] == "postback_attempt"]
    assert line["latency_ms"] == 12.346


async def test_an_answer_dripping_past_the_timeout_is_cut_and_retried(
    store: Store, client: httpx.AsyncClient
) -> None:
    clock = FakeClock()
    # A byte every 50 ms keeps each read well inside the timeout; the whole takes 2 s.
    async with RawReceiver([b"x"] * 40, pause=0.05) as receiver:
        await owe(store, clock, f"{receiver.url}/buyer")
        sending = dispatcher(store, clock, client, timeout_seconds=0.5)
        with structlog.testing.capture_logs() as logs:
            await sending.drain()
    postback, [attempt] = await shown(store)
    assert postback.status == "pending"
    assert postback.last_error is not None and postback.last_error.startswith("timeout: ")
    assert attempt.error == postback.last_error
    assert attempt.response is None
    [line] = [entry for entry in logs if entry["event"] == "postback_attempt"]
    assert (line["error"], line["outcome"]) == (postback.last_error, "pending")


async def test_an_answer_in_many_chunks_is_kept_to_its_first_1024_bytes(
    store: Store, client: httpx.AsyncClient
) -> None:
    clock = FakeClock()
    body = "".join(f"{i:04d}," for i in range(400))  # 2,000 bytes, 300 to a chunk
    pieces = [body[at:at + 300].encode() for at in range(0, len(body), 300)]
    async with RawReceiver(pieces, chunked=True) as receiver:
        await owe(store, clock, f"{receiver.url}/buyer")
        await dispatcher(store, clock, client).drain()
    postback, [attempt] = await shown(store)
    assert postback.status == "delivered"
    assert attempt.response == body[:1024]


async def test_an_answer_that_never_ends_is_delivered_once_its_first_1024_bytes_are_in(
    store: Store, client: httpx.AsyncClient
) -> None:
    # The status said 200 and only the first 1 KiB is kept: the rest is never waited for.
    clock = FakeClock()
    async with RawReceiver([b"a" * 2000], stall=True) as receiver:
        await owe(store, clock, f"{receiver.url}/buyer")
        await dispatcher(store, clock, client, timeout_seconds=0.5).drain()
    postback, [attempt] = await shown(store)
    assert (postback.status, attempt.error) == ("delivered", None)
    assert attempt.response == "a" * 1024


async def test_a_short_answer_in_several_chunks_is_kept_whole(
    store: Store, client: httpx.AsyncClient
) -> None:
    clock = FakeClock()
    async with RawReceiver([b"thanks, ", b"got ", b"it"], chunked=True) as receiver:
        await owe(store, clock, f"{receiver.url}/buyer")
        await dispatcher(store, clock, client).drain()
    _, [attempt] = await shown(store)
    assert attempt.response == "thanks, got it"


async def test_an_answer_that_is_not_utf8_is_kept_with_replacement_characters(
    store: Store, client: httpx.AsyncClient
) -> None:
    clock = FakeClock()
    # Two bytes that are never UTF-8, then a two-byte "é" cut in half by the 1 KiB limit.
    answer = b"ok \xff\xfe " + b"a" * 1017 + "é".encode()
    async with RawReceiver([answer]) as receiver:
        await owe(store, clock, f"{receiver.url}/buyer")
        await dispatcher(store, clock, client).drain()
    postback, [attempt] = await shown(store)
    assert postback.status == "delivered"
    assert attempt.response == "ok \ufffd\ufffd " + "a" * 1017 + "\ufffd"


async def test_an_attempt_is_recorded_even_when_the_write_queue_is_full(
    tmp_path: Path, client: httpx.AsyncClient
) -> None:
    clock = FakeClock()
    # One queued write fills this store; it waits a minute before committing unless asked.
    store = Store(tmp_path / "full.db", max_pending=1, gather_seconds=60)
    await store.open()
    try:
        async with RawReceiver([b"ok"]) as receiver:
            await owe(store, clock, f"{receiver.url}/buyer")
            store.submit(lead("queued"))
            assert not store.has_room()
            draining = asyncio.create_task(dispatcher(store, clock, client).drain())
            await until(lambda: draining.done() or store.writer.pending == 2,
                        "the attempt queued behind the full queue, or the drain ended")
            await store.flush()
            await draining
        postback, [attempt] = await shown(store)
        assert (postback.status, postback.attempts, attempt.status_code) == (
            "delivered", 1, 200)
    finally:
        await store.close()


async def test_an_attempt_ending_after_the_store_closed_is_logged_as_not_recorded(
    store: Store, client: httpx.AsyncClient
) -> None:
    clock = FakeClock()
    async with RawReceiver([b"ok"], hold=True) as receiver:
        await owe(store, clock, f"{receiver.url}/buyer")
        sending = dispatcher(store, clock, client)
        draining = asyncio.create_task(sending.drain())
        await until(lambda: receiver.waiting == 1, "the request reached the receiver")
        with structlog.testing.capture_logs() as logs:
            closing = asyncio.create_task(sending.close())
            await store.close()
            receiver.release()
            await closing
            await draining
    [warning] = [entry for entry in logs if entry["event"] == "postback_attempt_not_recorded"]
    assert (warning["postback_id"], warning["log_level"]) == (1, "warning")
    [line] = [entry for entry in logs if entry["event"] == "postback_attempt"]
    assert (line["postback_id"], line["status"], line["outcome"]) == (1, 200, "delivered")


async def test_a_host_owed_more_than_per_host_gets_exactly_per_host_at_a_time(
    store: Store, client: httpx.AsyncClient
) -> None:
    clock = FakeClock()
    async with RawReceiver([b"ok"], hold=True) as receiver:
        await owe(store, clock, f"{receiver.url}/buyer", count=7)
        sending = dispatcher(store, clock, client, per_host=2, concurrency=10)
        draining = asyncio.create_task(sending.drain())
        batches: list[int] = []
        seen = 0
        while seen < 7:
            # A batch has arrived once every delivery started is waiting at the receiver;
            # the next one starts only when this one is answered.
            await until(lambda seen=seen: receiver.received > seen
                        and sending.in_flight == receiver.waiting,
                        "the started deliveries reached the receiver")
            batches.append(receiver.received - seen)
            seen = receiver.received
            receiver.release()
        await draining
    assert batches == [2, 2, 2, 1]
    assert receiver.peak == 2
    for postback_id in range(1, 8):
        postback, _ = await shown(store, postback_id)
        assert (postback.status, postback.attempts) == ("delivered", 1)


async def test_concurrency_1_sends_one_postback_at_a_time_and_every_one(
    store: Store, client: httpx.AsyncClient
) -> None:
    clock = FakeClock()
    async with RawReceiver([b"ok"], hold=True) as receiver:
        await owe(store, clock, f"{receiver.url}/buyer", count=3)
        sending = dispatcher(store, clock, client, per_host=3, concurrency=1)
        draining = asyncio.create_task(sending.drain())
        for sent in (1, 2, 3):
            await until(lambda sent=sent: receiver.received == sent
                        and receiver.waiting == 1, "the next delivery is out")
            receiver.release()
        await draining
    assert receiver.peak == 1
    for postback_id in (1, 2, 3):
        postback, _ = await shown(store, postback_id)
        assert postback.status == "delivered"


async def test_a_host_freed_by_one_of_its_deliveries_takes_one_more_not_two(
    store: Store, client: httpx.AsyncClient
) -> None:
    clock = FakeClock()
    # Two go out at once; one is answered, the other held: one more may go, not two.
    async with RawReceiver([b"ok"], hold=True, answer_first=1) as receiver:
        await owe(store, clock, f"{receiver.url}/buyer", count=4)
        sending = dispatcher(store, clock, client, per_host=2, concurrency=10)
        sending.start()
        try:
            await until(lambda: receiver.received >= 3 and sending.in_flight == receiver.waiting,
                        "the delivery after the answered one reached the receiver")
            assert (receiver.received, receiver.waiting) == (3, 2)
            for _ in range(1000):
                if receiver.received == 4 and sending.in_flight == 0:
                    break
                receiver.release()
                await asyncio.sleep(0.01)
        finally:
            await sending.close()
    for postback_id in range(1, 5):
        postback, _ = await shown(store, postback_id)
        assert (postback.status, postback.attempts) == ("delivered", 1)


async def test_the_timeout_is_the_settings_not_the_one_the_client_was_made_with(
    store: Store,
) -> None:
    # The pool outlives a reload that lengthens timeout_seconds: each request takes the
    # timeout from the settings in force, not the (shorter) one the client started with.
    clock = FakeClock()
    async with (RawReceiver([b"ok"], pause=0.5) as receiver,
                httpx.AsyncClient(timeout=0.1) as started_short):
        await owe(store, clock, f"{receiver.url}/buyer")
        await dispatcher(store, clock, started_short, timeout_seconds=5).drain()
    postback, [attempt] = await shown(store)
    assert (postback.status, attempt.error, attempt.response) == ("delivered", None, "ok")


async def test_the_next_wake_up_is_the_earliest_postback_it_could_send(store: Store) -> None:
    """What the dispatcher sleeps until: the earliest pending postback neither in flight
    nor to a host that is full; delivered and failed ones are not waited for."""
    def row(host: str, due: str, status: str = "pending") -> PostbackRow:
        return PostbackRow(transaction_id="tx", cid="cmp", pid="src", event_id="sold",
                           conversion_id=None, kind="buyer", method="GET",
                           url=f"https://{host}/pb", host=host, body=None, secret=None,
                           status=status, max_attempts=5, next_attempt_at=due,  # type: ignore[arg-type]
                           created_at=due, updated_at=due)

    assert await store.next_postback_due_at([], []) is None
    store.submit(WriteOp(postbacks=(
        row("a.example", "2026-11-28T12:00:05Z"),              # id 1
        row("b.example", "2026-11-28T12:00:09Z"),              # id 2
        row("a.example", "2026-11-28T12:00:07Z"),              # id 3
        row("c.example", "2026-11-28T12:00:01Z", "delivered"),  # id 4
        row("c.example", "2026-11-28T12:00:02Z", "failed"),     # id 5
    )))
    await store.flush()
    assert await store.next_postback_due_at([], []) == "2026-11-28T12:00:05Z"
    assert await store.next_postback_due_at([1], []) == "2026-11-28T12:00:07Z"
    assert await store.next_postback_due_at([], ["a.example"]) == "2026-11-28T12:00:09Z"
    assert await store.next_postback_due_at([2], ["a.example"]) is None


async def test_the_dispatcher_sleeps_until_the_next_postback_falls_due(
    store: Store, client: httpx.AsyncClient
) -> None:
    """No shorter, and no longer: a retry due in 7 s is not left for a poll a minute on."""
    clock = FakeClock()
    sending = Dispatcher(store, clock, DeliveryConfig(), client=client, poll_seconds=60)
    assert await sending._seconds_to_next_due() == 60  # nothing owed: the next poll
    due = utc_text(clock.now() + timedelta(seconds=7))
    store.submit(WriteOp(postbacks=(PostbackRow(
        transaction_id="tx", cid="cmp", pid="src", event_id="sold", conversion_id=None,
        kind="buyer", method="GET", url="https://a.example/pb", host="a.example", body=None,
        secret=None, status="pending", max_attempts=5, next_attempt_at=due, created_at=due,
        updated_at=due),)))
    await store.flush()
    assert await sending._seconds_to_next_due() == 7
    clock.advance(10)
    assert await sending._seconds_to_next_due() == 0  # overdue: at once


async def test_a_postback_to_a_full_host_is_not_waited_for(
    store: Store, client: httpx.AsyncClient
) -> None:
    """Its host at ``per_host``, an overdue postback cannot go: the dispatcher sleeps until
    a delivery ends (which wakes it) or the next poll, rather than waking at once, for
    ever, to find nothing it may send."""
    clock = FakeClock()
    async with RawReceiver([b"ok"], hold=True) as receiver:
        await owe(store, clock, f"{receiver.url}/buyer", count=2)
        sending = Dispatcher(store, clock, DeliveryConfig(per_host=1), client=client,
                             poll_seconds=60, shutdown_grace_seconds=0)
        await sending._start_due()
        await until(lambda: receiver.waiting == 1, "the first delivery is out")
        assert await sending._seconds_to_next_due() == 60
        await sending.close()


async def test_a_delivery_still_out_when_the_grace_ends_is_cancelled_and_records_nothing(
    store: Store, client: httpx.AsyncClient
) -> None:
    """Closing gives deliveries a grace, then cancels them: unrecorded, a cancelled one is
    sent again after the restart; a receiver that never answers cannot hold the stop."""
    clock = FakeClock()
    async with RawReceiver([b"ok"], hold=True) as receiver:
        await owe(store, clock, f"{receiver.url}/buyer")
        sending = Dispatcher(store, clock, DeliveryConfig(timeout_seconds=60), client=client,
                             shutdown_grace_seconds=0.05)
        sending.start()
        await until(lambda: receiver.waiting == 1, "the delivery is out")
        await asyncio.wait_for(sending.close(), 10)  # well inside the 60 s attempt
        assert sending.in_flight == 0  # the cancelled delivery has ended, not just been told
        receiver.release()
        await asyncio.sleep(0.2)  # a delivery left running would now be answered
    postback, attempts = await shown(store)
    assert (postback.status, postback.attempts, attempts) == ("pending", 0, [])


class StoreFailingOnce(Store):
    """A store whose first read of what is due fails."""

    failed = False

    async def due_postbacks(self, now: str, *, limit: int, skip_ids: list[int],
                            hosts: HostLoad) -> list[DuePostback]:
        if not self.failed:
            self.failed = True
            raise OSError("disk I/O error")
        return await super().due_postbacks(now, limit=limit, skip_ids=skip_ids,
                                           hosts=hosts)


async def test_a_failing_look_for_due_postbacks_is_logged_and_the_next_one_delivers(
    tmp_path: Path, client: httpx.AsyncClient
) -> None:
    clock = FakeClock()
    store = StoreFailingOnce(tmp_path / "failing.db")
    await store.open()
    try:
        async with RawReceiver([b"ok"]) as receiver:
            await owe(store, clock, f"{receiver.url}/buyer")
            sending = Dispatcher(store, clock, DeliveryConfig(), client=client,
                                 poll_seconds=0.05)
            with structlog.testing.capture_logs() as logs:
                sending.start()
                await until(lambda: receiver.received == 1, "the postback is sent")
                await sending.close()
        [failed] = [line for line in logs if line["event"] == "postback_dispatch_failed"]
        assert failed["log_level"] == "error" and failed["exc_info"] is True
        postback, _ = await shown(store)
        assert postback.status == "delivered"
    finally:
        await store.close()


class ClaimingStore(Store):
    """A store that, like PostgreSQL's, hands a due postback to one reader only, and holds
    its first reader's answer until ``answer.set()``."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.claimed: set[int] = set()
        self.reading = False
        self.answer = asyncio.Event()

    async def due_postbacks(self, now: str, *, limit: int, skip_ids: list[int],
                            hosts: HostLoad) -> list[DuePostback]:
        due = [postback for postback in await super().due_postbacks(
            now, limit=limit, skip_ids=skip_ids, hosts=hosts)
            if postback.id not in self.claimed]
        self.claimed |= {postback.id for postback in due}
        if not self.reading:
            self.reading = True
            await self.answer.wait()
        return due


async def test_drain_waits_for_what_a_pass_claimed_while_it_looked(
    tmp_path: Path, client: httpx.AsyncClient
) -> None:
    """The background pass has claimed a postback and not yet started it when a drain
    looks: the drain finds nothing left to claim, and still waits for that delivery."""
    clock = FakeClock()
    store = ClaimingStore(tmp_path / "claimed.db")
    await store.open()
    try:
        async with RawReceiver([b"ok"], hold=True) as receiver:
            await owe(store, clock, f"{receiver.url}/buyer")
            sending = dispatcher(store, clock, client)
            sending.start()
            await until(lambda: store.reading, "the background pass reads")
            draining = asyncio.create_task(sending.drain())
            await asyncio.sleep(0.05)
            store.answer.set()
            await until(lambda: receiver.waiting == 1, "the delivery reaches the receiver")
            assert not draining.done()
            receiver.release()
            await draining
            postback = await store.postback(1)
            assert postback is not None and postback.status == "delivered"
            await sending.close()
    finally:
        await store.close()


class ReadRecordingStore(Store):
    """A store that notes what each pass asked for: how many, leaving out which ids, with
    how many deliveries in flight to which hosts."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.reads: list[tuple[int, list[int], dict[str, int]]] = []

    async def due_postbacks(self, now: str, *, limit: int, skip_ids: list[int],
                            hosts: HostLoad) -> list[DuePostback]:
        self.reads.append((limit, sorted(skip_ids), hosts.in_flight))
        return await super().due_postbacks(now, limit=limit, skip_ids=skip_ids,
                                           hosts=hosts)


async def test_a_pass_takes_only_what_it_can_start_now(
    tmp_path: Path, client: httpx.AsyncClient
) -> None:
    """On PostgreSQL every postback a pass reads is leased to this process, so one read
    and not started would wait out its lease. A pass asks for as many as it has free
    slots, leaving out those in flight and telling the store what each host has in
    flight; the store gives no host more than ``per_host`` allows; a pass with every slot
    taken asks nothing."""
    clock = FakeClock()
    store = ReadRecordingStore(tmp_path / "reads.db")
    await store.open()
    try:
        async with (RawReceiver([b"ok"], hold=True) as a, RawReceiver([b"ok"], hold=True) as b,
                    RawReceiver([b"ok"], hold=True) as c):
            await owe(store, clock, f"{a.url}/buyer", count=2)  # ids 1 and 2, due first
            clock.advance(1)
            await owe(store, clock, f"{b.url}/buyer")  # id 3
            clock.advance(1)
            await owe(store, clock, f"{c.url}/buyer", count=2)  # ids 4 and 5
            sending = Dispatcher(store, clock, DeliveryConfig(concurrency=3, per_host=1),
                                 client=client, shutdown_grace_seconds=0)
            await sending._start_due()  # 1, 3 and 4: a has room for one, 2 waits
            await until(lambda: a.waiting + b.waiting + c.waiting == sending.in_flight >= 1,
                        "the first pass's deliveries are out")
            assert (a.waiting, b.waiting, c.waiting) == (1, 1, 1)
            await sending._start_due()  # every slot taken
            b.release()
            await until(lambda: sending.in_flight == 2, "the delivery to b is recorded")
            await sending._start_due()  # one slot free, but a and c are full
            assert store.reads == [(3, [], {}), (1, [1, 4], {a.host: 1, c.host: 1})]
            assert sending.in_flight == 2
            await sending.close()
    finally:
        await store.close()


async def test_a_read_gives_no_host_more_than_it_has_room_for(store: Store) -> None:
    clock = FakeClock()
    for host, count in (("a.example", 3), ("b.example", 2), ("c.example", 1)):
        await owe(store, clock, f"http://{host}/pb", count=count)
        clock.advance(1)
    now = utc_text(clock.now())

    async def read(limit: int, **in_flight: int) -> list[int]:
        hosts = HostLoad(per_host=2, in_flight={f"{host}.example": load
                                                for host, load in in_flight.items()})
        due = await store.due_postbacks(now, limit=limit, skip_ids=[], hosts=hosts)
        return [postback.id for postback in due]

    assert await read(10) == [1, 2, 4, 5, 6]  # a: 2 of 3, b: both, c: its one
    assert await read(10, a=1, b=2) == [1, 6]
    assert await read(10, a=2, b=1, c=5) == [4]
    assert await read(3) == [1, 2, 4]  # oldest first, up to the limit


async def test_a_full_hosts_backlog_does_not_hide_another_hosts_postback(store: Store) -> None:
    """A read looks through a bounded number of the oldest due postbacks: those of a host
    with no room left are not among them, however many it owes."""
    clock = FakeClock()
    await owe(store, clock, "http://down.example/pb", count=DUE_SCAN + 10)
    clock.advance(1)
    await owe(store, clock, "http://up.example/pb")
    hosts = HostLoad(per_host=2, in_flight={"down.example": 2})
    [due] = await store.due_postbacks(utc_text(clock.now()), limit=10, skip_ids=[],
                                      hosts=hosts)
    assert (due.id, due.host) == (DUE_SCAN + 11, "up.example")


async def test_a_delivery_logs_none_of_the_fields_of_the_request_that_started_its_pass(
    store: Store, client: httpx.AsyncClient
) -> None:
    """Whoever calls ``drain()``, the deliveries it starts are not its own: a request that
    did would otherwise have its request_id and route on every postback line."""
    clock = FakeClock()
    async with RawReceiver([b"ok"]) as receiver:
        await owe(store, clock, f"{receiver.url}/buyer")
        start_request(request_id="req-1", route="/api/admin/whatever")
        with structlog.testing.capture_logs(processors=[merge_request_fields]) as logs:
            await dispatcher(store, clock, client).drain()
    [line] = [line for line in logs if line["event"] == "postback_attempt"]
    assert line["postback_id"] == 1
    assert "request_id" not in line and "route" not in line


async def test_a_store_out_of_reach_is_one_warning_not_a_traceback_each_pass(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    real = store.due_postbacks
    down = {"passes": 0}

    async def unreachable(*args: Any, **kwargs: Any) -> Any:
        if down["passes"] < 5:
            down["passes"] += 1
            raise StoreUnavailable
        return await real(*args, **kwargs)

    monkeypatch.setattr(store, "due_postbacks", unreachable)
    sending = Dispatcher(store, FakeClock(), DeliveryConfig(), poll_seconds=0.01)
    with structlog.testing.capture_logs() as logs:
        sending.start()
        try:
            await until(lambda: any(line["event"] == "postback_dispatch_resumed"
                                    for line in logs), "the dispatcher resuming")
        finally:
            await sending.close()
    events = [(line["event"], line["log_level"]) for line in logs
              if line["event"].startswith("postback_dispatch")]
    assert events == [("postback_dispatch_waiting_for_store", "warning"),
                      ("postback_dispatch_resumed", "info")]
    assert down["passes"] == 5
