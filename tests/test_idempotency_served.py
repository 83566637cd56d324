"""Idempotency-Key in the real served process: answers survive SIGTERM and kill -9."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx

from tests.served import Served

CID, PID = "cmp_9z8y7x6w", "src_abc123"
DEMO_TOKEN = {"Authorization": "Bearer change-me"}


def _sale(client: httpx.Client, transaction_id: str, key: str) -> httpx.Response:
    return client.post("/api/event/trigger", headers={"Idempotency-Key": key}, json={
        "cid": CID, "event_id": "sale_completed", "transaction_id": transaction_id,
        "revenue": "45.00"})


def _events(client: httpx.Client, transaction_id: str) -> int:
    view = client.get(f"/api/transactions/{transaction_id}", headers=DEMO_TOKEN).json()
    return len(view["data"]["events"])


def test_a_stored_answer_is_replayed_after_sigterm_and_after_kill_9(tmp_path: Path) -> None:
    db = str(tmp_path / "keys.db")
    server = Served(tmp_path, "--db", db)
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            transaction_id = client.post("/api/click", json={"cid": CID, "pid": PID}).json()[
                "data"]["transaction_id"]
            first = _sale(client, transaction_id, "sale-1")
            assert first.status_code == 200
            other = client.post("/api/click", json={"cid": CID}).json()["data"][
                "transaction_id"]
            killed = _sale(client, other, "sale-2")
        # Commit mode answered only after the commit: nothing it said can be lost.
        server.kill()
        server = Served(tmp_path, "--db", db, name="after-kill")
        with httpx.Client(base_url=server.url, timeout=10) as client:
            again = _sale(client, other, "sale-2")
            assert (again.status_code, again.content) == (200, killed.content)
            assert again.headers["idempotent-replayed"] == "true"
            assert _events(client, other) == 1
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
        server = Served(tmp_path, "--db", db, name="after-term")
        with httpx.Client(base_url=server.url, timeout=10) as client:
            again = _sale(client, transaction_id, "sale-1")
            assert (again.content, again.headers["idempotent-replayed"]) == (
                first.content, "true")
            assert _events(client, transaction_id) == 1
            assert _sale(client, transaction_id, "sale-1").status_code == 200
    finally:
        server.kill()
