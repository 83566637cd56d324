"""POST /api/endpoints/{name}/test: a sample conversion rendered through the endpoint's
template, signed as a delivery, sent once, both sides shown; nothing of it stored.

Served through the app with a real local receiver, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgspec
import pytest
from starlette.routing import Match

from app.config.endpoints import endpoints_of
from app.config.schema import Config
from app.postbacks.probe import sample_event
from app.postbacks.signing import signature
from app.routes import routes
from storage.endpoints import endpoint_of
from tests.conftest import BACKENDS, CID, PID, Harness, error, running, running_on
from tests.receiver import Answer, Receiver
from tests.test_postbacks import AUTH, convert, postback_config

SECRET = "s3cret-never-shown"
POSTBACKS = f"""
[[campaigns.postbacks]]
url = "{{url}}/buyer?tid={{{{transaction_id}}}}&conv={{{{conversion_id}}}}&rev={{{{revenue}}}}\
&st={{{{status}}}}&ev={{{{event_id}}}}&name={{{{first_name}}}}"

[[campaigns.postbacks]]
name = "hook"
url = "{{url}}/hook"
method = "POST"
secret = "{SECRET}"

[[campaigns.postbacks]]
name = "nowhere"
url = "http://127.0.0.1:9/pb?t={{{{transaction_id}}}}"
"""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running_receiver:
        yield running_receiver


def config(receiver: Receiver, db_path: Path) -> Config:
    return postback_config(receiver, db_path, postbacks=POSTBACKS.format(url=receiver.url))


@pytest.fixture(params=BACKENDS)
async def api(request: pytest.FixtureRequest, receiver: Receiver,
              db_path: Path) -> AsyncIterator[Harness]:
    async with running_on(request, config(receiver, db_path)) as harness:
        yield harness


def buyer(receiver: Receiver) -> str:
    """The unnamed buyer entry's name: its host and path, a slash included."""
    return endpoint_of(f"{receiver.url}/buyer")


