"""Two things happening to one transaction: each must leave the other as it was.

Windows of two events open at once, a cost then a fields-only event, two changes to one
field or one postback that the write-behind writer commits in the same batch, and the
postback macros of an event that changes the lead's fields.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from app.config.schema import parse_config, with_server_overrides
from storage.records import LeadRow, PostbackChange, PostbackRow, WriteOp
from storage.sqlite.store import Store
from tests.conftest import ADMIN_TOKEN, CID, PID, Harness, error, make_config, running

# The rules hold on both stores.
pytestmark = pytest.mark.both_stores

LOCKED = error(403, "Concurrent event in progress")
# Long enough that every write of a test waits for the same batch; a flush ends the wait.
ONE_BATCH_MS = 60_000


async def test_firing_one_event_keeps_the_open_window_of_another(api: Harness) -> None:
    transaction_id = await api.click()
    # form_step allows duplicates: only its window stops a second fire.
    assert (await api.fire(transaction_id, "form_step")).status_code == 200
    api.clock.advance(1)
    assert (await api.fire(transaction_id, "quote_viewed")).status_code == 200
    api.clock.advance(0.5)
    assert (await api.fire(transaction_id, "form_step")).json() == LOCKED
    assert (await api.fire(transaction_id, "quote_viewed")).json() == LOCKED
    api.clock.advance(0.6)  # form_step's window closed, quote_viewed's still open
    assert (await api.fire(transaction_id, "form_step")).status_code == 200
    assert (await api.fire(transaction_id, "quote_viewed")).json() == LOCKED
    rows = await api.query("SELECT event_id, count(*) FROM events GROUP BY event_id "
                           "ORDER BY event_id")
    assert rows == [("form_step", 2), ("quote_viewed", 1)]


@pytest.mark.parametrize("durability", ["commit", "write-behind"])
async def test_an_event_with_fields_and_no_cost_keeps_the_leads_cost(
    db_path: Path, durability: str
) -> None:
    async with running(make_config(db_path, durability=durability)) as api:
        transaction_id = await api.click(sub1="from-click")
        assert (await api.fire(transaction_id, "form_step", cost="10.5")).status_code == 200
        await api.services.store.flush()  # the two changes commit in separate batches
        api.clock.advance(2.5)
        assert (await api.fire(transaction_id, "form_step", sub1="later")).status_code == 200
        lead = await api.view(transaction_id)
        assert lead["cost"] == "10.50"
        assert lead["fields"]["sub1"] == "later"


async def test_changes_to_one_lead_in_one_batch_keep_the_later_values(db_path: Path) -> None:
    config = make_config(db_path, durability="write-behind", flush_ms=ONE_BATCH_MS)
    async with running(config) as api:
        transaction_id = await api.click(sub1="from-click", sub2="kept")
        await api.services.store.flush()
        committed = api.services.store.writer.batches_committed
        assert (await api.fire(transaction_id, "form_step", sub1="first",
                               cost="7")).status_code == 200
        assert (await api.fire(transaction_id, "quote_viewed", sub1="second",
                               sub3="new")).status_code == 200
        api.clock.advance(2.5)
        assert (await api.fire(transaction_id, "form_step", cost="3",
                               cost_operation="add", sub4="x")).status_code == 200
        lead = await api.view(transaction_id)
        # All three events went in one batch.
        assert api.services.store.writer.batches_committed == committed + 1
        assert {key: lead["fields"][key] for key in ("sub1", "sub2", "sub3", "sub4")} == {
            "sub1": "second", "sub2": "kept", "sub3": "new", "sub4": "x"}
        assert lead["cost"] == "10.00"


async def test_a_cost_override_after_an_add_in_one_batch_wins(db_path: Path) -> None:
    config = make_config(db_path, durability="write-behind", flush_ms=ONE_BATCH_MS)
    async with running(config) as api:
        transaction_id = await api.click()
        await api.services.store.flush()
        assert (await api.fire(transaction_id, "form_step", cost="7")).status_code == 200
        api.clock.advance(2.5)
        assert (await api.fire(transaction_id, "form_step", cost="2.25",
                               cost_operation="override")).status_code == 200
        api.clock.advance(2.5)
        assert (await api.fire(transaction_id, "form_step", sub1="no cost")).status_code == 200
        assert (await api.view(transaction_id))["cost"] == "2.25"


async def test_reports_count_the_last_cost_of_changes_merged_in_one_batch(
    db_path: Path,
) -> None:
    config = make_config(db_path, durability="write-behind", flush_ms=ONE_BATCH_MS)
    async with running(config) as api:
        transaction_id = await api.click()
        await api.services.store.flush()
        committed = api.services.store.writer.batches_committed
        assert (await api.fire(transaction_id, "form_step", cost="7")).status_code == 200
        api.clock.advance(2.5)
        assert (await api.fire(transaction_id, "form_step", cost="3",
                               cost_operation="add", sub1="x")).status_code == 200
        response = await api.client.get(
            "/api/reports", params={"from": "2026-11-28", "to": "2026-11-28"},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert api.services.store.writer.batches_committed == committed + 1
    assert response.status_code == 200, response.text
    assert response.json()["data"]["totals"]["cost"] == "10.00"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = Store(tmp_path / "w.db", max_pending=100)
    await store.open()
    yield store
    await store.close()


def _rows(store: Store, sql: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(store.path)) as conn:
        return conn.execute(sql).fetchall()


def _change(postback_id: int, status: str, attempts: int, at: str) -> WriteOp:
    return WriteOp(postback_change=PostbackChange(
        postback_id=postback_id, status=status, attempts=attempts,  # type: ignore[arg-type]
        max_attempts=8, next_attempt_at=at, last_status_code=500 if status != "delivered"
        else 200, last_error=None, updated_at=at))


async def test_two_changes_to_one_postback_in_one_batch_keep_the_last(store: Store) -> None:
    at = "2026-01-01T00:00:00.000000Z"
    store.submit(WriteOp(lead=LeadRow(
        transaction_id="t", cid="c", pid="organic", fields="{}", cost=None, ip=None,
        user_agent=None, created_at=at)))
    store.submit(WriteOp(postbacks=(PostbackRow(
        transaction_id="t", cid="c", pid="organic", event_id="e", conversion_id=None,
        kind="buyer", method="GET", url="http://x/", host="x", body=None, secret=None,
        status="pending", max_attempts=8, next_attempt_at=at, created_at=at,
        updated_at=at),)))
    await store.flush()
    [(postback_id,)] = _rows(store, "SELECT id FROM postbacks")
    committed = store.writer.batches_committed
    # Queued back to back, before the writer runs: one batch.
    store.submit(_change(postback_id, "pending", 1, "2026-01-01T00:00:01.000000Z"))
    store.submit(_change(postback_id, "delivered", 2, "2026-01-01T00:00:05.000000Z"))
    await store.flush()
    assert store.writer.batches_committed == committed + 1
    rows = _rows(store, "SELECT status, attempts, last_status_code, updated_at FROM postbacks")
    assert rows == [("delivered", 2, 200, "2026-01-01T00:00:05.000000Z")]


POSTBACK_CONFIG = f"""
lead_fields = ["first_name"]

