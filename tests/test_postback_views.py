"""The read API shows a postback as it was stored, field by field, with its attempt log."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from app.config.schema import parse_config, with_server_overrides
from tests.conftest import ADMIN_TOKEN, Harness, running
from tests.receiver import Answer, Receiver

# The rules hold on both stores.
pytestmark = pytest.mark.both_stores

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CID = "cmp_views"
PID = "src_views"
FIRED = "2026-11-28T12:00:00.000000Z"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running_receiver:
        yield running_receiver


def config_text(url: str) -> str:
    return f"""
[server]
admin_token = "{ADMIN_TOKEN}"

[delivery]
max_attempts = 3

[[sources]]
pid = "{PID}"

[[campaigns]]
cid = "{CID}"

[[campaigns.events]]
event_id = "sale_completed"
conversion = true

[[campaigns.postbacks]]
url = "{url}?tid={{transaction_id}}"
method = "POST"
"""


@pytest.fixture
async def api(receiver: Receiver, db_path: Path) -> AsyncIterator[Harness]:
    text = config_text(f"{receiver.url}/buyer")
    config = with_server_overrides(parse_config(text, origin="views"), "test", db=str(db_path))
    async with running(config) as harness:
        yield harness


async def test_a_postback_and_its_attempts_as_shown(api: Harness, receiver: Receiver) -> None:
    receiver.script("/buyer", Answer(500), Answer(503))
    transaction_id = await api.click(cid=CID, pid=PID)
    fired = await api.client.post("/api/event/trigger", json={
        "cid": CID, "event_id": "sale_completed", "transaction_id": transaction_id,
        "pid": PID, "revenue": "9"})
    conversion_id = fired.json()["data"]["conversion_id"]
    await api.services.dispatcher.drain()
    api.clock.advance(3600)
    await api.services.dispatcher.drain()

    [listed] = (await api.client.get("/api/postbacks", headers=AUTH)).json()["data"]
    url = f"{receiver.url}/buyer?tid={transaction_id}"
    expected = {
        "transaction_id": transaction_id, "cid": CID, "pid": PID,
        "event_id": "sale_completed", "conversion_id": conversion_id, "kind": "buyer",
        "method": "POST", "url": url, "status": "pending", "attempts": 2,
        "max_attempts": 3, "last_status_code": 503, "created_at": FIRED,
    }
    assert {key: listed[key] for key in expected} == expected
    assert listed["updated_at"] > FIRED and listed["next_attempt_at"] > listed["updated_at"]
    assert listed["last_error"] is None  # an answer, not a failure to get one

    shown = (await api.client.get(f"/api/postbacks/{listed['id']}", headers=AUTH)).json()
    log = shown["data"].pop("attempt_log")
    assert shown["data"] == listed
    assert [(a["attempt"], a["status_code"], a["url"]) for a in log] == [
        (1, 500, url), (2, 503, url)]
    assert log[0]["started_at"] == FIRED
    assert log[1]["started_at"] > FIRED
    assert all(a["error"] is None and a["latency_ms"] >= 0 for a in log)
    assert urlsplit(log[0]["url"]).path == "/buyer"


async def test_a_failure_to_connect_is_shown_as_the_error(db_path: Path) -> None:
    # Port 9 (discard) on the loopback: nothing listens, the connection is refused.
    text = config_text("http://127.0.0.1:9/buyer")
    config = with_server_overrides(parse_config(text, origin="views"), "test", db=str(db_path))
    async with running(config) as api:
        transaction_id = await api.click(cid=CID, pid=PID)
        await api.client.post("/api/event/trigger", json={
            "cid": CID, "event_id": "sale_completed", "transaction_id": transaction_id,
            "pid": PID, "revenue": "9"})
        await api.services.dispatcher.drain()
        [listed] = (await api.client.get("/api/postbacks", headers=AUTH)).json()["data"]
        shown = (await api.client.get(f"/api/postbacks/{listed['id']}", headers=AUTH)).json()
    [attempt] = shown["data"]["attempt_log"]
    assert attempt["status_code"] is None
    assert attempt["error"]
    assert shown["data"]["last_error"] == attempt["error"]
    assert (shown["data"]["status"], shown["data"]["attempts"]) == ("pending", 1)
