"""Server-to-server event requests skip the router; their answers are exactly the same."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from tests.conftest import CID, Harness

_CORS = ("access-control-allow-origin", "access-control-allow-credentials",
         "access-control-expose-headers", "vary", "x-request-id")


def _answer(response: httpx.Response) -> tuple[int, bytes, dict[str, str]]:
    headers = {name: value for name, value in response.headers.items() if name not in _CORS}
    return response.status_code, response.content, headers


@pytest.mark.parametrize(("path", "body"), [
    ("/api/event/trigger", {"cid": CID, "event_id": "quote_viewed"}),
    ("/api/event/trigger", {"cid": CID, "event_id": "nope", "transaction_id": "t"}),
    ("/api/event/trigger", {"cid": "cmp_unknown", "event_id": "e", "transaction_id": "t"}),
    ("/api/event/trigger", {"cid": CID, "event_id": "quote_viewed", "transaction_id": "t",
                            "pid": "src_paused"}),
    (f"/api/event/{CID}", {"event_id": "quote_viewed", "transaction_id": "t"}),
    (f"/api/event/{CID}", {"cid": "other", "event_id": "quote_viewed"}),
    ("/api/event/global", {"event_id": "quote_viewed", "transaction_id": "t"}),
    ("/api/event/", {"cid": CID}),
    ("/api/event/a/b", {"cid": CID}),
])
async def test_answers_without_origin_equal_those_through_the_router(
    api: Harness, path: str, body: dict[str, Any]
) -> None:
    server = await api.client.post(path, json=body)
    browser = await api.client.post(path, json=body, headers={"Origin": "https://x.example"})
    assert _answer(server) == _answer(browser)


async def test_a_fired_event_and_its_repeat_answer_the_same_both_ways(api: Harness) -> None:
    first, second = await api.click(), await api.click()
    body = {"cid": CID, "event_id": "quote_viewed"}
    server = await api.client.post("/api/event/trigger", json={**body,
                                                               "transaction_id": first})
    browser = await api.client.post("/api/event/trigger", json={
        **body, "transaction_id": second}, headers={"Origin": "https://x.example"})
    assert server.json()["data"] | {"transaction_id": ""} == browser.json()["data"] | {
        "transaction_id": ""}
    # The lock window and the duplicate rule hold on the fast path as on the other.
    locked = await api.client.post("/api/event/trigger", json={**body,
                                                                "transaction_id": first})
    assert locked.json()["message"] == "Concurrent event in progress"


async def test_the_log_line_names_the_route_template(api: Harness) -> None:
    with capture_logs() as logs:
        await api.client.post(f"/api/event/{CID}", json={"event_id": "quote_viewed",
                                                         "transaction_id": "t"})
    [line] = [entry for entry in logs if entry["event"] == "request"]
    assert line["route"] == "/api/event/{cid}"
