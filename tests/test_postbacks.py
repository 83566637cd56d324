"""Postbacks delivered to a real local HTTP receiver: macros, signing, retries, the log."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog

from app.config.schema import Config, parse_config, with_server_overrides
from tests.conftest import ADMIN_TOKEN, CID, PID, FakeClock, Harness, error, running, running_on
from tests.receiver import Answer, Receiver

# The rules hold on both stores.
pytestmark = pytest.mark.both_stores

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SECRET = "shh-its-a-secret"


def postback_config(receiver: Receiver, db: Path, *, delivery: str = "",
                    postbacks: str | None = None) -> Config:
    if postbacks is None:
        buyer_url = (f"{receiver.url}/buyer?tid={{transaction_id}}&conv={{conversion_id}}"
                     "&rev={revenue}&s1={sub1}&name={first_name}&a3={adv3}&event={event_id}"
                     "&fired={fired_at}")
        postbacks = f"""
[[campaigns.postbacks]]
url = "{buyer_url}"
"""
    source_url = (f"{receiver.url}/source?click={{external_clickid}}&payout={{payout}}"
                  "&tid={transaction_id}")
    text = f"""
lead_fields = ["first_name"]

[server]
admin_token = "{ADMIN_TOKEN}"

[delivery]
first_retry_seconds = 1
max_retry_seconds = 60
max_attempts = 4
{delivery}

[[sources]]
pid = "{PID}"
payout = {{ type = "percent", value = 50 }}
postback_url = "{source_url}"

[[campaigns]]
cid = "{CID}"

[[campaigns.events]]
event_id = "quote_viewed"

[[campaigns.events]]
event_id = "sale_completed"
conversion = true
{postbacks}
"""
    return with_server_overrides(parse_config(text, origin="postback test"), "test",
                                 db=str(db))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running_receiver:
        yield running_receiver


@pytest.fixture
async def api(request: pytest.FixtureRequest, receiver: Receiver,
              db_path: Path) -> AsyncIterator[Harness]:
    async with running_on(request, postback_config(receiver, db_path)) as harness:
        yield harness


async def convert(api: Harness, revenue: Any = "45", **click_fields: Any) -> tuple[str, str]:
    transaction_id = await api.click(pid=PID, **click_fields)
    response = await api.fire(transaction_id, "sale_completed", pid=PID, revenue=revenue)
    assert response.status_code == 200, response.text
    return transaction_id, response.json()["data"]["conversion_id"]


async def postbacks(api: Harness, **filters: Any) -> list[dict[str, Any]]:
    response = await api.client.get("/api/postbacks", params=filters, headers=AUTH)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["data"]
    return found


async def postback(api: Harness, postback_id: int) -> dict[str, Any]:
    response = await api.client.get(f"/api/postbacks/{postback_id}", headers=AUTH)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()["data"]
    return found


async def only_buyer(api: Harness) -> dict[str, Any]:
    [buyer] = [p for p in await postbacks(api) if p["kind"] == "buyer"]
    return await postback(api, buyer["id"])


async def test_macros_are_substituted_and_each_value_encoded_whole(
    api: Harness, receiver: Receiver
) -> None:
    transaction_id, conversion_id = await convert(
        api, revenue=45, sub1="a&b=c/d?e#f", first_name="Zoë O'Neil",
        external_clickid="ext 1+2")
    await api.services.dispatcher.drain()

    [buyer] = receiver.of("/buyer")
    assert buyer.method == "GET"
    assert buyer.query == {
        "tid": [transaction_id], "conv": [conversion_id], "rev": ["45.00"],
        "s1": ["a&b=c/d?e#f"], "name": ["Zoë O'Neil"], "a3": [""],
        "event": ["sale_completed"], "fired": ["2026-11-28T12:00:00.000000Z"],
    }
    [source] = receiver.of("/source")
    assert source.query == {"click": ["ext 1+2"], "payout": ["22.50"], "tid": [transaction_id]}


async def test_postback_of_a_non_conversion_shows_conversion_id_as_empty_string(
    receiver: Receiver, db_path: Path
) -> None:
    config = postback_config(receiver, db_path, postbacks=f"""
