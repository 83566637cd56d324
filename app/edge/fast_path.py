"""Server-to-server event requests go straight to their handler, through one layer.

A POST to an event route without an ``Origin`` header comes from a server (a CRM, a
buyer's system, a load generator), never from a browser, so CORS has nothing to add and
the answer is the same without it. Such a request is taken by this layer, the first of
the stack, which does what the layers behind it would do, in the same order: the request
id and the log fields (middleware.py), the body read in full within its deadline
(body_reader.py), a slot in flight (admission.py), then the handler, its errors through
the same exception handlers, and the canonical log line and metrics. It skips the other
layers, the router's matching and Starlette's per-request wrappers; the answer bytes,
headers, log line and metrics are identical. Everything else (browsers, other routes,
other methods) takes the normal way.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from app.edge.admission import InFlight, overloaded
from app.edge.body_reader import BODY, MAX_BODY_BYTES, Deadlines, read_body, refusal, replaying
from app.edge.middleware import finish, new_request_id, request_id, send_crash
from app.edge.request_info import HEADERS
from app.observe.logs import start_request
from app.observe.metrics import Metrics

Handler = Callable[[Request, Exception], Awaitable[Response]]
_EVENT_PREFIX = "/api/event/"
log = structlog.get_logger("app.request")


class EventFastPath:
    def __init__(self, app: ASGIApp, *, routes: list[Route],
                 exception_handlers: Mapping[Any, Handler], slots: InFlight,
                 metrics: Metrics | None = None, body_timeout: float = 10.0,
                 body_limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        posts = {route.path: route for route in routes
                 if route.path.startswith(_EVENT_PREFIX) and "POST" in (route.methods or ())}
        self._campaign = posts.pop(_EVENT_PREFIX + "{cid}")
        self._exact = posts
        self._handlers: dict[Any, Handler] = dict(exception_handlers)
        self._slots = slots
        self._metrics = metrics
        self._deadlines = Deadlines(body_timeout)
        self._limit = body_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route, params = (self._match(scope["path"]) if scope["type"] == "http"
                         and scope["method"] == "POST" else (None, None))
        if route is None:
            await self.app(scope, receive, send)
            return
        # The dict the handler reads its headers from (request_info.header), built here
        # instead of scanning the list for an Origin first.
        headers = scope[HEADERS] = dict(scope["headers"])
        if b"origin" in headers:
            await self.app(scope, receive, send)
            return
        # From here on, what RequestLogMiddleware, BodyReader and AdmissionMiddleware do,
        # inline: one coroutine instead of four, no wrapped send (the request id goes on
        # the answer's own headers).
        started = time.perf_counter()
        given_id = request_id(scope) if b"x-request-id" in headers else new_request_id()
        fields = start_request(request_id=given_id)
        header = (b"x-request-id", given_id.encode())
        status = 0
        try:
            body = await read_body(self._deadlines, scope, receive, self._limit)
            slots = self._slots
            if not isinstance(body, bytes):
                response = refusal(body)
            elif slots.count >= slots.limit:
                response = overloaded()
            else:
                # The slot is held until the answer is sent, as the admission middleware does.
                slots.count += 1
                try:
                    response = await self._handle(route, params, body, scope, receive, send)
                    status = response.status_code
                    await _send(response, header, scope, receive, send)
                finally:
                    slots.count -= 1
                return
            status = response.status_code
            await _send(response, header, scope, receive, send)
        except ClientDisconnect:
            fields["outcome"] = "client_disconnected"
        except Exception:
            fields["outcome"] = "internal_error"
            log.exception("unhandled_error")
            if status == 0:
                status = 500
                await send_crash(send, header)
        finally:
            finish(scope, route.path, status, fields, started, self._metrics)

    async def _handle(self, route: Route, params: dict[str, str] | None, body: bytes,
                      scope: Scope, receive: Receive, send: Send) -> Response:
        """The handler's answer, or its exception handler's."""
        # What the router would have set: handlers may read the route.
        scope["route"] = route
        scope["endpoint"] = route.endpoint
        scope["path_params"] = params
        scope[BODY] = body
        request = Request(scope, replaying(body, receive), send)
        try:
            response: Response = await route.endpoint(request)
        except Exception as exc:
            handler = self._handler(exc)
            if handler is None:
                raise
            response = await handler(request, exc)
        return response

    def _match(self, path: str) -> tuple[Route | None, dict[str, str] | None]:
        route = self._exact.get(path)
        if route is not None:
            return route, {}
        # /api/event/{cid}: one non-empty path segment, as Starlette's matcher reads it.
        cid = path[len(_EVENT_PREFIX):] if path.startswith(_EVENT_PREFIX) else ""
        if cid and "/" not in cid:
            return self._campaign, {"cid": cid}
        return None, None

    def _handler(self, exc: Exception) -> Handler | None:
        for kind in type(exc).__mro__:
            if kind in self._handlers:
                return self._handlers[kind]
        return None


async def _send(response: Response, request_id: tuple[bytes, bytes], scope: Scope,
                receive: Receive, send: Send) -> None:
    # Every answer here is a new Response: its header list is its own.
    response.raw_headers.append(request_id)
    await response(scope, receive, send)
