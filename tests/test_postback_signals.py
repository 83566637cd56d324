"""What a receiver's answer tells the dispatcher: wait as asked, never follow, spread retries.

A 429 or 503 with a Retry-After (seconds or an HTTP-date) is not tried again before the
moment asked for, up to ``max_retry_seconds``; a 3xx fails the postback with its status
on record, the redirect never followed; retries are spread ±20 % around the backoff,
never below 0 nor past the cap. Every rule holds on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
import msgspec
import pytest

from actors.clock import utc_text
from app.config.schema import DeliveryConfig
from app.postbacks.dispatcher import Dispatcher
from app.postbacks.retry import next_delay, retry_delay
from storage.backend import EventStore
from storage.records import LeadRow, PostbackRow, WriteOp
from storage.sqlite.store import Store
from tests.conftest import BACKENDS, FakeClock, Harness, postgres_store, running_on
from tests.receiver import Answer, Receiver
from tests.test_postbacks import convert, only_buyer, postback_config

# The backoff of the first retry with postback_config's delivery settings: 1 s ±20 %.
FIRST_RETRY_AT_MOST = 1.2


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running_receiver:
        yield running_receiver


@pytest.fixture(params=BACKENDS)
async def api(request: pytest.FixtureRequest, receiver: Receiver,
              db_path: Path) -> AsyncIterator[Harness]:
    async with running_on(request, postback_config(receiver, db_path)) as harness:
        yield harness


def asking(status: int, retry_after: str) -> Answer:
    return Answer(status, headers={"Retry-After": retry_after})


async def wait_after_one_attempt(api: Harness, receiver: Receiver, answer: Answer) -> float:
    """Seconds from now to the buyer postback's next attempt, once it was answered so."""
    due = await due_after_one_attempt(api, receiver, answer)
    return (due - api.clock.now()).total_seconds()


async def due_after_one_attempt(api: Harness, receiver: Receiver, answer: Answer) -> datetime:
    receiver.script("/buyer", answer)
    await convert(api)
    await api.services.dispatcher.drain()
    buyer = await only_buyer(api)
    assert buyer["status"] == "pending", buyer
    return datetime.fromisoformat(buyer["next_attempt_at"])


# Retry-After


@pytest.mark.parametrize("status", [429, 503])
async def test_a_slow_down_answer_is_not_retried_before_its_retry_after_seconds(
    api: Harness, receiver: Receiver, status: int
) -> None:
    assert await wait_after_one_attempt(api, receiver, asking(status, "45")) == 45


@pytest.mark.parametrize("status", [429, 503])
async def test_a_retry_after_http_date_is_a_moment_to_wait_for(
    api: Harness, receiver: Receiver, status: int
) -> None:
    moment = api.clock.now() + timedelta(seconds=37)
    header = format_datetime(moment, usegmt=True)
    assert await due_after_one_attempt(api, receiver, asking(status, header)) == moment


async def test_the_postback_is_sent_again_once_the_asked_wait_is_over(
    api: Harness, receiver: Receiver
) -> None:
    wait = await wait_after_one_attempt(api, receiver, asking(503, "30"))
    api.clock.advance(wait - 1)
    await api.services.dispatcher.drain()
    assert len(receiver.of("/buyer")) == 1  # a second early: not yet
    api.clock.advance(1)
    await api.services.dispatcher.drain()
    assert (await only_buyer(api))["status"] == "delivered"
    assert len(receiver.of("/buyer")) == 2


@pytest.mark.parametrize("header", ["99999", "Fri, 01 Jan 2100 00:00:00 GMT"])
async def test_retry_after_waits_no_longer_than_max_retry_seconds(
    api: Harness, receiver: Receiver, header: str
) -> None:
    # postback_config sets max_retry_seconds = 60.
    assert await wait_after_one_attempt(api, receiver, asking(429, header)) == 60


async def test_retry_after_is_capped_by_the_max_retry_seconds_of_a_reload(
    api: Harness, receiver: Receiver
) -> None:
    delivery = msgspec.structs.replace(api.services.config.delivery, max_retry_seconds=20)
    api.services.dispatcher.use_settings(delivery)
    assert await wait_after_one_attempt(api, receiver, asking(429, "45")) == 20


