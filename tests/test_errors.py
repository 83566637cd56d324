"""One error shape for every error, and the answers for overload and crashes."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
import structlog

from app.config.schema import Config
from app.edge.admission import AdmissionMiddleware
from app.observe.logs import merge_request_fields
from storage.records import StoredTransaction
from storage.sqlite.store import Store
from tests.conftest import ADMIN_TOKEN, CID, Harness, error, make_config, running


class BrokenStore(Store):
    """A store whose cold loads fail the way a bug or a corrupt file would."""

    async def load_transaction(self, transaction_id: str) -> StoredTransaction | None:
        raise RuntimeError("disk says no: /secret/path")


def broken(config: Config) -> Store:
    return BrokenStore(config.server.db)


async def test_every_error_answer_has_the_one_envelope(db_path: Path) -> None:
    config = make_config(db_path)
    async with running(config) as api:
        transaction_id = await api.click()
        await api.fire(transaction_id)
        api.clock.advance(0.5)
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        requests: list[tuple[str, str, dict[str, Any], int]] = [
            ("POST", "/api/event/trigger", {"content": b"nope"}, 400),
            ("POST", "/api/event/trigger", {"json": {}}, 400),
            ("POST", "/api/event/trigger", {"json": {"cid": CID, "event_id": "e",
                                                     "transaction_id": "t", "sub1": 1}}, 400),
            ("POST", "/api/event/trigger", {"json": {"cid": "x", "event_id": "e",
                                                     "transaction_id": "t"}}, 400),
            ("POST", "/api/event/trigger", {"json": {"cid": CID, "event_id": "quote_viewed",
                                                     "transaction_id": "t",
                                                     "pid": "src_paused"}}, 403),
            ("POST", "/api/event/trigger", {"json": {"cid": CID, "event_id": "quote_viewed",
                                                     "transaction_id": transaction_id}}, 403),
            ("POST", "/api/event/other", {"json": {"cid": CID}}, 400),
            ("POST", "/api/event/trigger", {"content": b"x" * 20000}, 413),
            ("GET", "/api/transactions/txn_1", {}, 401),
            ("GET", "/api/transactions/txn_1", {"headers": auth}, 404),
            ("GET", "/no/such/route", {}, 404),
            ("DELETE", "/api/click", {}, 405),
        ]
        for method, path, options, status in requests:
            response = await api.client.request(method, path, **options)
            assert response.status_code == status, (path, response.text)
            assert response.headers["content-type"] == "application/json"
            body = response.json()
            assert body["status"] == status
            assert body["type"] == "error"
            assert isinstance(body["message"], str) and body["message"]
            assert set(body) <= {"status", "type", "message", "missingFields",
                                 "invalidFields"}


async def test_unexpected_error_is_a_json_500_without_the_traceback(db_path: Path) -> None:
    config = make_config(db_path)
    async with running(config, store=broken(config)) as api:
        with structlog.testing.capture_logs(
            processors=[merge_request_fields]
        ) as logs:
            response = await api.fire("txn_on_disk_only")
        assert response.status_code == 500
        assert response.json() == error(500, "Internal server error")
        assert "secret" not in response.text and "Traceback" not in response.text
        [crash] = [entry for entry in logs if entry["event"] == "unhandled_error"]
        assert crash["log_level"] == "error"
        assert crash["exc_info"] is True
        [line] = [entry for entry in logs if entry["event"] == "request"]
        assert (line["status"], line["outcome"]) == (500, "internal_error")


async def test_write_queue_over_its_bound_answers_503_with_retry_after(db_path: Path) -> None:
    config = make_config(db_path, durability="write-behind", flush_ms=60_000,
                         max_pending_writes=2)
    async with running(config) as api:
        transaction_id = await api.click()
        assert (await api.fire(transaction_id)).status_code == 200  # 2 writes queued
        busy = await api.fire(transaction_id, "sale_completed", revenue=5)
        assert busy.status_code == 503
        assert busy.headers["retry-after"] == "1"
        assert busy.json() == error(503, "Server busy")
        click = await api.client.post("/api/click", json={"cid": CID})
        assert (click.status_code, click.json()) == (503, error(503, "Server busy"))

        await api.services.store.flush()
        # The refused request opened no window: its retry fires at once.
        retry = await api.fire(transaction_id, "sale_completed", revenue=5)
        assert retry.status_code == 200
        events = (await api.view(transaction_id))["events"]
        assert [event["event_id"] for event in events] == ["quote_viewed", "sale_completed"]


async def test_refused_click_leaves_no_phantom_lead(db_path: Path) -> None:
    config = make_config(db_path, durability="write-behind", flush_ms=60_000,
                         max_pending_writes=1)
    async with running(config) as api:
        await api.click()
        refused = await api.client.post("/api/click", json={"cid": CID})
        assert refused.status_code == 503
        assert len(api.services.registry) == 1


async def test_request_id_is_echoed_or_minted(api: Harness) -> None:
    given = await api.client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    minted = await api.client.get("/healthz", headers={"X-Request-ID": "bad id\n"})
    other = await api.client.get("/healthz")
    ids = {minted.headers["x-request-id"], other.headers["x-request-id"]}
    assert len(ids) == 2 and "bad id\n" not in ids
    assert all(re.fullmatch(r"[0-9a-f]{12}-[0-9a-f]+", request_id) for request_id in ids)


async def test_requests_past_the_in_flight_limit_are_refused_at_once(db_path: Path) -> None:
    # Stall the writer: commit-mode requests then wait in flight for their commit.
    config = make_config(db_path, max_in_flight=3)
    async with running(config) as api:
        transaction_id = await api.click()
        writer = api.services.store.writer
        release = asyncio.Event()
        real_apply = writer._apply

        async def stalled(ops: list[Any]) -> None:
            await release.wait()
            await real_apply(ops)

        writer._apply = stalled  # type: ignore[method-assign]
        waiting = [asyncio.create_task(api.fire(transaction_id, "form_step"))]
        waiting += [asyncio.create_task(api.client.post("/api/click", json={"cid": CID}))
                    for _ in range(2)]
        await asyncio.sleep(0.05)
        refused = await api.fire(transaction_id, "quote_viewed")
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert refused.json() == error(503, "Server busy")
        release.set()
        answers = await asyncio.gather(*waiting)
        assert [answer.status_code for answer in answers] == [200, 200, 200]
        assert (await api.fire(transaction_id, "quote_viewed")).status_code == 200


async def test_health_checks_are_admitted_past_the_limit() -> None:
    release = asyncio.Event()
    reached: list[str] = []

    async def slow(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["path"])
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    admission = AdmissionMiddleware(slow, limit=1)
    transport = httpx.ASGITransport(app=admission)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        first = asyncio.create_task(client.get("/api/x"))
        await asyncio.sleep(0.01)
        refused = await client.get("/api/y")
        health = asyncio.create_task(client.get("/healthz"))
        await asyncio.sleep(0.01)
        assert refused.status_code == 503
        assert reached == ["/api/x", "/healthz"]
        release.set()
        assert (await first).status_code == 200
        assert (await health).status_code == 200
    assert admission.in_flight == 0