[[campaigns.postbacks]]
url = "{receiver.url}/viewed?conv={{conversion_id}}"
events = ["quote_viewed"]
""")
    async with running(config) as api:
        transaction_id = await api.click(pid=PID)
        assert (await api.fire(transaction_id, "quote_viewed", pid=PID)).status_code == 200
        [listed] = await postbacks(api)
        shown = await postback(api, listed["id"])
        [in_view] = (await api.view(transaction_id))["postbacks"]
        assert [listed["conversion_id"], shown["conversion_id"],
                in_view["conversion_id"]] == ["", "", ""]


@pytest.mark.parametrize(("revenue", "rendered", "payout"), [
    ("45", "45.00", "22.50"), ("0.0125", "0.0125", "0.00625"), ("1e3", "1000.00", "500.00"),
    ("19.9", "19.90", "9.95"),
])
async def test_money_renders_with_at_least_two_decimals_exactly(
    api: Harness, receiver: Receiver, revenue: str, rendered: str, payout: str
) -> None:
    await convert(api, revenue=revenue)
    await api.services.dispatcher.drain()
    assert receiver.of("/buyer")[0].query["rev"] == [rendered]
    assert receiver.of("/source")[0].query["payout"] == [payout]


async def test_post_postback_carries_every_macro_as_json_and_a_verifiable_signature(
    receiver: Receiver, db_path: Path
) -> None:
    config = postback_config(receiver, db_path, postbacks=f"""
[[campaigns.postbacks]]
url = "{receiver.url}/signed?tid={{transaction_id}}"
method = "POST"
secret = "{SECRET}"
""")
    async with running(config) as api:
        transaction_id, conversion_id = await convert(api, revenue="45.10", sub2="x")
        await api.services.dispatcher.drain()
    [request] = receiver.of("/signed")
    assert request.method == "POST"
    assert request.headers["content-type"] == "application/json"
    body = json.loads(request.body)
    assert {key: body[key] for key in ("cid", "pid", "event_id", "transaction_id",
                                       "conversion_id", "revenue", "payout", "conversion",
                                       "sub2")} == {
        "cid": CID, "pid": PID, "event_id": "sale_completed",
        "transaction_id": transaction_id, "conversion_id": conversion_id,
        "revenue": "45.10", "payout": "22.55", "conversion": "1", "sub2": "x"}
    # The manual's recipe (docs/postbacks.md), written out independently of the service's code.
    timestamp = request.headers["x-postback-timestamp"]
    expected = "sha256=" + hmac.new(SECRET.encode(), f"{timestamp}.".encode() + request.body,
                                    hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, request.headers["x-postback-signature"])
    assert int(timestamp) == int(datetime(2026, 11, 28, 12, tzinfo=UTC).timestamp())


async def test_get_postback_signature_covers_the_url_as_received(
    receiver: Receiver, db_path: Path
) -> None:
    config = postback_config(receiver, db_path, postbacks=f"""
