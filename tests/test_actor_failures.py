"""Failures inside a transaction's actor: whatever the store does, an event is stored once.

A write the store refuses (the op itself is wrong) leaves memory ahead of the database, so
the actor must reload; a write refused for lack of room (503 "Server busy") must leave no
trace at all, on either store. In both durability modes a retry of the same event ends with
exactly one stored row, never none (the conversion lost) and never two.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import structlog

from storage.errors import StoreBusy, StoreClosed
from storage.records import WriteOp
from tests.conftest import CID, Harness, error, make_config, running, running_on

MODES = ["commit", "write-behind"]
LOCKED = error(403, "Concurrent event in progress")
DUPLICATE = error(400, "Duplicate event for this transaction_id")


@contextmanager
def refuse_next_event(api: Harness, event_id: str) -> Iterator[list[str]]:
    """Every commit holding ``event_id`` is refused, as SQLite refuses a bad row.

    The writer then retries each op of the batch alone, so only that event is refused.
    """
    writer = api.services.store.writer
    real_apply = writer._apply
    refused: list[str] = []

    async def refusing(ops: list[WriteOp]) -> Any:
        if any(op.event is not None and op.event.event_id == event_id
                               for op in ops):
            refused.append(event_id)
            raise sqlite3.IntegrityError("refused for the test")
        return await real_apply(ops)

    writer._apply = refusing  # type: ignore[method-assign]
    try:
        # The refusal is logged with its traceback; captured, so no console renders it.
        with structlog.testing.capture_logs():
            yield refused
    finally:
        writer._apply = real_apply  # type: ignore[method-assign]


async def stored(api: Harness, event_id: str) -> int:
    rows = await api.query("SELECT count(*) FROM events WHERE event_id = ?", event_id)
    return int(rows[0][0])


@pytest.mark.parametrize("durability", MODES)
async def test_a_refused_write_is_not_remembered_as_fired(db_path: Path, durability: str) -> None:
    async with running(make_config(db_path, durability=durability)) as api:
        transaction_id = await api.click()
        await api.services.store.flush()
        with refuse_next_event(api, "sale_completed") as refused:
            first = await api.fire(transaction_id, "sale_completed", revenue="10")
            await api.services.store.flush()
        assert refused and set(refused) == {"sale_completed"}
        if durability == "commit":
            # The answer waited for the commit, which was refused: nothing the client
            # sent was wrong, so it is the documented answer for the unexpected.
            assert first.json() == error(500, "Internal server error")
        else:
            assert first.status_code == 200
        assert await stored(api, "sale_completed") == 0

        # The window the refused request opened still holds, through the reload.
        again = await api.fire(transaction_id, "sale_completed", revenue="10")
        assert again.json() == LOCKED

        # After it, the same event fires: the database, not memory, says it never did.
        api.clock.advance(2.5)
        retry = await api.fire(transaction_id, "sale_completed", revenue="10")
        assert retry.status_code == 200, retry.text
        assert retry.json()["data"]["conversion_id"].startswith("conv_")
        assert await stored(api, "sale_completed") == 1

        api.clock.advance(2.5)
        assert (await api.fire(transaction_id, "sale_completed", revenue="10")).json() \
            == DUPLICATE
        assert await stored(api, "sale_completed") == 1


@pytest.mark.parametrize("durability", MODES)
async def test_a_refused_write_keeps_the_windows_of_other_events(
    db_path: Path, durability: str
) -> None:
    async with running(make_config(db_path, durability=durability)) as api:
        transaction_id = await api.click()
        assert (await api.fire(transaction_id, "quote_viewed")).status_code == 200
        api.clock.advance(1)
        with refuse_next_event(api, "form_step"):
            await api.fire(transaction_id, "form_step")
            await api.services.store.flush()
        # quote_viewed's window opened a second ago and survives form_step's reload.
        assert (await api.fire(transaction_id, "quote_viewed")).json() == LOCKED
        api.clock.advance(1.5)
        assert (await api.fire(transaction_id, "quote_viewed")).json() == DUPLICATE
        assert await stored(api, "quote_viewed") == 1
        assert await stored(api, "form_step") == 0


@contextmanager
def refused_once(api: Harness, refusal: type[Exception]) -> Iterator[None]:
    """The next write submitted is refused before it is queued, as a full queue (503
    "Server busy") or a closing store refuses it."""
    store = api.services.store
    real_submit = store.submit
    calls = 0

    def refusing_once(op: WriteOp, *, bounded: bool = True) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise refusal
        return real_submit(op, bounded=bounded)

    store.submit = refusing_once  # type: ignore[method-assign]
    try:
        yield
    finally:
        store.submit = real_submit  # type: ignore[method-assign]


# Each store in each mode it serves: PostgreSQL refuses write-behind (it answers once the
# database decided).
STORE_MODES = [("sqlite", "commit"), ("sqlite", "write-behind"), ("postgres", "commit")]


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> pytest.FixtureRequest:
    """Which store the test runs on (given with its mode), for ``running_on``."""
    return request


@pytest.mark.parametrize("refusal", [StoreBusy, StoreClosed])
@pytest.mark.parametrize(("backend", "durability"), STORE_MODES, indirect=["backend"])
async def test_a_busy_store_leaves_no_trace_and_the_retry_fires_once(
    backend: pytest.FixtureRequest, db_path: Path, durability: str, refusal: type[Exception]
) -> None:
    async with running_on(backend, make_config(db_path, durability=durability)) as api:
        transaction_id = await api.click()
        with refused_once(api, refusal):
            busy = await api.fire(transaction_id, "sale_completed", revenue="10")
            assert busy.status_code == 503
            assert busy.json() == error(503, "Server busy")
            assert busy.headers["Retry-After"] == "1"
            # No window is left open (PostgreSQL gives back the one it claimed) and
            # nothing remembered: the retry is safe at once.
            retry = await api.fire(transaction_id, "sale_completed", revenue="10")
            assert retry.status_code == 200, retry.text
        assert await stored(api, "sale_completed") == 1
        assert (await api.fire(transaction_id, "sale_completed", revenue="10")).json() == LOCKED


@pytest.mark.parametrize(("backend", "durability"), STORE_MODES, indirect=["backend"])
async def test_a_keyed_retry_of_a_busy_refusal_fires_instead_of_being_locked(
    backend: pytest.FixtureRequest, db_path: Path, durability: str
) -> None:
    async with running_on(backend, make_config(db_path, durability=durability)) as api:
        transaction_id = await api.click()
        body = {"cid": CID, "event_id": "sale_completed", "transaction_id": transaction_id,
                "revenue": "10"}
        headers = {"Idempotency-Key": "sale-1"}
        with refused_once(api, StoreBusy):
            busy = await api.client.post("/api/event/trigger", json=body, headers=headers)
            assert busy.json() == error(503, "Server busy")
            # PostgreSQL gives the key back through the write queue; until that commits
            # a retry is answered 409 "in progress", which the client may retry.
            await api.services.store.flush()
            # A 403 here would be stored as the key's answer, and the sale never counted.
            retry = await api.client.post("/api/event/trigger", json=body, headers=headers)
            assert retry.status_code == 200, retry.text
        replay = await api.client.post("/api/event/trigger", json=body, headers=headers)
        assert replay.json() == retry.json()
        assert await stored(api, "sale_completed") == 1
