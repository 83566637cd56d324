"""Two processes at one lead, one conversion or one Idempotency-Key at once, on PostgreSQL.

Two apps on one database stand for two nodes. Each test makes one node read before the
other's write commits and write after it, the interleaving a real race produces now and
then: only the database can then keep the second from undoing or repeating the first.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest

from actors.clock import utc_text
from app.config.schema import parse_config, with_server_overrides
from storage.errors import StoreUnavailable
from tests.conftest import ADMIN_TOKEN, CID, FakeClock, Harness, error, postgres_store, running

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

CONFIG = f"""
[server]
admin_token = "{ADMIN_TOKEN}"

[[campaigns]]
cid = "{CID}"
unknown_transactions = "create"

[[campaigns.events]]
event_id = "quote_viewed"

[[campaigns.events]]
event_id = "form_step"
allow_duplicates = true

[[campaigns.events]]
event_id = "policy_bound"
conversion = true
approval = "manual"
"""


@pytest.fixture
async def nodes(pg_url: str) -> AsyncIterator[tuple[Harness, Harness]]:
    clock = FakeClock()
    config = with_server_overrides(parse_config(CONFIG, origin="test config"), "test",
                                   db=pg_url)
    async with running(config, clock, postgres_store(pg_url, clock)) as one, \
            running(config, clock, postgres_store(pg_url, clock)) as two:
        yield one, two


def read_then_wait(harness: Harness, name: str, until: asyncio.Event) -> None:
    """Make ``harness``'s store read as usual, then hold what it read until ``until``."""
    store: Any = harness.services.store
    real: Callable[..., Awaitable[Any]] = getattr(store, name)

    async def stale(*args: Any, **kwargs: Any) -> Any:
        found = await real(*args, **kwargs)
        await until.wait()
        return found

    setattr(store, name, stale)


async def test_a_conversion_decided_by_two_nodes_at_once_takes_one_decision(
        nodes: tuple[Harness, Harness]) -> None:
    one, two = nodes
    transaction_id = await one.click()
    fired = await one.fire(transaction_id, "policy_bound", revenue="80")
    conversion_id = fired.json()["data"]["conversion_id"]
    approved = asyncio.Event()
    read_then_wait(two, "conversion_statuses", approved)  # two sees "pending" and waits

    rejecting = asyncio.ensure_future(two.client.post(
        f"/api/conversions/{conversion_id}/reject", headers=AUTH, json={"reason": "fraud"}))
    await asyncio.sleep(0.05)
    approving = await one.client.post(f"/api/conversions/{conversion_id}/approve",
                                      headers=AUTH)
    assert approving.status_code == 200, approving.text
    approved.set()
    rejected = await asyncio.wait_for(rejecting, 10)
    # Decided again from the approval now stored: rejecting an approved one is refused.
    assert (rejected.status_code, rejected.json()) == (
        409, error(409, "Conversion already approved"))
    shown = await one.client.get(f"/api/conversions/{conversion_id}", headers=AUTH)
    conversion = shown.json()["data"]
    assert conversion["status"] == "approved"
    assert [(entry["from"], entry["to"]) for entry in conversion["history"]] == [
        (None, "pending"), ("pending", "approved")]


async def test_a_lead_created_by_two_nodes_at_once_is_created_once(
        nodes: tuple[Harness, Harness]) -> None:
    one, two = nodes
    first_stored = asyncio.Event()
    read_then_wait(two, "load_transaction", first_stored)  # two finds no lead, and waits

    body = {"cid": CID, "transaction_id": "minted-elsewhere"}
    late = asyncio.ensure_future(two.client.post(
        "/api/event/trigger", json={**body, "event_id": "quote_viewed"}))
    await asyncio.sleep(0.05)
    first = await one.client.post("/api/event/trigger",
                                  json={**body, "event_id": "form_step"})
    assert first.status_code == 200, first.text
    first_stored.set()
    second = await asyncio.wait_for(late, 10)
    # The second node's event joins the lead the first one created.
    assert second.status_code == 200, second.text
    assert await one.query("SELECT count(*) FROM leads WHERE transaction_id = ?",
                           "minted-elsewhere") == [(1,)]
    view = await one.view("minted-elsewhere")
    assert sorted(event["event_id"] for event in view["events"]) == [
        "form_step", "quote_viewed"]


