"""Idempotency-Key after a 503: the key stays taken while the event's write may still land.

A keyed request answered 503 (its write did not commit within write_timeout_seconds)
leaves that write queued, with the key's answer riding in it. Until the write settles a
retry gets 409; once it has committed, the first attempt's answer; once it has been
refused for good, the key is free and the retry is handled anew. Never 400 Duplicate.

The store fails by its writer raising, as a full disk would, until the test says
otherwise; a reload in between shows the key outlives a config swap.
"""

from __future__ import annotations

import errno
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from asgi_lifespan import LifespanManager

from app.config.reload import ConfigFile
from app.factory import build_store, create_app
from app.services import Services
from storage.errors import StoreBusy
from storage.records import WriteOp
from tests.conftest import (
    ADMIN_TOKEN,
    BACKENDS,
    CID,
    PID,
    TEST_CONFIG,
    FakeClock,
    Harness,
    error,
    postgres_store,
)

WRITE_TIMEOUT = 0.3
# Past the lock window, and past the reservation a shared database holds for a request.
LATER = 61
IN_PROGRESS = (409, error(409, "A request with this Idempotency-Key is in progress"))
# A reload that changes what requests read: the key must outlive the swap.
ADDED_CAMPAIGN = TEST_CONFIG + """
[[campaigns]]
cid = "cmp_added"

[[campaigns.events]]
event_id = "signed_up"
"""

Failure = Literal["none", "transient", "refused"]


class Node:
    """The app served from a config file (so it reloads), on a store whose writes fail."""

    def __init__(self, api: Harness, config: Path, backend: str) -> None:
        self.api = api
        self.config = config
        self.backend = backend
        self.failure: Failure = "none"
        writer: Any = api.services.store.writer
        real_apply = writer._apply

        async def apply(ops: list[WriteOp]) -> Any:
            if self.failure == "transient":
                raise OSError(errno.ENOSPC, "No space left on device")
            if self.failure == "refused" and any(op.event is not None for op in ops):
                raise ValueError("the event's row is refused")  # permanent on both stores
            return await real_apply(ops)

        writer._apply = apply
        writer._retry_initial = writer._retry_max = 0.01

    @contextmanager
    def failing(self, failure: Failure) -> Iterator[None]:
        self.failure = failure
        try:
            yield
        finally:
            self.failure = "none"

    async def reload(self) -> None:
        self.config.write_text(ADDED_CAMPAIGN)
        response = await self.api.client.post(
            "/api/admin/reload", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert response.status_code == 200, response.text

    async def settle(self) -> None:
        """Wait for every queued write, then for a key's release queued as one settled."""
        await self.api.services.store.flush()
        await self.api.services.store.flush()

    async def sale(self, transaction_id: str, key: str) -> httpx.Response:
        body = {"cid": CID, "event_id": "sale_completed", "transaction_id": transaction_id,
                "pid": PID, "revenue": "45.00"}
        return await self.api.client.post("/api/event/trigger", json=body,
                                          headers={"Idempotency-Key": key})


@pytest.fixture(params=BACKENDS)
async def node(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Node]:
    db = str(tmp_path / "events.db") if request.param == "sqlite" else request.getfixturevalue(
        "pg_url")
    path = tmp_path / "config.toml"
    path.write_text(TEST_CONFIG)
    config_file = ConfigFile(path, {"db": db, "write_timeout_seconds": WRITE_TIMEOUT})
    config = config_file.read()
    clock = FakeClock()
    store = build_store(config) if request.param == "sqlite" else postgres_store(db, clock)
    async with _serving(create_app(config, clock=clock, store=store,
                                   config_file=config_file), clock) as api:
        yield Node(api, path, request.param)


@asynccontextmanager
async def _serving(app: Any, clock: FakeClock) -> AsyncIterator[Harness]:
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, client=("203.0.113.7", 51000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            services: Services = manager._state["services"]
            yield Harness(client=client, clock=clock, services=services)


def unavailable(response: httpx.Response) -> bool:
    return (response.status_code, response.json()) == (503, error(503, "Store unavailable"))


async def test_a_retry_while_the_write_is_unsettled_is_409_then_gets_the_stored_answer(
        node: Node) -> None:
    api = node.api
    transaction_id = await api.click(pid=PID)
    with node.failing("transient"):
        first = await node.sale(transaction_id, "after-503")
        assert unavailable(first), first.text
        await node.reload()
        api.clock.advance(LATER)
        meanwhile = await node.sale(transaction_id, "after-503")
        assert (meanwhile.status_code, meanwhile.json()) == IN_PROGRESS
    await node.settle()
    # The write that got 503 landed with the key's answer: the retry learns the sale's id.
    replay = await node.sale(transaction_id, "after-503")
    assert replay.status_code == 200, replay.text
    assert replay.headers["Idempotent-Replayed"] == "true"
    [(conversion_id,)] = await api.query(
        "SELECT conversion_id FROM events WHERE transaction_id = ?", transaction_id)
    assert replay.json()["data"]["conversion_id"] == conversion_id
    again = await node.sale(transaction_id, "after-503")
    assert (again.content, again.headers["Idempotent-Replayed"]) == (replay.content, "true")


async def test_a_key_whose_write_was_refused_for_good_is_free_on_the_same_node(
        node: Node) -> None:
    api = node.api
    transaction_id = await api.click(pid=PID)
    with node.failing("transient"):
        first = await node.sale(transaction_id, "refused")
        assert unavailable(first), first.text
        await node.reload()
    with node.failing("refused"):
        await node.settle()
    await node.settle()
    api.clock.advance(LATER)
    retried = await node.sale(transaction_id, "refused")
    assert retried.status_code == 200, retried.text
    assert "Idempotent-Replayed" not in retried.headers
    [(conversion_id,)] = await api.query(
        "SELECT conversion_id FROM events WHERE transaction_id = ?", transaction_id)
    assert retried.json()["data"]["conversion_id"] == conversion_id
    replay = await node.sale(transaction_id, "refused")
    assert (replay.content, replay.headers["Idempotent-Replayed"]) == (retried.content, "true")


async def test_a_key_refused_busy_is_handled_anew_at_once(node: Node) -> None:
    """Server busy refuses before the write is queued: nothing may land, nothing holds."""
    api = node.api
    transaction_id = await api.click(pid=PID)
    store: Any = api.services.store
    real_submit = store.submit

    def busy_once(op: WriteOp, *, bounded: bool = True) -> Any:
        if op.event is not None and store.submit is busy_once:
            store.submit = real_submit
            raise StoreBusy
        return real_submit(op, bounded=bounded)

    store.submit = busy_once
    with node.failing("transient"):
        busy = await node.sale(transaction_id, "busy")
        assert busy.json() == error(503, "Server busy"), busy.text
        retried = await node.sale(transaction_id, "busy")
        if node.backend == "sqlite":
            # Handled anew, so it meets the failing store itself.
            assert unavailable(retried), retried.text
        else:
            # The reservation's release is a write to the failing database: until it
            # lands there, the key is in progress for every node.
            assert (retried.status_code, retried.json()) == IN_PROGRESS
    await node.settle()
    api.clock.advance(LATER)
    # The sale fired once, by whichever attempt got through, and the key answers with it.
    final = await node.sale(transaction_id, "busy")
    assert final.status_code == 200, final.text
    [(conversion_id,)] = await api.query(
        "SELECT conversion_id FROM events WHERE transaction_id = ?", transaction_id)
    assert final.json()["data"]["conversion_id"] == conversion_id
