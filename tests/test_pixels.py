"""The GET forms of the event routes, for image pixels and GET-only trackers."""

from __future__ import annotations

import pytest

from app.routes.events import PIXEL
from tests.conftest import CID, PID, Harness, error

# The rules hold on both stores.
pytestmark = pytest.mark.both_stores


def is_one_pixel_gif(body: bytes) -> bool:
    width = int.from_bytes(body[6:8], "little")
    height = int.from_bytes(body[8:10], "little")
    return body[:6] == b"GIF89a" and (width, height) == (1, 1) and body.endswith(b";")


async def test_get_trigger_runs_the_same_checks_and_answers(api: Harness) -> None:
    transaction_id = await api.click(pid=PID)
    params = {"cid": CID, "event_id": "sale_completed", "transaction_id": transaction_id,
              "pid": PID, "revenue": "45.00", "sub4": "pixel"}
    response = await api.client.get("/api/event/trigger", params=params)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.json()["data"]["conversion"] is True
    again = await api.client.get("/api/event/trigger", params=params)
    assert (again.status_code, again.json()) == (403, error(403, "Concurrent event in progress"))
    view = await api.view(transaction_id)
    assert view["events"][0]["revenue"] == "45.00"
    assert view["fields"]["sub4"] == "pixel"


async def test_get_campaign_route_answers_201(api: Harness) -> None:
    transaction_id = await api.click()
    response = await api.client.get(f"/api/event/{CID}", params={
        "event_id": "quote_viewed", "transaction_id": transaction_id})
    assert response.status_code == 201
    mismatch = await api.client.get(f"/api/event/{CID}", params={
        "cid": "cmp_other", "event_id": "quote_viewed", "transaction_id": transaction_id})
    assert mismatch.json() == error(400, "cid does not match the URL")


async def test_get_errors_keep_their_answers(api: Harness) -> None:
    missing = await api.client.get("/api/event/trigger", params={"cid": CID})
    assert missing.json() == error(400, "event_id is required",
                                   missingFields=["event_id", "transaction_id"])
    invalid = await api.client.get("/api/event/trigger", params={
        "cid": CID, "event_id": "quote_viewed", "transaction_id": "t", "revenue": "x"})
    assert invalid.json()["message"] == "Invalid revenue"


async def test_gif_format_answers_a_pixel_with_a_meaningful_status(api: Harness) -> None:
    transaction_id = await api.click()
    params = {"cid": CID, "event_id": "quote_viewed", "transaction_id": transaction_id,
              "format": "gif"}
    fired = await api.client.get("/api/event/trigger", params=params)
    assert fired.status_code == 200
    assert fired.headers["content-type"] == "image/gif"
    assert fired.headers["cache-control"] == "no-store"
    assert fired.content == PIXEL and is_one_pixel_gif(fired.content)
    assert len(PIXEL) == 43

    locked = await api.client.get("/api/event/trigger", params=params)
    assert (locked.status_code, locked.content) == (403, PIXEL)
    api.clock.advance(5)
    duplicate = await api.client.get("/api/event/trigger", params=params)
    assert (duplicate.status_code, duplicate.content) == (400, PIXEL)
    unknown = await api.client.get("/api/event/trigger", params=params | {"cid": "nope"})
    assert (unknown.status_code, unknown.headers["content-type"]) == (400, "image/gif")
    # The format parameter is not stored as a field.
    events = (await api.view(transaction_id))["events"]
    assert [event["fields"] for event in events] == [{}]


async def test_gif_pixel_on_the_campaign_route(api: Harness) -> None:
    transaction_id = await api.click()
    response = await api.client.get(f"/api/event/{CID}", params={
        "event_id": "quote_viewed", "transaction_id": transaction_id, "format": "gif"})
    assert (response.status_code, response.content) == (201, PIXEL)