async def test_a_fire_once_event_on_a_lead_created_by_two_nodes_at_once_fires_once(
        nodes: tuple[Harness, Harness]) -> None:
    one, two = nodes
    first_stored = asyncio.Event()
    read_then_wait(two, "load_transaction", first_stored)

    body = {"cid": CID, "transaction_id": "minted-twice", "event_id": "quote_viewed"}
    late = asyncio.ensure_future(two.client.post("/api/event/trigger", json=body))
    await asyncio.sleep(0.05)
    assert (await one.client.post("/api/event/trigger", json=body)).status_code == 200
    first_stored.set()
    second = await asyncio.wait_for(late, 10)
    assert second.status_code in (400, 403), second.text
    assert await one.query("SELECT count(*) FROM events WHERE transaction_id = ?",
                           "minted-twice") == [(1,)]


async def test_cost_changes_made_on_two_nodes_at_once_all_count(
        nodes: tuple[Harness, Harness]) -> None:
    one, two = nodes
    transaction_id = await one.click()
    assert (await one.fire(transaction_id, "form_step", cost="10")).status_code == 200
    # Both nodes know the lead's cost as 10 when each adds to it.
    one.clock.advance(5)
    assert (await two.fire(transaction_id, "form_step", cost="5")).status_code == 200
    one.clock.advance(5)
    assert (await one.fire(transaction_id, "form_step", cost="7")).status_code == 200
    one.clock.advance(5)
    assert (await two.fire(transaction_id, "form_step", cost="2",
                           cost_operation="subtract")).status_code == 200
    view = await one.view(transaction_id)
    assert view["cost"] == "20.00"
    # The reports' roll-ups count each change against the cost it replaced.
    assert await one.query("SELECT sum(cost) FROM stats") == [(20_000_000,)]


def keyed(harness: Harness, transaction_id: str, key: str) -> Awaitable[Any]:
    body = {"cid": CID, "transaction_id": transaction_id, "event_id": "quote_viewed"}
    return harness.client.post("/api/event/trigger", json=body,
                               headers={"Idempotency-Key": key})


IN_PROGRESS = (409, error(409, "A request with this Idempotency-Key is in progress"))


async def test_a_key_in_progress_on_one_node_is_in_progress_on_the_other(
        nodes: tuple[Harness, Harness]) -> None:
    one, two = nodes
    transaction_id = await two.click()
    loaded = asyncio.Event()
    read_then_wait(one, "load_transaction", loaded)  # one holds the key, mid-way

    first = asyncio.ensure_future(keyed(one, transaction_id, "key-1"))
    await asyncio.sleep(0.05)
    meanwhile = await keyed(two, transaction_id, "key-1")
    assert (meanwhile.status_code, meanwhile.json()) == IN_PROGRESS
    loaded.set()
    answered = await asyncio.wait_for(first, 10)
    assert answered.status_code == 200, answered.text
    replayed = await keyed(two, transaction_id, "key-1")
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert (replayed.status_code, replayed.content) == (200, answered.content)
    assert await one.query("SELECT count(*) FROM events WHERE transaction_id = ?",
                           transaction_id) == [(1,)]


async def test_a_key_whose_request_stored_nothing_is_free_on_every_node(
        nodes: tuple[Harness, Harness]) -> None:
    one, two = nodes
    transaction_id = await two.click()
    store: Any = one.services.store

    async def unavailable(*args: Any) -> Any:
        raise StoreUnavailable

    store.load_transaction = unavailable
    failed = await keyed(one, transaction_id, "key-2")
    assert failed.status_code == 503, failed.text
    await one.services.store.flush()  # the reservation's release is a queued write
    retried = await keyed(two, transaction_id, "key-2")
    assert retried.status_code == 200, retried.text
    assert "Idempotent-Replayed" not in retried.headers


async def test_the_key_of_a_node_that_died_holding_it_frees_itself(
        nodes: tuple[Harness, Harness]) -> None:
    one, two = nodes
    transaction_id = await one.click()
    # What a node leaves behind when it dies between reserving a key and answering.
    now = one.clock.now()
    store: Any = one.services.store
    assert await store.claim_answer("key-3", "a fingerprint", utc_text(now),
                                    utc_text(now + timedelta(seconds=60))) is None
    # Held for the dead node's request (other fields): 422 until the reservation runs out.
    assert (await keyed(two, transaction_id, "key-3")).status_code == 422
    one.clock.advance(61)
    taken_over = await keyed(two, transaction_id, "key-3")
    assert taken_over.status_code == 200, taken_over.text
