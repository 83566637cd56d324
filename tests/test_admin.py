"""The read API behind the admin token, and the health check."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from tests.conftest import ADMIN_TOKEN, PID, Harness, error, make_config, running

# The rules hold on both stores.
pytestmark = pytest.mark.both_stores


async def test_read_api_needs_the_bearer_token(api: Harness) -> None:
    transaction_id = await api.click()
    path = f"/api/transactions/{transaction_id}"
    for headers in ({}, {"Authorization": "Bearer wrong"},
                    {"Authorization": ADMIN_TOKEN},
                    {"Authorization": f"Basic {ADMIN_TOKEN}"},
                    {"Authorization": "Bearer s\u00e9cret".encode("latin-1")}):
        response = await api.client.get(path, headers=headers)
        assert response.status_code == 401, headers
        assert response.json() == error(401, "Unauthorized")
        assert response.headers["www-authenticate"] == "Bearer"
    ok = await api.client.get(path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert ok.status_code == 200


async def test_read_api_is_absent_without_a_token(db_path: Path) -> None:
    config = make_config(db_path)
    config = msgspec.structs.replace(
        config, server=msgspec.structs.replace(config.server, admin_token=None))
    async with running(config) as api:
        transaction_id = await api.click()
        response = await api.client.get(f"/api/transactions/{transaction_id}",
                                        headers={"Authorization": "Bearer anything"})
        assert response.status_code == 404
        assert response.json() == error(404, "Not Found")


async def test_transaction_view_lists_lead_and_events_in_order(api: Harness) -> None:
    transaction_id = await api.click(pid=PID, sub1="s")
    await api.fire(transaction_id, "quote_viewed", pid=PID)
    api.clock.advance(1)
    sale = await api.fire(transaction_id, "sale_completed", pid=PID, revenue="80",
                          cost="3.10")
    view = await api.view(transaction_id)
    assert {key: view[key] for key in ("transaction_id", "cid", "pid", "fields", "cost",
                                       "created_at")} == {
        "transaction_id": transaction_id, "cid": "cmp_9z8y7x6w", "pid": PID,
        "fields": {"sub1": "s"}, "cost": "3.10", "created_at": "2026-11-28T12:00:00.000000Z"}
    assert [(e["event_id"], e["pid"], e["conversion"], e["conversion_id"], e["revenue"],
             e["payout"], e["fired_at"]) for e in view["events"]] == [
        ("quote_viewed", PID, False, "", None, None, "2026-11-28T12:00:00.000000Z"),
        ("sale_completed", PID, True, sale.json()["data"]["conversion_id"], "80.00", "40.00",
         "2026-11-28T12:00:01.000000Z"),
    ]


async def test_no_conversion_reads_as_the_empty_string_the_event_answered(
    api: Harness,
) -> None:
    # One form of "no conversion" in every answer: the event's own, never null.
    transaction_id = await api.click(pid=PID)
    fired = await api.fire(transaction_id, "quote_viewed", pid=PID)
    assert fired.json()["data"]["conversion_id"] == ""
    [event] = (await api.view(transaction_id))["events"]
    assert event["conversion_id"] == ""
    # The database keeps NULL, so the unique index on conversion ids skips it.
    assert await api.query("SELECT conversion_id FROM events") == [(None,)]


async def test_unknown_transaction_is_404(api: Harness) -> None:
    response = await api.client.get("/api/transactions/txn_nope",
                                    headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.json() == error(404, "Transaction not found")


async def test_read_api_sees_acknowledged_write_behind_events(db_path: Path) -> None:
    config = make_config(db_path, durability="write-behind", flush_ms=60_000)
    async with running(config) as api:
        transaction_id = await api.click()
        await api.fire(transaction_id)
        assert api.services.store.writer.pending > 0
        assert len((await api.view(transaction_id))["events"]) == 1


async def test_healthz_reports_a_writable_store(api: Harness) -> None:
    response = await api.client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["data"]["store"] == "writable"


async def test_healthz_is_503_while_writes_fail(api: Harness) -> None:
    api.services.store.writer.failing = True
    response = await api.client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == error(503, "Store not writable")
