"""How each way a delivery can go wrong is recorded and what it does to the postback.

A receiver that cannot be reached or times out is tried again; a request that can never
be sent as it stands is failed at once; a bug in the sending is logged with the postback's
id and tried again. The answer's head is kept, whatever size its chunks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from app.config.schema import parse_config, with_server_overrides
from app.postbacks.retry import outcome_of_status
from tests.conftest import ADMIN_TOKEN, Harness, running
from tests.receiver import Answer, Receiver

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CID = "cmp_delivery"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running_receiver:
        yield running_receiver


@pytest.fixture
async def api(receiver: Receiver, db_path: Path) -> AsyncIterator[Harness]:
    text = f"""
[server]
admin_token = "{ADMIN_TOKEN}"

[[campaigns]]
cid = "{CID}"

[[campaigns.events]]
event_id = "viewed"

[[campaigns.events]]
event_id = "bought"
conversion = true

[[campaigns.postbacks]]
url = "{receiver.url}/get"
events = ["viewed"]

[[campaigns.postbacks]]
url = "{receiver.url}/post"
events = ["bought"]
method = "POST"
"""
    config = with_server_overrides(parse_config(text, origin="delivery"), "test",
                                   db=str(db_path))
    async with running(config) as harness:
        yield harness


async def fire(api: Harness, event_id: str) -> None:
    transaction_id = await api.click(cid=CID)
    body = {"cid": CID, "event_id": event_id, "transaction_id": transaction_id,
            "revenue": "1"}
    assert (await api.client.post("/api/event/trigger", json=body)).status_code == 200


async def only_postback(api: Harness) -> dict[str, Any]:
    [listed] = (await api.client.get("/api/postbacks", headers=AUTH)).json()["data"]
    shown: dict[str, Any] = (await api.client.get(f"/api/postbacks/{listed['id']}",
                                                  headers=AUTH)).json()["data"]
    return shown


def sending_raises(api: Harness, monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    client = api.services.dispatcher._client
    assert client is not None

    def stream(*args: Any, **kwargs: Any) -> Any:
        raise error

    monkeypatch.setattr(client, "stream", stream)


@pytest.mark.parametrize(("error", "recorded", "status"), [
    (httpx.ReadTimeout("slow"), "timeout: ReadTimeout", "pending"),
    (httpx.ConnectError("refused"), "ConnectError: refused", "pending"),
    (httpx.UnsupportedProtocol("no such scheme"), "UnsupportedProtocol: no such scheme",
     "failed"),
])
async def test_a_delivery_error_is_recorded_and_decides_the_next_step(
    api: Harness, monkeypatch: pytest.MonkeyPatch, error: Exception, recorded: str,
    status: str
) -> None:
    await fire(api, "viewed")
    sending_raises(api, monkeypatch, error)
    await api.services.dispatcher.drain()
    postback = await only_postback(api)
    assert (postback["status"], postback["attempts"], postback["last_error"]) == (
        status, 1, recorded)
    assert postback["attempt_log"][0]["error"] == recorded


async def test_a_bug_in_sending_is_logged_and_retried(
    api: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    await fire(api, "viewed")
    sending_raises(api, monkeypatch, RuntimeError("a bug"))
    with structlog.testing.capture_logs() as logs:
        await api.services.dispatcher.drain()
    postback = await only_postback(api)
    assert (postback["status"], postback["last_error"]) == ("pending", "RuntimeError: a bug")
    [crash] = [entry for entry in logs if entry["event"] == "postback_attempt_crashed"]
    assert crash["postback_id"] == postback["id"]
    assert crash["log_level"] == "error"


async def test_only_a_post_postback_says_its_body_is_json(
    api: Harness, receiver: Receiver
) -> None:
    await fire(api, "viewed")
    await fire(api, "bought")
    await api.services.dispatcher.drain()
    [get] = receiver.of("/get")
    [post] = receiver.of("/post")
    assert "content-type" not in {name.lower() for name in get.headers}
    assert {name.lower(): value for name, value in post.headers.items()}[
        "content-type"] == "application/json"


async def test_the_first_kilobyte_of_the_answer_is_kept(
    api: Harness, receiver: Receiver
) -> None:
    body = "".join(f"{i:05d}" for i in range(2000))  # 10,000 characters, many chunks
    receiver.script("/get", Answer(200, body=body))
    await fire(api, "viewed")
    await api.services.dispatcher.drain()
    [attempt] = (await only_postback(api))["attempt_log"]
    assert attempt["response"] == body[:1024]


async def test_a_short_answer_is_kept_whole(api: Harness, receiver: Receiver) -> None:
    receiver.script("/get", Answer(200, body="thanks é"))
    await fire(api, "viewed")
    await api.services.dispatcher.drain()
    [attempt] = (await only_postback(api))["attempt_log"]
    assert attempt["response"] == "thanks é"


@pytest.mark.parametrize(("status", "outcome"), [
    (199, "failed"), (200, "delivered"), (299, "delivered"), (300, "failed"),
    (407, "failed"), (408, "retry"), (428, "failed"), (429, "retry"), (430, "failed"),
    (499, "failed"), (500, "retry")])
def test_the_outcome_of_each_status_at_the_edges(status: int, outcome: str) -> None:
    assert outcome_of_status(status) == outcome
