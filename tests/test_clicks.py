"""Clicks mint leads: POST with a body, GET with a query string and a landing redirect."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from tests.conftest import CID, OTHER_CID, PID, Harness, error, make_config, running

TXN = r"txn_[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


async def test_post_click_mints_a_transaction_and_stores_every_field(api: Harness) -> None:
    fields = {
        "cid": CID, "pid": PID, "sub1": "a", "sub5": "e", "adv2": "b", "utm_source": "google",
        "utm_placement": "top", "external_clickid": "ext-1", "clid": "c-9",
        "first_name": "Ada", "age": 37, "vip": True, "score": 4.5,
    }
    response = await api.client.post("/api/click", json=fields)
    body = response.json()
    assert response.status_code == 200
    assert body["status"] == 200
    assert body["type"] == "success"
    data = body["data"]
    assert re.fullmatch(TXN, data["transaction_id"])
    assert (data["cid"], data["pid"]) == (CID, PID)
    view = await api.view(data["transaction_id"])
    assert (view["cid"], view["pid"], view["events"]) == (CID, PID, [])
    assert view["created_at"] == "2026-11-28T12:00:00.000000Z"
    expected = {name: value for name, value in fields.items() if name not in ("cid", "pid")}
    assert view["fields"] == expected | {"score": "4.5"}
    rows = await api.query("SELECT ip, user_agent FROM leads WHERE transaction_id = ?",
                           data["transaction_id"])
    assert rows == [("203.0.113.7", "pytest-agent/1.0")]


async def test_every_click_gets_its_own_transaction(api: Harness) -> None:
    ids = {await api.click() for _ in range(20)}
    assert len(ids) == 20


async def test_click_pid_defaults_to_organic(api: Harness) -> None:
    response = await api.client.post("/api/click", json={"cid": CID})
    assert response.json()["data"]["pid"] == "organic"


async def test_get_click_redirects_to_the_landing_page(api: Harness) -> None:
    response = await api.client.get("/api/click", params={
        "cid": CID, "pid": PID, "sub1": "q1", "utm_term": "cheap insurance"})
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert (location.scheme, location.netloc, location.path) == ("https", "example.com",
                                                                 "/quote")
    query = parse_qs(location.query)
    assert query["src"] == [PID]
    [transaction_id] = query["tid"]
    assert re.fullmatch(TXN, transaction_id)
    view = await api.view(transaction_id)
    assert view["fields"] == {"sub1": "q1", "utm_term": "cheap insurance"}


async def test_get_click_without_landing_page_answers_json(api: Harness) -> None:
    response = await api.client.get("/api/click", params={"cid": OTHER_CID})
    assert response.status_code == 200
    assert re.fullmatch(TXN, response.json()["data"]["transaction_id"])


async def test_form_click(api: Harness) -> None:
    response = await api.client.post(
        "/api/click", content=f"cid={CID}&pid={PID}&sub2=form",
        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200
    view = await api.view(response.json()["data"]["transaction_id"])
    assert view["fields"] == {"sub2": "form"}


async def test_click_errors(api: Harness) -> None:
    cases = [
        ({}, 400, error(400, "cid is required", missingFields=["cid"])),
        ({"cid": "cmp_nope"}, 400, error(400, "Invalid cid")),
        ({"cid": CID, "pid": "src_nobody"}, 400, error(400, "Invalid pid")),
        ({"cid": CID, "pid": "src_paused"}, 403, error(403, "Source Inactive")),
    ]
    for body, status, answer in cases:
        response = await api.client.post("/api/click", json=body)
        assert (response.status_code, response.json()) == (status, answer), body
        query = await api.client.get("/api/click", params=body)
        assert (query.status_code, query.json()) == (status, answer), body


async def test_click_field_of_wrong_form_is_invalid(api: Harness) -> None:
    response = await api.client.post("/api/click", json={
        "cid": CID, "sub1": 5, "address": {"street": "x"}})
    assert response.status_code == 400
    assert response.json()["message"] == "Invalid sub1"
    assert set(response.json()["invalidFields"]) == {"sub1", "address"}


async def test_click_body_that_is_not_an_object(api: Harness) -> None:
    response = await api.client.post("/api/click", content=b"[]")
    assert response.json() == error(400, "Invalid JSON body")


async def test_event_right_after_a_write_behind_click_finds_its_lead(db_path: Path) -> None:
    # The lead is still queued, not committed: the actor created by the click knows it.
    config = make_config(db_path, durability="write-behind", flush_ms=60_000)
    async with running(config) as api:
        transaction_id = await api.click()
        assert (await api.fire(transaction_id)).status_code == 200
        assert api.services.store.writer.pending >= 1