[[campaigns.postbacks]]
url = "{receiver.url}/signed-get?s1={{sub1}}&rev={{revenue}}"
secret = "{SECRET}"
""")
    async with running(config) as api:
        await convert(api, sub1="a b&c")
        await api.services.dispatcher.drain()
    [request] = receiver.of("/signed-get")
    timestamp = request.headers["x-postback-timestamp"]
    expected = "sha256=" + hmac.new(SECRET.encode(), f"{timestamp}.{request.url}".encode(),
                                    hashlib.sha256).hexdigest()
    assert request.headers["x-postback-signature"] == expected


async def test_unsigned_postbacks_carry_no_signature(api: Harness, receiver: Receiver) -> None:
    await convert(api)
    await api.services.dispatcher.drain()
    assert "x-postback-signature" not in receiver.of("/buyer")[0].headers


async def test_5xx_is_retried_until_delivered_once(api: Harness, receiver: Receiver) -> None:
    receiver.script("/buyer", Answer(500), Answer(502, body="bad gateway"))
    await convert(api)
    dispatcher = api.services.dispatcher
    await dispatcher.drain()
    buyer = await only_buyer(api)
    assert (buyer["status"], buyer["attempts"], buyer["last_status_code"]) == ("pending", 1, 500)
    await dispatcher.drain()  # not due yet: nothing is sent
    assert len(receiver.of("/buyer")) == 1

    for _ in range(2):
        api.clock.advance(120)
        await dispatcher.drain()
    buyer = await only_buyer(api)
    assert (buyer["status"], buyer["attempts"]) == ("delivered", 3)
    assert [a["status_code"] for a in buyer["attempt_log"]] == [500, 502, 200]
    assert buyer["attempt_log"][1]["response"] == "bad gateway"
    assert buyer["attempt_log"][0]["url"] == receiver.of("/buyer")[0].url

    api.clock.advance(3600)
    await dispatcher.drain()
    assert len(receiver.of("/buyer")) == 3  # delivered: never sent again
    delivered = await postbacks(api, status="delivered")
    assert [p["id"] for p in delivered if p["kind"] == "buyer"] == [buyer["id"]]


async def test_4xx_fails_at_once(api: Harness, receiver: Receiver) -> None:
    receiver.script("/buyer", Answer(404, body="no such offer"))
    await convert(api)
    await api.services.dispatcher.drain()
    api.clock.advance(3600)
    await api.services.dispatcher.drain()
    buyer = await only_buyer(api)
    assert (buyer["status"], buyer["attempts"], buyer["last_status_code"]) == ("failed", 1, 404)
    assert len(receiver.of("/buyer")) == 1


@pytest.mark.parametrize("status", [408, 429, 503])
async def test_other_passing_answers_are_retried(
    api: Harness, receiver: Receiver, status: int
) -> None:
    receiver.script("/buyer", Answer(status))
    await convert(api)
    await api.services.dispatcher.drain()
    assert (await only_buyer(api))["status"] == "pending"


async def test_timeout_is_retried(receiver: Receiver, db_path: Path) -> None:
    receiver.script("/buyer", Answer(delay=3))
    config = postback_config(receiver, db_path, delivery="timeout_seconds = 0.2")
    async with running(config) as api:
        await convert(api)
        await api.services.dispatcher.drain()
        buyer = await only_buyer(api)
        assert buyer["status"] == "pending"
        assert buyer["last_error"].startswith("timeout")
        assert buyer["attempt_log"][0]["status_code"] is None
        api.clock.advance(120)
        await api.services.dispatcher.drain()
        assert (await only_buyer(api))["status"] == "delivered"


async def test_unreachable_receiver_is_retried(receiver: Receiver, db_path: Path) -> None:
    config = postback_config(receiver, db_path, postbacks="""
