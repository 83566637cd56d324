"""Both event routes, and the body forms browsers and servers send."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlencode

import pytest

from tests.conftest import CID, PID, Harness, error

# The rules hold on both stores.
pytestmark = pytest.mark.both_stores


async def test_campaign_route_answers_201_with_the_same_data(api: Harness) -> None:
    transaction_id = await api.click(pid=PID)
    response = await api.client.post(f"/api/event/{CID}", json={
        "event_id": "sale_completed", "transaction_id": transaction_id, "pid": PID,
        "revenue": 45})
    body = response.json()
    assert response.status_code == 201
    assert body["status"] == 201
    assert body["type"] == "success"
    assert body["message"] == "Event triggered successfully"
    assert body["data"]["cid"] == CID
    assert body["data"]["conversion"] is True
    assert body["data"]["conversion_id"].startswith("conv_")


async def test_campaign_route_accepts_a_matching_body_cid(api: Harness) -> None:
    transaction_id = await api.click()
    response = await api.client.post(f"/api/event/{CID}", json={
        "cid": CID, "event_id": "quote_viewed", "transaction_id": transaction_id})
    assert response.status_code == 201


async def test_campaign_route_takes_an_empty_body_cid_as_not_sent(api: Harness) -> None:
    transaction_id = await api.click()
    response = await api.client.post(f"/api/event/{CID}", json={
        "cid": "", "event_id": "quote_viewed", "transaction_id": transaction_id})
    assert response.status_code == 201, response.text
    assert response.json()["data"]["cid"] == CID


async def test_campaign_route_refuses_a_different_body_cid(api: Harness) -> None:
    transaction_id = await api.click()
    response = await api.client.post(f"/api/event/{CID}", json={
        "cid": "cmp_other", "event_id": "quote_viewed", "transaction_id": transaction_id})
    assert response.status_code == 400
    assert response.json() == error(400, "cid does not match the URL")


async def test_campaign_route_runs_the_same_checks(api: Harness) -> None:
    missing = await api.client.post("/api/event/cmp_nope", json={"event_id": "x"})
    assert missing.json() == error(400, "transaction_id is required",
                                   missingFields=["transaction_id"])
    unknown = await api.client.post("/api/event/cmp_nope", json={
        "event_id": "x", "transaction_id": "t"})
    assert unknown.json() == error(400, "Invalid cid")
    transaction_id = await api.click()
    await api.client.post(f"/api/event/{CID}", json={
        "event_id": "quote_viewed", "transaction_id": transaction_id})
    again = await api.client.post(f"/api/event/{CID}", json={
        "event_id": "quote_viewed", "transaction_id": transaction_id})
    assert (again.status_code, again.json()) == (403, error(403, "Concurrent event in progress"))


async def test_both_routes_share_the_window_and_duplicate_state(api: Harness) -> None:
    transaction_id = await api.click()
    assert (await api.fire(transaction_id)).status_code == 200
    api.clock.advance(3)
    response = await api.client.post(f"/api/event/{CID}", json={
        "event_id": "quote_viewed", "transaction_id": transaction_id})
    assert response.json() == error(400, "Duplicate event for this transaction_id")


async def test_urlencoded_form_body(api: Harness) -> None:
    transaction_id = await api.click()
    form = urlencode({"cid": CID, "event_id": "sale_completed", "transaction_id": transaction_id,
                      "pid": PID, "revenue": "45.00", "sub3": "from-form", "cost": ""})
    response = await api.client.post(
        "/api/event/trigger", content=form,
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    assert response.status_code == 200, response.text
    view = await api.view(transaction_id)
    assert view["events"][0]["revenue"] == "45.00"
    assert view["fields"]["sub3"] == "from-form"
    assert view["cost"] is None  # an empty form input counts as not sent


async def test_a_form_reads_like_the_json_it_spells_when_a_name_repeats(
    api: Harness
) -> None:
    # The last value of a repeated name wins, in a form as in a JSON object, and an
    # empty one counts as not sent: the earlier value is not taken instead.
    form_id, json_id = await api.click(sub2="click"), await api.click(sub2="click")
    form = (f"cid={CID}&event_id=quote_viewed&transaction_id={form_id}"
            "&sub1=first&sub1=&sub2=first&sub2=last")
    response = await api.client.post(
        "/api/event/trigger", content=form,
        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200, response.text
    body = (f'{{"cid": "{CID}", "event_id": "quote_viewed", "transaction_id": "{json_id}",'
            ' "sub1": "first", "sub1": "", "sub2": "first", "sub2": "last"}')
    response = await api.client.post("/api/event/trigger", content=body,
                                      headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    for transaction_id in (form_id, json_id):
        view = await api.view(transaction_id)
        assert view["events"][0]["fields"] == {"sub2": "last"}
        assert "sub1" not in view["fields"]


async def test_form_field_of_wrong_form_is_invalid(api: Harness) -> None:
    form = urlencode({"cid": CID, "event_id": "quote_viewed", "transaction_id": "t",
                      "tcpa_consent": "maybe"})
    response = await api.client.post(
        "/api/event/trigger", content=form,
        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.json()["message"] == "Invalid tcpa_consent"


async def test_text_plain_json_body_as_sent_by_send_beacon(api: Harness) -> None:
    transaction_id = await api.click()
    body = ('{"cid": "%s", "event_id": "quote_viewed", "transaction_id": "%s"}'
            % (CID, transaction_id))
    response = await api.client.post("/api/event/trigger", content=body,
                                     headers={"Content-Type": "text/plain;charset=UTF-8"})
    assert response.status_code == 200


async def test_json_labelled_as_a_form_is_read_as_json(api: Harness) -> None:
    # What `curl -d '{...}'` sends when no Content-Type is given.
    transaction_id = await api.click()
    body = ('{"cid": "%s", "event_id": "quote_viewed", "transaction_id": "%s"}'
            % (CID, transaction_id))
    response = await api.client.post(
        "/api/event/trigger", content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200


def _body_of(size: int) -> str:
    head = '{"cid": "%s", "pad": "' % CID
    body = head + "x" * (size - len(head) - 2) + '"}'
    assert len(body) == size
    return body


async def test_body_over_16_kib_is_refused_with_413(api: Harness) -> None:
    response = await api.client.post("/api/event/trigger", content=_body_of(16_385))
    assert response.status_code == 413
    assert response.json() == error(413, "Request body too large (limit 16384 bytes)")


async def _in_chunks(body: str) -> AsyncIterator[bytes]:
    """The body sent chunked, without a Content-Length to refuse it by."""
    data = body.encode()
    for start in range(0, len(data), 1000):
        yield data[start:start + 1000]


async def test_chunked_body_over_16_kib_is_refused_with_413(api: Harness) -> None:
    response = await api.client.post("/api/event/trigger", content=_in_chunks(_body_of(16_385)))
    assert response.status_code == 413
    assert response.json() == error(413, "Request body too large (limit 16384 bytes)")


async def test_body_of_exactly_16_kib_is_read(api: Harness) -> None:
    response = await api.client.post("/api/event/trigger", content=_body_of(16_384))
    assert response.json()["message"] == "event_id is required"


async def test_chunked_body_of_exactly_16_kib_is_read(api: Harness) -> None:
    response = await api.client.post("/api/event/trigger", content=_in_chunks(_body_of(16_384)))
    assert response.json()["message"] == "event_id is required"


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
async def test_other_methods_are_not_allowed(api: Harness, method: str) -> None:
    response = await api.client.request(method, "/api/event/trigger")
    assert response.status_code == 405
    assert response.json() == error(405, "Method Not Allowed")
