"""The request log: one line per request, and the 500 answer for anything unexpected."""

from __future__ import annotations

import re
import time
import uuid

import structlog
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.envelope import internal_error_body

log = structlog.get_logger("app.request")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


class RequestLogMiddleware:
    """Binds a request id, logs the canonical line, and turns a crash into a JSON 500.

    Handlers add ``cid``, ``event_id``, ``transaction_id`` and ``outcome`` to the line with
    ``structlog.contextvars.bind_contextvars``; they run in this task, so the bindings are
    visible here when the handler returns.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []),
                                      (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except ClientDisconnect:
            structlog.contextvars.bind_contextvars(outcome="client_disconnected")
        except Exception:
            structlog.contextvars.bind_contextvars(outcome="internal_error")
            log.exception("unhandled_error")
            if status == 0:
                await send_with_id({
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [(b"content-type", b"application/json")],
                })
                await send({"type": "http.response.body", "body": internal_error_body()})
        finally:
            route = scope.get("route")
            log.info(
                "request",
                method=scope["method"],
                route=getattr(route, "path", scope["path"]),
                status=status,
                latency_ms=round((time.perf_counter() - started) * 1000, 3),
            )
            structlog.contextvars.clear_contextvars()


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _REQUEST_ID.fullmatch(candidate):
                return candidate
    return uuid.uuid4().hex
