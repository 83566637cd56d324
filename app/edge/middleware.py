"""The request log: one line per request, and the 500 answer for anything unexpected."""

from __future__ import annotations

import itertools
import re
import secrets
import time
from typing import Any

import structlog
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.edge.envelope import internal_error_body
from app.observe import logs
from app.observe.logs import start_request
from app.observe.metrics import Metrics

log = structlog.get_logger("app.request")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
# Minted ids: a random prefix per process and a counter, unique without a uuid per request.
_ID_PREFIX = secrets.token_hex(6)
_ids = itertools.count(1)


class RequestLogMiddleware:
    """Starts the request's log fields, logs the canonical line, turns a crash into a 500.

    Handlers add ``cid``, ``event_id``, ``transaction_id`` and ``outcome`` with
    ``app.observe.logs.annotate``; they run in this task, so what they add is here when they return.
    The same fields feed the request and event metrics.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics | None = None) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        given_id = request_id(scope)
        fields = start_request(request_id=given_id)
        header = (b"x-request-id", given_id.encode())
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except ClientDisconnect:
            fields["outcome"] = "client_disconnected"
        except Exception:
            fields["outcome"] = "internal_error"
            log.exception("unhandled_error")
            if status == 0:
                status = 500
                await send_crash(send, header)
        finally:
            # The route's template, never the raw path: a metric label must stay bounded.
            template: str | None = getattr(scope.get("route"), "path", None)
            finish(scope, template, status, fields, started, self.metrics)


async def send_crash(send: Send, request_id: tuple[bytes, bytes]) -> None:
    """The 500 answer to a request whose handler crashed before it answered."""
    await send({
        "type": "http.response.start",
        "status": 500,
        "headers": [(b"content-type", b"application/json"), request_id],
    })
    await send({"type": "http.response.body", "body": internal_error_body()})


def finish(scope: Scope, template: str | None, status: int, fields: dict[str, Any],
           started: float, metrics: Metrics | None) -> None:
    """The request's canonical log line and its metrics."""
    seconds = time.perf_counter() - started
    logs.info_line(
        log,
        "request",
        method=scope["method"],
        route=template or scope["path"],
        status=status,
        latency_ms=round(seconds * 1000, 3),
    )
    if metrics is not None:
        metrics.observe_request(template, status, fields, seconds)


def request_id(scope: Scope) -> str:
    """The request's X-Request-ID when it is a sensible one, else one minted here."""
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _REQUEST_ID.fullmatch(candidate):
                return candidate
    return new_request_id()


def new_request_id() -> str:
    return f"{_ID_PREFIX}-{next(_ids):x}"