@pytest.mark.parametrize("answer", [
    Answer(429), Answer(503), Answer(429, headers={"Retry-After": "soon"}),
    Answer(503, headers={"Retry-After": "Mon, 01 Jan 2001 00:00:00 GMT"}),  # already past
    Answer(500, headers={"Retry-After": "45"}),  # only a 429 or a 503 asks to slow down
    Answer(408, headers={"Retry-After": "45"}),
])
async def test_without_a_usable_slow_down_retry_after_the_usual_backoff_applies(
    api: Harness, receiver: Receiver, answer: Answer
) -> None:
    assert await wait_after_one_attempt(api, receiver, answer) <= FIRST_RETRY_AT_MOST


# Redirects


@pytest.mark.parametrize("status", [300, 301, 302, 303, 307, 308])
async def test_a_redirect_fails_the_postback_with_its_status_and_is_never_followed(
    api: Harness, receiver: Receiver, status: int
) -> None:
    receiver.script("/buyer", Answer(status, headers={"Location": f"{receiver.url}/moved"}))
    await convert(api)
    await api.services.dispatcher.drain()
    api.clock.advance(3600)
    await api.services.dispatcher.drain()
    buyer = await only_buyer(api)
    assert (buyer["status"], buyer["attempts"], buyer["last_status_code"]) == (
        "failed", 1, status)
    assert [a["status_code"] for a in buyer["attempt_log"]] == [status]
    assert receiver.of("/moved") == []
    [sent] = receiver.of("/buyer")
    assert sent.headers["user-agent"] == "event-postback"


# Jitter


def test_the_backoff_is_spread_twenty_percent_either_way() -> None:
    assert next_delay(2, first=10, cap=3600, jitter=0.0) == 32
    assert next_delay(2, first=10, cap=3600, jitter=0.5) == 40
    assert next_delay(2, first=10, cap=3600, jitter=1.0) == 48


@pytest.mark.parametrize("jitter", [-5.0, -0.1, 0.0, 0.3, 1.0, 1.5, 40.0])
def test_the_spread_wait_stays_between_zero_and_the_cap(jitter: float) -> None:
    for attempt in range(1, 12):
        wait = next_delay(attempt, first=2, cap=100, jitter=jitter)
        assert 0 <= wait <= 100
        nominal = min(100, 2 * 4 ** (attempt - 1))
        assert 0.8 * nominal <= wait <= 1.2 * nominal


def test_a_retry_after_never_shortens_the_backoff() -> None:
    now = datetime.fromisoformat("2026-11-28T12:00:00Z")
    assert retry_delay(3, status_code=429, retry_after="2", now=now, first=10, cap=3600,
                       jitter=0.5) == 160


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path,
                clock: FakeClock) -> AsyncIterator[EventStore]:
    opened: EventStore
    if request.param == "sqlite":
        opened = Store(tmp_path / "postbacks.db")
    else:
        opened = postgres_store(request.getfixturevalue("pg_url"), clock)
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.mark.parametrize(("jitter", "waits"), [
    (0.0, [8.0, 32.0, 48.0]),   # 80 % of 10, 40, 60 (the cap)
    (1.0, [12.0, 48.0, 60.0]),  # 120 %, but never past the cap
])
async def test_retries_wait_the_backoff_spread_by_the_dispatchers_random_source(
    store: EventStore, clock: FakeClock, jitter: float, waits: list[float]
) -> None:
    now = utc_text(clock.now())
    await store.commit(WriteOp(lead=LeadRow(
        transaction_id="t1", cid="c", pid="p", fields="{}", cost=None, ip=None,
        user_agent=None, created_at=now)))
    await store.commit(WriteOp(postbacks=(PostbackRow(
        transaction_id="t1", cid="c", pid="p", event_id="sale", conversion_id=None,
        kind="buyer", method="GET", url="https://buyer.example/pb", host="buyer.example",
        body=None, secret=None, status="pending", max_attempts=5, next_attempt_at=now,
        created_at=now, updated_at=now),)))
    client = httpx.AsyncClient(transport=httpx.MockTransport(lambda _: httpx.Response(500)))
    settings = DeliveryConfig(first_retry_seconds=10, max_retry_seconds=60)
    sending = Dispatcher(store, clock, settings, client=client, jitter=lambda: jitter)
    seen = []
    try:
        for _ in waits:
            await sending.drain()
            [row] = await store.postbacks(status=None, cid=None, limit=10)
            view = await store.postback(row.id)
            assert view is not None and view.next_attempt_at is not None
            wait = (datetime.fromisoformat(view.next_attempt_at) - clock.now()).total_seconds()
            seen.append(wait)
            clock.advance(wait)
    finally:
        await sending.close()
        await client.aclose()
    assert seen == waits
