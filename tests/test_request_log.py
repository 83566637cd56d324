"""One canonical log line per request, carrying what an operator searches by."""

from __future__ import annotations

import structlog

from app.observe.logs import merge_request_fields
from tests.conftest import CID, Harness


async def test_one_line_per_request_with_ids_outcome_and_latency(api: Harness) -> None:
    transaction_id = await api.click()
    with structlog.testing.capture_logs(
        processors=[merge_request_fields]
    ) as logs:
        fired = await api.fire(transaction_id)
        locked = await api.fire(transaction_id)
        invalid = await api.client.post("/api/event/trigger", json={"cid": CID})
    lines = [entry for entry in logs if entry["event"] == "request"]
    assert len(lines) == 3
    first, second, third = lines
    assert first["request_id"] == fired.headers["x-request-id"]
    assert second["request_id"] == locked.headers["x-request-id"]
    assert third["request_id"] == invalid.headers["x-request-id"]
    assert {key: first[key] for key in ("method", "route", "status", "outcome", "cid",
                                        "event_id", "transaction_id")} == {
        "method": "POST", "route": "/api/event/trigger", "status": 200, "outcome": "fired",
        "cid": CID, "event_id": "quote_viewed", "transaction_id": transaction_id}
    assert isinstance(first["latency_ms"], float) and first["latency_ms"] >= 0
    assert (second["status"], second["outcome"]) == (403, "locked")
    assert (third["status"], third["outcome"]) == (400, "missing_field")
    assert "transaction_id" not in third


async def test_log_context_does_not_leak_between_requests(api: Harness) -> None:
    transaction_id = await api.click()
    with structlog.testing.capture_logs(
        processors=[merge_request_fields]
    ) as logs:
        await api.fire(transaction_id)
        await api.client.get("/healthz")
    health = [entry for entry in logs if entry.get("route") == "/healthz"]
    assert len(health) == 1
    assert "transaction_id" not in health[0] and "outcome" not in health[0]