async def probed(api: Harness, name: str) -> dict[str, Any]:
    response = await api.client.post(f"/api/endpoints/{quote(name)}/test", headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["message"] == "Test request sent"
    data: dict[str, Any] = response.json()["data"]
    return data


async def nothing_stored(api: Harness) -> None:
    for table in ("postbacks", "postback_attempts", "endpoints", "endpoint_hours"):
        assert await api.query(f"SELECT count(*) FROM {table}") == [(0,)], table


async def test_the_answer_shows_the_request_sent_and_the_receivers_scripted_answer(
    api: Harness, receiver: Receiver
) -> None:
    receiver.script("/buyer", Answer(202, body="accepted", headers={"X-Seen": "yes"}))
    data = await probed(api, buyer(receiver))
    [received] = receiver.of("/buyer")
    sent = data["request"]
    assert (sent["method"], sent["url"], sent["body"]) == ("GET", received.url, None)
    test_id = received.query["tid"][0]
    assert test_id.startswith("test-")
    assert received.query == {"tid": [test_id], "conv": [test_id], "rev": ["1.00"],
                              "st": ["approved"], "ev": ["sale_completed"], "name": [""]}
    assert sent["headers"]["User-Agent"] == received.headers["user-agent"]
    answer = data["response"]
    assert (answer["status"], answer["body"]) == (202, "accepted")
    assert answer["headers"]["x-seen"] == "yes"
    assert "error" not in data
    assert data["latency_ms"] >= 0
    await nothing_stored(api)


async def test_a_failing_answer_changes_nothing_of_the_endpoints_health(
    api: Harness, receiver: Receiver
) -> None:
    receiver.script("/buyer", Answer(410, body="gone"))
    data = await probed(api, buyer(receiver))
    assert data["response"]["status"] == 410
    await nothing_stored(api)
    listed = await api.client.get("/api/endpoints", headers=AUTH)
    [view] = [view for view in listed.json()["data"] if view["name"] == buyer(receiver)]
    assert (view["state"], view["consecutive_failures"], view["attempts_24h"]) == (
        "active", 0, 0)


async def test_an_unreachable_endpoint_answers_200_with_the_transport_error(
    api: Harness,
) -> None:
    data = await probed(api, "nowhere")
    assert data["request"]["url"].startswith("http://127.0.0.1:9/pb?t=test-")
    assert data["error"].startswith("ConnectError: ")
    assert "response" not in data
    await nothing_stored(api)


async def test_a_post_template_shows_its_json_body_signed_as_a_delivery(
    api: Harness, receiver: Receiver
) -> None:
    response = await api.client.post("/api/endpoints/hook/test", headers=AUTH)
    assert SECRET not in response.text
    data = response.json()["data"]
    [received] = receiver.of("/hook")
    sent = data["request"]
    assert sent["body"] == received.body.decode()
    body = json.loads(sent["body"])
    assert body["transaction_id"].startswith("test-")
    assert {name: body[name] for name in ("cid", "pid", "event_id", "revenue", "payout",
                                          "status", "conversion")} == {
        "cid": CID, "pid": "organic", "event_id": "sale_completed", "revenue": "1.00",
        "payout": "0.50", "status": "approved", "conversion": "1"}
    stamp = received.headers["x-postback-timestamp"]
    assert received.headers["x-postback-signature"] == signature(SECRET, stamp, received.body)
    assert sent["headers"]["X-Postback-Signature"] == received.headers["x-postback-signature"]
    assert sent["headers"]["Content-Type"] == "application/json"
    await nothing_stored(api)


async def test_a_source_endpoint_is_sent_its_own_pid_and_the_first_campaign(
    api: Harness, receiver: Receiver
) -> None:
    name = endpoint_of(f"{receiver.url}/source")
    await probed(api, name)
    [received] = receiver.of("/source")
    assert received.query["payout"] == ["0.50"]
    assert received.query["click"] == [""]  # lead fields are empty
    await nothing_stored(api)
    event = sample_event(endpoints_of(api.services.config)[name], api.services.config, "t")
    assert (event.pid, event.cid, event.event_id) == (PID, CID, "sale_completed")


async def test_an_answer_over_2_kb_is_cut_and_a_redirect_is_not_followed(
    api: Harness, receiver: Receiver
) -> None:
    receiver.script("/buyer", Answer(200, body="é" * 3000))
    cut = await probed(api, buyer(receiver))
    assert cut["response"]["body"] == "é" * 1024
    receiver.script("/buyer", Answer(302, headers={"Location": f"{receiver.url}/elsewhere"}))
    moved = await probed(api, buyer(receiver))
    assert moved["response"]["status"] == 302
    assert receiver.paths() == ["/buyer", "/buyer"]


async def test_unknown_names_and_missing_tokens_are_refused(
    api: Harness, receiver: Receiver, tmp_path: Path
) -> None:
    unknown = await api.client.post("/api/endpoints/no.example/pb/test", headers=AUTH)
    assert (unknown.status_code, unknown.json()) == (404, error(404, "Endpoint not found"))
    bare = await api.client.post("/api/endpoints/hook/test")
    assert bare.status_code == 401
    assert receiver.paths() == []
    served = config(receiver, tmp_path / "tokenless.db")
    tokenless_config = msgspec.structs.replace(
        served, server=msgspec.structs.replace(served.server, admin_token=None))
    async with running(tokenless_config) as tokenless:
        closed = await tokenless.client.post("/api/endpoints/hook/test", headers=AUTH)
        assert closed.status_code == 404


async def test_a_test_request_carries_the_user_agent_of_a_delivery(
    receiver: Receiver, db_path: Path
) -> None:
    async with running(config(receiver, db_path)) as api:
        await convert(api)
        await api.services.dispatcher.drain()
        await probed(api, buyer(receiver))
    delivered, test = receiver.of("/buyer")
    assert not delivered.query["tid"][0].startswith("test-")
    assert test.headers["user-agent"] == delivered.headers["user-agent"]


def test_a_name_with_slashes_routes_to_the_test_action() -> None:
    scope = {"type": "http", "method": "POST", "path": "/api/endpoints/a.example/pb/test"}
    found = [(route, child) for route in routes()
             for match, child in [route.matches(scope)] if match is Match.FULL]
    [(route, child)] = found
    assert route.path == "/api/endpoints/{name:path}/test"
    assert child["path_params"] == {"name": "a.example/pb"}
