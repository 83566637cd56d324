"""The sender rules hold in every process of ``serve --workers 2`` on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN
from tests.served import Served

pytestmark = pytest.mark.timeout(120)

TOKEN = "a-server-token-0001"
CONFIG = f"""
[server]
admin_token = "{ADMIN_TOKEN}"

[[sources]]
pid = "src"

[[campaigns]]
cid = "closed"
event_tokens = ["{TOKEN}"]
anonymous = "events_only"

[[campaigns.events]]
event_id = "sale"
conversion = true

[[campaigns.events]]
event_id = "view"

[[campaigns]]
cid = "held"
event_tokens = ["{TOKEN}"]
anonymous = "hold"

[[campaigns.events]]
event_id = "sale"
conversion = true
"""


@pytest.fixture
def served(tmp_path: Path, pg_url: str) -> Iterator[Served]:
    config = tmp_path / "senders.toml"
    config.write_text(CONFIG)
    server = Served(tmp_path, "--config", str(config), "--db", pg_url, "--workers", "2",
                    ready_timeout=60)
    yield server
    server.kill()


async def test_every_worker_refuses_holds_and_takes_what_the_campaign_says(
        served: Served) -> None:
    limits = httpx.Limits(max_connections=40)
    async with httpx.AsyncClient(base_url=served.url, limits=limits, timeout=30) as client:
        async def fire(cid: str, event_id: str, token: str | None) -> httpx.Response:
            click = await client.post("/api/click", json={"cid": cid, "pid": "src"})
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            return await client.post("/api/event/trigger", headers=headers, json={
                "cid": cid, "event_id": event_id, "pid": "src", "revenue": "10",
                "transaction_id": click.json()["data"]["transaction_id"]})

        # New connections each: the kernel spreads them over both workers.
        anonymous = await asyncio.gather(*(fire("closed", "sale", None) for _ in range(20)))
        assert {(r.status_code, r.json()["message"]) for r in anonymous} == {
            (401, "Invalid token")}
        wrong = await asyncio.gather(*(fire("closed", "sale", "x" * 19) for _ in range(10)))
        assert {r.status_code for r in wrong} == {401}
        views = await asyncio.gather(*(fire("closed", "view", None) for _ in range(10)))
        assert {r.status_code for r in views} == {200}
        paid = await asyncio.gather(*(fire("closed", "sale", TOKEN) for _ in range(20)))
        assert {(r.status_code, r.json()["data"]["status"]) for r in paid} == {
            (200, "approved")}
        held = await asyncio.gather(*(fire("held", "sale", None) for _ in range(20)))
        assert {(r.status_code, r.json()["data"]["status"], r.json()["data"]["reason"])
                for r in held} == {(200, "pending", "anonymous")}
        listed = await client.get("/api/conversions", params={"reason": "anonymous"},
                                  headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert listed.status_code == 200, listed.text
        assert len(listed.json()["data"]["conversions"]) == 20
