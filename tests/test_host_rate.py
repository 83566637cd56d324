"""``[delivery] per_host_per_second``: sends to one host are spaced one interval apart,
across every process on one database; a postback whose host has no slot soon is due
again when it has, with no attempt used.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import msgspec
import pytest

from actors.clock import utc_text
from app.config.schema import Config, with_server_overrides
from tests.conftest import FakeClock, Harness, postgres_store, running, running_on
from tests.receiver import Receiver
from tests.test_postbacks import convert, postback_config, postbacks


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running_receiver:
        yield running_receiver


def paced(receiver: Receiver, db_path: Path) -> Config:
    base = postback_config(receiver, db_path)  # a buyer and a source postback, one host
    return msgspec.structs.replace(base, delivery=msgspec.structs.replace(
        base.delivery, per_host_per_second=2.0))


def recording(api: Harness) -> list[float]:
    """The waits for send slots, recorded instead of slept."""
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    api.services.dispatcher._sleep = sleep
    return waits


async def test_sends_to_a_host_are_spaced_and_the_rest_wait_without_using_an_attempt(
    receiver: Receiver, db_path: Path, backend: pytest.FixtureRequest
) -> None:
    async with running_on(backend, paced(receiver, db_path)) as api:
        waits = recording(api)
        for _ in range(5):
            await convert(api)  # 10 postbacks to the receiver's host
        start = api.clock.now()
        await api.services.dispatcher.drain()
        # Slots at +0, +0.5 and +1.0 s (the horizon); the next one, +1.5 s, is too far.
        assert len(receiver.requests) == 3
        assert sorted(waits) == [0.5, 1.0]
        # Those read past the horizon are due at its next slot, no attempt used; the
        # others were not read (the host counts as full until then).
        waiting = [p for p in await postbacks(api) if p["status"] == "pending"]
        assert len(waiting) == 7
        later = utc_text(start + timedelta(seconds=1.5))
        assert {p["attempts"] for p in waiting} == {0}
        assert {p["next_attempt_at"] for p in waiting} == {utc_text(start), later}
        for _ in range(10):
            api.clock.advance(1.5)
            await api.services.dispatcher.drain()
        assert len(receiver.requests) == 10
        assert {(p["status"], p["attempts"]) for p in await postbacks(api)} == {
            ("delivered", 1)}


async def test_the_rate_holds_across_processes_on_one_database(
    receiver: Receiver, db_path: Path, pg_url: str
) -> None:
    shared = with_server_overrides(paced(receiver, db_path), "test", db=pg_url)
    clock = FakeClock()
    async with running(shared, clock, postgres_store(pg_url, clock)) as one, \
            running(shared, clock, postgres_store(pg_url, clock)) as two:
        waits = recording(one) + recording(two)
        for node in (one, two, one, two):
            await convert(node)
        await asyncio.gather(one.services.dispatcher.drain(), two.services.dispatcher.drain())
        # Three slots within the horizon, whichever process took them.
        assert len(receiver.requests) == 3
        statuses = [p["status"] for p in await postbacks(one)]
        assert (statuses.count("delivered"), statuses.count("pending")) == (3, 5)
        del waits