[[campaigns.postbacks]]
url = "http://127.0.0.1:9/closed"
""")
    async with running(config) as api:
        await convert(api)
        await api.services.dispatcher.drain()
        buyer = await only_buyer(api)
        assert buyer["status"] == "pending"
        assert buyer["last_error"].startswith("ConnectError")


async def test_last_attempt_leaves_the_postback_failed(api: Harness, receiver: Receiver) -> None:
    receiver.script("/buyer", *[Answer(503)] * 10)
    await convert(api)
    for _ in range(6):
        await api.services.dispatcher.drain()
        api.clock.advance(120)
    buyer = await only_buyer(api)
    assert (buyer["status"], buyer["attempts"], buyer["last_status_code"]) == ("failed", 4, 503)
    assert buyer["next_attempt_at"] is None
    assert len(receiver.of("/buyer")) == 4
    failed = await postbacks(api, status="failed", cid=CID)
    assert buyer["id"] in [p["id"] for p in failed]


async def test_retry_waits_grow_from_the_first_delay_with_jitter(
    api: Harness, receiver: Receiver
) -> None:
    receiver.script("/buyer", *[Answer(500)] * 3)
    await convert(api)
    waits = []
    for _ in range(3):
        await api.services.dispatcher.drain()
        buyer = await only_buyer(api)
        due = datetime.fromisoformat(buyer["next_attempt_at"].replace("Z", "+00:00"))
        waits.append((due - api.clock.now()).total_seconds())
        api.clock.advance(waits[-1])
    for wait, nominal in zip(waits, (1, 4, 16), strict=True):
        assert 0.75 * nominal <= wait <= 1.25 * nominal


async def test_retry_after_is_honoured(api: Harness, receiver: Receiver) -> None:
    receiver.script("/buyer", Answer(429, headers={"Retry-After": "50"}))
    await convert(api)
    await api.services.dispatcher.drain()
    due = datetime.fromisoformat((await only_buyer(api))["next_attempt_at"].replace("Z",
                                                                                   "+00:00"))
    assert (due - api.clock.now()).total_seconds() == 50


async def test_operator_resends_a_failed_postback(api: Harness, receiver: Receiver) -> None:
    receiver.script("/buyer", Answer(400))
    await convert(api)
    await api.services.dispatcher.drain()
    buyer = await only_buyer(api)
    assert buyer["status"] == "failed"

    path = f"/api/postbacks/{buyer['id']}/retry"
    assert (await api.client.post(path)).status_code == 401
    response = await api.client.post(path, headers=AUTH)
    assert response.status_code == 202
    assert response.json()["data"]["status"] == "pending"
    await api.services.dispatcher.drain()
    buyer = await only_buyer(api)
    assert (buyer["status"], buyer["attempts"]) == ("delivered", 2)

    again = await api.client.post(path, headers=AUTH)
    assert again.json() == error(409, "Postback already delivered")
    missing = await api.client.post("/api/postbacks/999999/retry", headers=AUTH)
    assert missing.json() == error(404, "Postback not found")


async def test_restart_in_the_middle_of_retries_resumes_them(
    receiver: Receiver, db_path: Path
) -> None:
    config = postback_config(receiver, db_path)
    clock = FakeClock()
    receiver.script("/buyer", Answer(500))
    async with running(config, clock=clock) as api:
        await convert(api)
        await api.services.dispatcher.drain()
    assert len(receiver.of("/buyer")) == 1
    clock.advance(120)
    async with running(config, clock=clock) as api:
        await api.services.dispatcher.drain()
        buyer = await only_buyer(api)
    assert (buyer["status"], buyer["attempts"]) == ("delivered", 2)
    assert len(receiver.of("/buyer")) == 2


async def test_slow_receiver_does_not_slow_the_event_endpoint(
    receiver: Receiver, db_path: Path
) -> None:
    receiver.script("/source", *[Answer(hang=True)] * 50)
    config = postback_config(receiver, db_path, postbacks="", delivery="""
