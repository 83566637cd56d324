"""A server-to-server event request is taken whole by the first layer of the stack.

What the other layers give every request (the request id, the body bound, admission, the
log line, the metrics) it gets there; it runs through none of them, so it pays for none.
"""

from __future__ import annotations

from typing import Any

import pytest
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.requests import State
from structlog.testing import capture_logs

from app.edge.admission import AdmissionMiddleware
from app.edge.body_reader import BodyReader
from app.edge.cors import CurrentCORS
from app.edge.middleware import RequestLogMiddleware
from app.observe.logs import merge_request_fields
from tests.conftest import CID, Harness, error

pytestmark = pytest.mark.both_stores

_LAYERS = (ServerErrorMiddleware, RequestLogMiddleware, BodyReader, AdmissionMiddleware,
           CurrentCORS)


def _count_layers(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    entered: list[str] = []
    for layer in _LAYERS:
        real = layer.__call__

        async def counted(self: Any, scope: Any, receive: Any, send: Any, *,
                          _real: Any = real, _name: str = layer.__name__) -> None:
            entered.append(_name)
            await _real(self, scope, receive, send)

        monkeypatch.setattr(layer, "__call__", counted)
    return entered


async def test_a_server_event_request_runs_through_no_other_layer(
    api: Harness, monkeypatch: pytest.MonkeyPatch,
) -> None:
    transaction_id = await api.click()
    entered = _count_layers(monkeypatch)
    fired = await api.fire(transaction_id)
    assert fired.status_code == 200
    assert entered == []
    # A browser's request (with an Origin) takes every layer, CORS included.
    await api.client.post("/api/event/trigger", json={
        "cid": CID, "event_id": "quote_viewed", "transaction_id": transaction_id},
        headers={"Origin": "https://x.example"})
    assert entered == [layer.__name__ for layer in _LAYERS]


async def test_an_event_request_builds_no_state_object(
    api: Harness, monkeypatch: pytest.MonkeyPatch,
) -> None:
    transaction_id = await api.click()
    built: list[object] = []
    real = State.__init__

    def counted(self: State, state: dict[str, Any] | None = None) -> None:
        built.append(self)
        real(self, state)

    monkeypatch.setattr(State, "__init__", counted)
    assert (await api.fire(transaction_id)).status_code == 200
    assert built == []


async def test_a_refused_event_body_carries_its_request_id_and_log_line(api: Harness) -> None:
    with capture_logs(processors=[merge_request_fields]) as logs:
        refused = await api.client.post("/api/event/trigger", content=b"x" * 20000,
                                        headers={"X-Request-ID": "edge-413"})
    assert refused.status_code == 413
    assert refused.headers["x-request-id"] == "edge-413"
    assert refused.json() == error(413, "Request body too large (limit 16384 bytes)")
    [line] = [entry for entry in logs if entry["event"] == "request"]
    assert (line["request_id"], line["route"], line["status"]) == (
        "edge-413", "/api/event/trigger", 413)
    assert line["outcome"] == "body_too_large"
    # The same answer the browser's way gets, but for CORS.
    browser = await api.client.post("/api/event/trigger", content=b"x" * 20000,
                                    headers={"Origin": "https://x.example"})
    assert (browser.status_code, browser.content) == (413, refused.content)
