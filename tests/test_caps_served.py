"""A cap is exact across processes: two nodes on one PostgreSQL, one of them two workers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.served import Served

pytestmark = pytest.mark.timeout(180)

CID, PID = "cmp_caps", "src_a"
CONFIG = f"""
[server]
admin_token = "cap-admin-token-0123456789"

[[sources]]
pid = "{PID}"

[[campaigns]]
cid = "{CID}"

[[campaigns.events]]
event_id = "sale"
conversion = true

[[campaigns.caps]]
metric = "conversions"
period = "day"
limit = 50
"""


@pytest.fixture
def nodes(tmp_path: Path, pg_url: str) -> Iterator[list[Served]]:
    config = tmp_path / "caps.toml"
    config.write_text(CONFIG)
    started = [Served(tmp_path, "--config", str(config), "--db", pg_url, "--workers", "2",
                      name="workers", ready_timeout=60),
               Served(tmp_path, "--config", str(config), "--db", pg_url, name="single")]
    yield started
    for server in started:
        server.kill()


async def test_200_at_once_over_three_processes_store_exactly_50(
        nodes: list[Served], pg_url: str) -> None:
    # A connection per request: the kernel spreads them over both workers of the first.
    limits = httpx.Limits(max_keepalive_connections=0)
    clients = [httpx.AsyncClient(base_url=node.url, timeout=60, limits=limits)
               for node in nodes]
    try:
        clicks = await asyncio.gather(*(clients[n % 2].post(
            "/api/click", json={"cid": CID, "pid": PID}) for n in range(200)))
        ids = [click.json()["data"]["transaction_id"] for click in clicks]
        sales = await asyncio.gather(*(clients[n % 2].post("/api/event/trigger", json={
            "cid": CID, "event_id": "sale", "pid": PID, "revenue": "5",
            "transaction_id": transaction_id}) for n, transaction_id in enumerate(ids)))
    finally:
        for client in clients:
            await client.aclose()
    codes = [sale.status_code for sale in sales]
    assert (codes.count(200), codes.count(400)) == (50, 150), codes
    assert {sale.json()["message"] for sale in sales if sale.status_code == 400} == {
        "Cap reached"}
    conn = await asyncpg.connect(pg_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM events WHERE conversion") == 50
        assert await conn.fetchval("SELECT used FROM cap_usage") == 50
    finally:
        await conn.close()
