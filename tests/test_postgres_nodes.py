"""Two served nodes on one PostgreSQL database: one dies under load, the other carries on.

Every event either node acknowledged is in the database, whichever node took it, and a
postback the dead node was sending is sent by the other once its lease runs out.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.conftest import CID, TEST_CONFIG
from tests.receiver import Answer, Receiver
from tests.served import Served
from tests.test_postbacks_served import wait_until

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


async def test_two_served_nodes_fire_one_of_100_identical_and_all_of_200_distinct(
        nodes: list[Served]) -> None:
    async with httpx.AsyncClient(base_url=nodes[0].url, timeout=30) as to_one, \
            httpx.AsyncClient(base_url=nodes[1].url, timeout=30) as to_two:
        clicks = await asyncio.gather(*(to_one.post("/api/click", json={"cid": CID})
                                        for _ in range(201)))
        ids = [click.json()["data"]["transaction_id"] for click in clicks]
        same = {"cid": CID, "event_id": "quote_viewed", "transaction_id": ids[0]}
        identical = await asyncio.gather(*((to_one if n % 2 else to_two).post(
            "/api/event/trigger", json=same) for n in range(100)))
        distinct = await asyncio.gather(*((to_one if n % 2 else to_two).post(
            "/api/event/trigger", json={"cid": CID, "event_id": "quote_viewed",
                                        "transaction_id": transaction_id})
            for n, transaction_id in enumerate(ids[1:])))
    codes = [answer.status_code for answer in identical]
    assert codes.count(200) == 1
    assert set(codes) <= {200, 400, 403}
    assert [answer.status_code for answer in distinct] == [200] * 200


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


def delivery_args(tmp_path: Path, receiver: Receiver, pg_url: str,
                  settings: str = "") -> tuple[str, ...]:
    """``serve`` arguments for a campaign whose conversions owe ``receiver`` a postback;
    ``settings`` go on after ``[server]``'s admin token."""
    config = tmp_path / "delivery.toml"
    config.write_text(f"""
[server]
admin_token = "t"
{settings}
[[campaigns]]
cid = "{CID}"

[[campaigns.events]]
event_id = "sale_completed"
conversion = true

[[campaigns.postbacks]]
url = "{receiver.url}/buyer?conv={{conversion_id}}"
""")
    return ("--config", str(config), "--db", pg_url)


def test_a_postback_a_dead_node_was_sending_is_sent_by_the_other(
        tmp_path: Path, pg_url: str) -> None:
    with Receiver() as receiver:
        # The shortest lease: 5 s, longer than an attempt (1 s) twice plus its record.
        args = delivery_args(tmp_path, receiver, pg_url, "write_timeout_seconds = 1\n"
                             "[delivery]\ntimeout_seconds = 1\n")
        receiver.script("/buyer", Answer(hang=True))  # the first attempt never ends
        one = Served(tmp_path, *args, name="one")
        two: Served | None = None
        try:
            with httpx.Client(base_url=one.url) as client:
                click = client.post("/api/click", json={"cid": CID}).json()
                sale = client.post("/api/event/trigger", json={
                    "cid": CID, "event_id": "sale_completed", "revenue": "12",
                    "transaction_id": click["data"]["transaction_id"]})
                assert sale.status_code == 200, sale.text
                conversion_id = sale.json()["data"]["conversion_id"]
            wait_until(lambda: receiver.hanging == 1)  # node one is sending it
            # Killed at once, well inside the attempt's 1 s, so that it records nothing.
            one.signal(signal.SIGKILL)
            assert one.wait() == -signal.SIGKILL
            two = Served(tmp_path, *args, name="two")
            wait_until(lambda: len(receiver.of("/buyer")) == 2, timeout=40)
            with httpx.Client(base_url=two.url, headers={"Authorization": "Bearer t"}) as c:
                def delivered() -> bool:
                    found = c.get("/api/postbacks", params={"status": "delivered"})
                    return len(found.json()["data"]) == 1
                wait_until(delivered)
                [postback] = c.get("/api/postbacks").json()["data"]
                shown = c.get(f"/api/postbacks/{postback['id']}").json()["data"]
        finally:
            one.kill()
            if two is not None:
                two.kill()
    # Sent again by node two, once: node one's attempt died with it, unrecorded.
    assert [request.query for request in receiver.of("/buyer")] == [
        {"conv": [conversion_id]}] * 2
    assert [attempt["status_code"] for attempt in shown["attempt_log"]] == [200]


def test_each_postback_is_delivered_once_by_one_of_two_nodes(
        tmp_path: Path, pg_url: str) -> None:
    with Receiver() as receiver:
        args = delivery_args(tmp_path, receiver, pg_url)
        nodes = [Served(tmp_path, *args, name=name) for name in ("one", "two")]
        try:
            conversions = []
            for n in range(20):  # fired on both nodes in turn; both dispatchers look
                with httpx.Client(base_url=nodes[n % 2].url) as client:
                    click = client.post("/api/click", json={"cid": CID}).json()
                    sale = client.post("/api/event/trigger", json={
                        "cid": CID, "event_id": "sale_completed", "revenue": "5",
                        "transaction_id": click["data"]["transaction_id"]})
                    assert sale.status_code == 200, sale.text
                    conversions.append(sale.json()["data"]["conversion_id"])
            wait_until(lambda: len(receiver.of("/buyer")) >= 20)
            # Both dispatchers poll every second: give each two more looks at the queue.
            time.sleep(2)
            with httpx.Client(base_url=nodes[0].url,
                              headers={"Authorization": "Bearer t"}) as client:
                delivered = client.get("/api/postbacks",
                                       params={"status": "delivered"}).json()["data"]
        finally:
            for node in nodes:
                node.kill()
    assert sorted(request.query["conv"][0] for request in receiver.of("/buyer")) == sorted(
        conversions)
    assert len(delivered) == 20