timeout_seconds = 60
per_host = 64
""")
    async with running(config) as api:
        transaction_ids = [(await convert(api))[0] for _ in range(50)]
        for _ in range(500):  # the dispatcher picks them up in the background
            if receiver.hanging == 50:
                break
            await asyncio.sleep(0.01)
        assert receiver.hanging == 50
        # While 50 deliveries hang, events keep being answered.
        answers = await asyncio.gather(*(
            api.fire(transaction_id, "quote_viewed", pid=PID)
            for transaction_id in transaction_ids))
        assert [answer.status_code for answer in answers] == [200] * 50
        assert receiver.hanging == 50
        receiver.release()
        await api.services.dispatcher.drain()
        assert {p["status"] for p in await postbacks(api, limit=500)} == {"delivered"}


async def test_concurrency_per_host_is_bounded(receiver: Receiver, db_path: Path) -> None:
    receiver.script("/source", *[Answer(hang=True)] * 10)
    config = postback_config(receiver, db_path, postbacks="", delivery="per_host = 3")
    async with running(config) as api:
        for _ in range(10):
            await convert(api)
        for _ in range(100):
            if receiver.hanging == 3:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        assert receiver.hanging == 3
        assert api.services.dispatcher.in_flight == 3
        receiver.release()
        await api.services.dispatcher.drain()
        assert len(receiver.of("/source")) == 10


async def test_only_configured_events_owe_postbacks(receiver: Receiver, db_path: Path) -> None:
    config = postback_config(receiver, db_path, postbacks=f"""
[[campaigns.postbacks]]
url = "{receiver.url}/views?tid={{transaction_id}}"
events = ["quote_viewed"]
""")
    async with running(config) as api:
        organic = await api.click()
        await api.fire(organic, "sale_completed", revenue=5)  # organic: no source postback
        await api.fire(organic, "quote_viewed")
        await api.services.dispatcher.drain()
        view = await api.view(organic)
    assert receiver.paths() == ["/views"]
    assert [(p["kind"], p["event_id"], p["status"]) for p in view["postbacks"]] == [
        ("buyer", "quote_viewed", "delivered")]


async def test_100_identical_conversions_owe_one_set_of_postbacks(
    api: Harness, receiver: Receiver
) -> None:
    transaction_id = await api.click(pid=PID)
    await asyncio.gather(*(api.fire(transaction_id, "sale_completed", pid=PID, revenue=5)
                           for _ in range(100)))
    await api.services.dispatcher.drain()
    assert sorted(receiver.paths()) == ["/buyer", "/source"]


async def test_each_attempt_is_logged(api: Harness, receiver: Receiver) -> None:
    receiver.script("/buyer", Answer(500))
    await convert(api)
    with structlog.testing.capture_logs() as logs:
        await api.services.dispatcher.drain()
    attempts = [entry for entry in logs if entry["event"] == "postback_attempt"]
    assert sorted((entry["status"], entry["outcome"]) for entry in attempts) == [
        (200, "delivered"), (500, "pending")]
    for entry in attempts:
        assert entry["host"] == receiver.url.removeprefix("http://")
        assert entry["attempt"] == 1
        assert isinstance(entry["postback_id"], int)
        assert entry["latency_ms"] >= 0


async def test_postback_list_filters_and_validates(api: Harness, receiver: Receiver) -> None:
    receiver.script("/buyer", Answer(404))
    await convert(api)
    await api.services.dispatcher.drain()
    assert len(await postbacks(api)) == 2
    assert len(await postbacks(api, limit=1)) == 1
    assert await postbacks(api, cid="cmp_other") == []
    bad = await api.client.get("/api/postbacks", params={"status": "lost"}, headers=AUTH)
    assert bad.status_code == 400
    assert bad.json()["message"] == "Invalid status"
    too_many = await api.client.get("/api/postbacks", params={"limit": "5000"}, headers=AUTH)
    assert too_many.json()["message"] == "Invalid limit"
    assert (await api.client.get("/api/postbacks")).status_code == 401
    assert (await api.client.get("/api/postbacks/424242", headers=AUTH)).json() == error(
        404, "Postback not found")


async def test_delivered_postbacks_are_not_sent_again_after_a_restart(
    receiver: Receiver, db_path: Path
) -> None:
    config = postback_config(receiver, db_path)
    clock = FakeClock()
    async with running(config, clock=clock) as api:
        await convert(api)
        await api.services.dispatcher.drain()
    clock.advance(86_400)
    async with running(config, clock=clock) as api:
        await api.services.dispatcher.drain()
    assert sorted(receiver.paths()) == ["/buyer", "/source"]
