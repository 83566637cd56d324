"""What must not happen, however the rest of a request looks.

No source postback and no payout for an event that is not a conversion, a receiver's
short Retry-After never shortens the backoff, and a page on an origin the campaign does
not allow learns nothing but 403, whatever else its request gets wrong.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from app.config.schema import parse_config, with_server_overrides
from tests.conftest import ADMIN_TOKEN, Harness, error, running
from tests.receiver import Answer, Receiver

CID = "cmp_pages"
PID = "src_paid"
QUOTES = "https://quotes.example.com"
EVIL = "https://evil.example.org"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


BUYER_QUERY = "payout={payout}&rev={revenue}&conv={conversion}&st={status}&why={reason}"


def config(receiver: Receiver, db: Path) -> str:
    return f"""
[server]
admin_token = "{ADMIN_TOKEN}"

[delivery]
first_retry_seconds = 30
max_retry_seconds = 600

[[sources]]
pid = "{PID}"
payout = {{ type = "percent", value = 50 }}
postback_url = "{receiver.url}/source?payout={{payout}}&event={{event_id}}"

[[sources]]
pid = "src_off"
active = false

[[campaigns]]
cid = "{CID}"
allowed_origins = ["{QUOTES}"]

[[campaigns.events]]
event_id = "quote_viewed"

[[campaigns.events]]
event_id = "sale_completed"
conversion = true

