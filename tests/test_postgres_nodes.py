"""Two served nodes on one PostgreSQL database: one dies under load, the other carries on.

Every event either node acknowledged is in the database, whichever node took it.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.conftest import CID, TEST_CONFIG
from tests.served import Served

# Two servers and their database on two busy cores.
pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def nodes(tmp_path: Path, pg_url: str) -> Iterator[list[Served]]:
    config = tmp_path / "pg.toml"
    config.write_text(TEST_CONFIG)
    started = [Served(tmp_path, "--config", str(config), "--db", pg_url, name=name)
               for name in ("one", "two")]
    yield started
    for server in started:
        server.kill()


async def test_kill_9_of_one_node_under_load_loses_no_acknowledged_event(
        nodes: list[Served], pg_url: str) -> None:
    one, two = nodes
    acknowledged: list[str] = []

    async def fire(client: httpx.AsyncClient, transaction_id: str) -> int:
        response = await client.post("/api/event/trigger", json={
            "cid": CID, "event_id": "quote_viewed", "transaction_id": transaction_id})
        if response.status_code == 200:
            acknowledged.append(transaction_id)
        return response.status_code

    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(base_url=one.url, limits=limits, timeout=30) as to_one, \
            httpx.AsyncClient(base_url=two.url, limits=limits, timeout=30) as to_two:
        clicks = await asyncio.gather(*(to_two.post("/api/click", json={"cid": CID})
                                        for _ in range(400)))
        ids = [click.json()["data"]["transaction_id"] for click in clicks]
        load = asyncio.gather(*(fire(to_one if i % 2 else to_two, transaction_id)
                                for i, transaction_id in enumerate(ids[:300])),
                              return_exceptions=True)
        while len(acknowledged) < 30:
            await asyncio.sleep(0.005)
        one.signal(signal.SIGKILL)
        answers = await load
        # Node two answered everything sent to it, before and after node one died.
        assert [answers[i] for i in range(0, 300, 2)] == [200] * 150
        after = await asyncio.gather(*(fire(to_two, t) for t in ids[300:]))
        assert after == [200] * 100
    assert one.wait() == -signal.SIGKILL
    conn = await asyncpg.connect(pg_url)
    try:
        stored = {row[0] for row in await conn.fetch(
            "SELECT transaction_id FROM events WHERE transaction_id = ANY($1::text[])",
            acknowledged)}
    finally:
        await conn.close()
    assert stored == set(acknowledged)
    assert len(acknowledged) >= 250
