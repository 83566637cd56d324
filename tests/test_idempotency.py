"""Idempotency-Key: a retry gets the stored answer, byte for byte, and changes nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from app.config.schema import Config
from tests.conftest import CID, PID, Harness, error, running, running_on, with_campaign
from tests.conftest import make_config as base_config
from tests.test_metrics import scrape, value

# The rules hold on both stores.
pytestmark = pytest.mark.both_stores


def make_config(db_path: Path) -> Config:
    """The test config, with a postback to the source on every conversion."""
    config = base_config(db_path)
    sources = [msgspec.structs.replace(source, postback_url="http://127.0.0.1:9/s?c={cid}")
               if source.pid == PID else source for source in config.sources]
    return msgspec.structs.replace(config, sources=sources)


@pytest.fixture
async def api(request: pytest.FixtureRequest, db_path: Path) -> AsyncIterator[Harness]:
    async with running_on(request, make_config(db_path)) as harness:
        yield harness


def keyed(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


async def sale(api: Harness, transaction_id: str, key: str, **fields: Any) -> httpx.Response:
    body = {"cid": CID, "event_id": "sale_completed", "transaction_id": transaction_id,
            "pid": PID, "revenue": "45.00", **fields}
    return await api.client.post("/api/event/trigger", json=body, headers=keyed(key))


async def counts(api: Harness, transaction_id: str) -> tuple[int, int]:
    [(events,)] = await api.query("SELECT count(*) FROM events WHERE transaction_id = ?",
                                  transaction_id)
    [(postbacks,)] = await api.query(
        "SELECT count(*) FROM postbacks WHERE transaction_id = ?", transaction_id)
    return events, postbacks


async def test_a_retry_gets_the_stored_answer_byte_for_byte(db_path: Path) -> None:
    config = make_config(db_path)
    async with running(config) as api:
        transaction_id = await api.click(pid=PID)
        first = await sale(api, transaction_id, "k-1")
        assert first.status_code == 200
        assert "idempotent-replayed" not in first.headers
        api.clock.advance(60)  # past the lock window and the duplicate check alike
        again = await sale(api, transaction_id, "k-1")
        assert (again.status_code, again.content) == (200, first.content)
        assert again.headers["idempotent-replayed"] == "true"
        # Neither a second event nor a second postback.
        assert await counts(api, transaction_id) == (1, 1)
        assert (await api.query("SELECT count(*) FROM idempotency_keys")) == [(1,)]


async def test_a_replay_never_opens_a_lock_window(api: Harness) -> None:
    transaction_id = await api.click()
    body = {"cid": CID, "event_id": "form_step", "transaction_id": transaction_id}
    first = await api.client.post("/api/event/trigger", json=body, headers=keyed("step"))
    api.clock.advance(3)  # the window of the first request has closed
    replay = await api.client.post("/api/event/trigger", json=body, headers=keyed("step"))
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.content == first.content
    # form_step allows duplicates: only an open window could refuse this one.
    assert (await api.client.post("/api/event/trigger", json=body)).status_code == 200
    assert len((await api.view(transaction_id))["events"]) == 2


async def test_the_same_key_with_other_fields_is_422(api: Harness) -> None:
    transaction_id = await api.click(pid=PID)
    assert (await sale(api, transaction_id, "k-2")).status_code == 200
    other = await sale(api, transaction_id, "k-2", revenue="46.00")
    assert other.json() == error(422, "Idempotency-Key reused with different fields")
    assert await counts(api, transaction_id) == (1, 1)


async def test_a_money_value_spelled_differently_is_the_same_request(api: Harness) -> None:
    transaction_id = await api.click(pid=PID)
    first = await sale(api, transaction_id, "k-3", revenue="45.00")
    again = await sale(api, transaction_id, "k-3", revenue=45)
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"


async def test_100_concurrent_requests_with_one_key_store_one_event(api: Harness) -> None:
    transaction_id = await api.click(pid=PID)
    answers = await asyncio.gather(*(sale(api, transaction_id, "k-many") for _ in range(100)))
    statuses = sorted({answer.status_code for answer in answers})
    assert set(statuses) <= {200, 409}
    assert 200 in statuses
    fired = [answer for answer in answers if answer.status_code == 200]
    assert len({answer.content for answer in fired}) == 1
    busy = [answer for answer in answers if answer.status_code == 409]
    for answer in busy:
        assert answer.json() == error(409, "A request with this Idempotency-Key is in progress")
    assert await counts(api, transaction_id) == (1, 1)
    # Once the first is done every retry gets its answer.
    retry = await sale(api, transaction_id, "k-many")
    assert retry.content == fired[0].content


async def test_a_refusal_from_the_transaction_checks_is_replayed(api: Harness) -> None:
    body = {"cid": CID, "event_id": "quote_viewed", "transaction_id": "txn_unknown"}
    first = await api.client.post("/api/event/trigger", json=body, headers=keyed("r-1"))
    assert first.json() == error(400, "Invalid transaction_id for this campaign")
    again = await api.client.post("/api/event/trigger", json=body, headers=keyed("r-1"))
    assert (again.status_code, again.content) == (400, first.content)
    assert again.headers["idempotent-replayed"] == "true"


async def test_a_field_error_is_not_remembered(api: Harness) -> None:
    transaction_id = await api.click()
    bad = {"cid": CID, "event_id": "quote_viewed", "transaction_id": transaction_id,
           "sub1": 5}
    assert (await api.client.post("/api/event/trigger", json=bad,
                                  headers=keyed("f-1"))).status_code == 400
    good = bad | {"sub1": "ok"}
    fixed = await api.client.post("/api/event/trigger", json=good, headers=keyed("f-1"))
    assert fixed.status_code == 200


async def test_a_malformed_key_is_400(api: Harness) -> None:
    transaction_id = await api.click()
    body = {"cid": CID, "event_id": "quote_viewed", "transaction_id": transaction_id}
    for key in ("k" * 256, "caf\u00e9"):
        response = await api.client.post("/api/event/trigger", json=body,
                                          headers={"Idempotency-Key": key.encode()})
        assert response.json() == error(
            400, "Invalid Idempotency-Key (1-255 printable ASCII characters)"), key
    assert (await api.view(transaction_id))["events"] == []


async def test_a_key_replays_for_its_whole_hours(api: Harness) -> None:
    transaction_id = await api.click(pid=PID)
    first = await sale(api, transaction_id, "k-day")
    assert first.status_code == 200, first.text
    api.clock.advance(23 * 3600)  # of idempotency_hours = 24
    again = await sale(api, transaction_id, "k-day")
    assert (again.status_code, again.content) == (200, first.content)
    assert again.headers["idempotent-replayed"] == "true"
    api.clock.advance(3600 - 1)
    last = await sale(api, transaction_id, "k-day")
    assert (last.content, last.headers["idempotent-replayed"]) == (first.content, "true")
    assert await counts(api, transaction_id) == (1, 1)


async def test_a_key_expires_after_its_hours(api: Harness) -> None:
    transaction_id = await api.click(pid=PID)
    assert (await sale(api, transaction_id, "k-old")).status_code == 200
    api.clock.advance(24 * 3600 + 1)
    other = await api.client.post("/api/event/trigger", headers=keyed("k-old"), json={
        "cid": CID, "event_id": "quote_viewed", "transaction_id": transaction_id})
    assert other.status_code == 200
    assert "idempotent-replayed" not in other.headers
    # The expired answer was purged when the new one was stored.
    assert await api.query("SELECT count(*) FROM idempotency_keys") == [(1,)]


async def test_the_stored_answer_survives_a_restart(db_path: Path) -> None:
    config = make_config(db_path)
    async with running(config) as api:
        transaction_id = await api.click(pid=PID)
        first = await sale(api, transaction_id, "k-restart")
    async with running(config) as api:
        again = await sale(api, transaction_id, "k-restart")
        assert (again.content, again.headers["idempotent-replayed"]) == (first.content, "true")
        assert await counts(api, transaction_id) == (1, 1)
        mismatch = await sale(api, transaction_id, "k-restart", revenue="1")
        assert mismatch.status_code == 422


async def test_the_pixel_route_replays_its_pixel(api: Harness) -> None:
    transaction_id = await api.click()
    params = {"cid": CID, "event_id": "quote_viewed", "transaction_id": transaction_id,
              "format": "gif"}
    first = await api.client.get("/api/event/trigger", params=params, headers=keyed("g"))
    api.clock.advance(60)
    again = await api.client.get("/api/event/trigger", params=params, headers=keyed("g"))
    assert (again.status_code, again.headers["content-type"]) == (200, "image/gif")
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    # The JSON form of the same fields is another request.
    del params["format"]
    json_form = await api.client.get("/api/event/trigger", params=params, headers=keyed("g"))
    assert json_form.status_code == 422


async def test_the_first_keyed_answer_is_the_answer_without_a_key(db_path: Path) -> None:
    """A keyed request is handled as usual: same status, headers, data and dropped fields."""
    config = with_campaign(make_config(db_path), CID, strict_fields=False)
    async with running(config) as api:
        plain_id, keyed_id = await api.click(pid=PID), await api.click(pid=PID)

        def body(transaction_id: str) -> dict[str, Any]:
            # notes is too long: a lenient campaign fires without it and says so.
            return {"cid": CID, "event_id": "sale_completed", "transaction_id": transaction_id,
                    "pid": PID, "revenue": "45", "notes": "n" * 256}

        plain = await api.client.post("/api/event/trigger", json=body(plain_id))
        first = await api.client.post("/api/event/trigger", json=body(keyed_id),
                                      headers=keyed("same-as-plain"))
        for response in (plain, first):
            assert response.status_code == 200, response.text
            assert response.headers["content-type"] == "application/json"
            assert "cache-control" not in response.headers  # only the GET forms say no-store
        answer = first.json()
        conversion_id = answer["data"]["conversion_id"]
        assert conversion_id.startswith("conv_")
        assert answer == {
            "status": 200, "type": "success", "message": "Event triggered successfully",
            "data": {"cid": CID, "pid": PID, "transaction_id": keyed_id,
                     "conversion_id": conversion_id, "conversion": True,
                     "status": "approved", "reason": None},
            "invalidFields": plain.json()["invalidFields"]}
        assert list(answer["invalidFields"]) == ["notes"]


async def test_a_keyed_refusal_is_the_refusal_without_a_key(api: Harness) -> None:
    body = {"cid": "cmp_unknown", "event_id": "quote_viewed", "transaction_id": "txn_x"}
    plain = await api.client.post("/api/event/trigger", json=body)
    first = await api.client.post("/api/event/trigger", json=body, headers=keyed("refused"))
    again = await api.client.post("/api/event/trigger", json=body, headers=keyed("refused"))
    for response in (plain, first, again):
        assert response.json() == error(400, "Invalid cid")
        assert response.headers["content-type"] == "application/json"
    assert again.headers["idempotent-replayed"] == "true"


async def test_a_replay_is_counted_as_replayed_not_as_another_conversion(
    api: Harness
) -> None:
    transaction_id = await api.click(pid=PID)
    assert (await sale(api, transaction_id, "k-count")).status_code == 200
    api.clock.advance(60)
    assert (await sale(api, transaction_id, "k-count")).headers["idempotent-replayed"]
    _, samples = await scrape(api)
    events = "event_postback_events_total"
    assert value(samples, events, cid=CID, event_id="sale_completed", outcome="converted") == 1
    assert value(samples, events, cid=CID, event_id="sale_completed", outcome="replayed") == 1