[[sources]]
pid = "{PID}"
payout = {{ type = "percent", value = 50 }}

[[campaigns]]
cid = "{CID}"

[[campaigns.events]]
event_id = "sale_completed"
conversion = true

[[campaigns.postbacks]]
url = "http://buyer.invalid/pb?s1={{sub1}}&s2={{sub2}}&u={{utm_source}}&n={{first_name}}"
"""


async def test_postback_macros_take_the_events_own_fields_over_the_stored_lead(
    db_path: Path,
) -> None:
    config = with_server_overrides(parse_config(POSTBACK_CONFIG, origin="interactions"),
                                   "test", db=str(db_path))
    async with running(config) as api:
        transaction_id = await api.click(pid=PID, sub1="click-sub1", sub2="click-sub2",
                                         utm_source="click-utm", first_name="Ann")
        await api.services.store.flush()
        response = await api.fire(transaction_id, "sale_completed", pid=PID, revenue="1",
                                  sub1="event-sub1", utm_source="event-utm")
        assert response.status_code == 200, response.text
        [(url,)] = await api.query("SELECT url FROM postbacks")
    assert parse_qs(urlsplit(url).query, keep_blank_values=True) == {
        "s1": ["event-sub1"], "s2": ["click-sub2"], "u": ["event-utm"], "n": ["Ann"]}


@pytest.mark.parametrize("order", ["fields first", "cost first"])
async def test_a_cost_only_change_and_a_fields_change_in_one_batch_keep_both(
    db_path: Path, order: str
) -> None:
    config = make_config(db_path, durability="write-behind", flush_ms=ONE_BATCH_MS)
    async with running(config) as api:
        transaction_id = await api.click()
        await api.services.store.flush()
        changes = [{"sub1": "kept", "cost": "4"}, {"cost": "6"}]
        if order == "cost first":
            changes.reverse()
        for change in changes:
            assert (await api.fire(transaction_id, "form_step", **change)).status_code == 200
            api.clock.advance(2.5)
        lead = await api.view(transaction_id)
        assert (lead["fields"].get("sub1"), lead["cost"]) == ("kept", "10.00")