[[campaigns.postbacks]]
url = "{receiver.url}/buyer?{BUYER_QUERY}"
events = ["quote_viewed", "sale_completed"]
"""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running_receiver:
        yield running_receiver


@pytest.fixture
async def api(receiver: Receiver, db_path: Path) -> AsyncIterator[Harness]:
    parsed = parse_config(config(receiver, db_path), origin="must-not")
    async with running(with_server_overrides(parsed, "test", db=str(db_path))) as harness:
        yield harness


async def click(api: Harness) -> str:
    return await api.click(cid=CID, pid=PID)


async def fire(api: Harness, transaction_id: str, event_id: str, **fields: Any) -> Any:
    body = {"cid": CID, "event_id": event_id, "transaction_id": transaction_id, "pid": PID,
            **fields}
    return await api.client.post("/api/event/trigger", json=body)


async def kinds(api: Harness) -> list[tuple[str, str]]:
    response = await api.client.get("/api/postbacks", headers=AUTH)
    return sorted((p["kind"], p["event_id"]) for p in response.json()["data"])


async def test_a_non_conversion_owes_no_source_postback_even_with_revenue(
    api: Harness, receiver: Receiver
) -> None:
    transaction_id = await click(api)
    response = await fire(api, transaction_id, "quote_viewed", revenue="40")
    assert response.status_code == 200, response.text
    assert await kinds(api) == [("buyer", "quote_viewed")]
    await api.services.dispatcher.drain()
    assert receiver.of("/source") == []
    [buyer] = receiver.of("/buyer")
    # No payout is owed on it, and it has no status; the revenue it reported is shown.
    assert buyer.query == {"payout": [""], "rev": ["40.00"], "conv": ["0"], "st": [""],
                           "why": [""]}
    [fired] = (await api.view(transaction_id))["events"]
    assert (fired["conversion"], fired["payout"], fired["conversion_id"]) == (False, None, "")
    # Nor is it converted, approved or decided; its ids are its columns, not its fields.
    assert (fired["converted_at"], fired["status"], fired["decided_at"]) == (None, None, None)
    assert (fired["pid"], fired["fields"]) == (PID, {"revenue": "40.00"})


async def test_a_conversion_owes_both_with_the_payout(api: Harness, receiver: Receiver) -> None:
    transaction_id = await click(api)
    assert (await fire(api, transaction_id, "sale_completed", revenue="40")).status_code == 200
    assert await kinds(api) == [("buyer", "sale_completed"), ("source", "sale_completed")]
    await api.services.dispatcher.drain()
    assert receiver.of("/source")[0].query == {"payout": ["20.00"], "event": ["sale_completed"]}
    # A reason belongs to a change of status only: none as the conversion fires.
    assert receiver.of("/buyer")[0].query == {"payout": ["20.00"], "rev": ["40.00"],
                                              "conv": ["1"], "st": ["approved"], "why": [""]}


async def test_a_short_retry_after_does_not_shorten_the_backoff(
    api: Harness, receiver: Receiver
) -> None:
    receiver.script("/buyer", Answer(503, headers={"Retry-After": "2"}))
    transaction_id = await click(api)
    assert (await fire(api, transaction_id, "quote_viewed")).status_code == 200
    await api.services.dispatcher.drain()
    response = await api.client.get("/api/postbacks", headers=AUTH)
    [buyer] = response.json()["data"]
    assert (buyer["status"], buyer["attempts"]) == ("pending", 1)
    due = datetime.fromisoformat(buyer["next_attempt_at"].replace("Z", "+00:00"))
    wait = (due - api.clock.now()).total_seconds()
    # first_retry_seconds = 30, spread over 75-125 %: never the receiver's 2 s.
    assert 22.5 <= wait <= 37.5


async def test_a_long_retry_after_within_the_cap_lengthens_it(
    api: Harness, receiver: Receiver
) -> None:
    receiver.script("/buyer", Answer(429, headers={"Retry-After": "500"}))
    transaction_id = await click(api)
    assert (await fire(api, transaction_id, "quote_viewed")).status_code == 200
    await api.services.dispatcher.drain()
    [buyer] = (await api.client.get("/api/postbacks", headers=AUTH)).json()["data"]
    due = datetime.fromisoformat(buyer["next_attempt_at"].replace("Z", "+00:00"))
    assert (due - api.clock.now()).total_seconds() == 500


FORBIDDEN = error(403, "Origin not allowed for this campaign")
# Each is wrong in one way that a request from an allowed page would be told about.
WRONG_AFTER_THE_CAMPAIGN = [
    {"event_id": "no_such_event"},
    {"pid": "src_unknown"},
    {"pid": "src_off"},
    {"transaction_id": "txn_unknown"},
    {"event_id": "sale_completed"},  # a conversion without revenue
]


@pytest.mark.parametrize("wrong", WRONG_AFTER_THE_CAMPAIGN)
async def test_a_disallowed_origin_gets_403_whatever_else_is_wrong(
    api: Harness, wrong: dict[str, str]
) -> None:
    transaction_id = await click(api)
    body = {"cid": CID, "event_id": "quote_viewed", "transaction_id": transaction_id,
            "pid": PID, **wrong}
    allowed = await api.client.post("/api/event/trigger", json=body,
                                    headers={"Origin": QUOTES})
    assert allowed.status_code in (400, 403)
    assert allowed.json() != FORBIDDEN
    for path in ("/api/event/trigger", f"/api/event/{CID}"):
        refused = await api.client.post(path, json=body, headers={"Origin": EVIL})
        assert refused.json() == FORBIDDEN
    query = await api.client.get("/api/event/trigger", params=body, headers={"Origin": EVIL})
    assert query.json() == FORBIDDEN
    assert (await api.view(transaction_id))["events"] == []


async def test_a_disallowed_origin_gets_403_on_a_locked_or_fired_event(api: Harness) -> None:
    transaction_id = await click(api)
    assert (await fire(api, transaction_id, "quote_viewed")).status_code == 200
    body = {"cid": CID, "event_id": "quote_viewed", "transaction_id": transaction_id,
            "pid": PID}
    for advance in (0, 3):  # inside the window, then a duplicate
        api.clock.advance(advance)
        refused = await api.client.post("/api/event/trigger", json=body,
                                        headers={"Origin": EVIL})
        assert refused.json() == FORBIDDEN
    # The refused requests opened no window: an allowed page gets the duplicate at once.
    allowed = await api.client.post("/api/event/trigger", json=body, headers={"Origin": QUOTES})
    assert allowed.json() == error(400, "Duplicate event for this transaction_id")
