"""Server-to-server event requests go straight to their handler.

A POST to an event route without an ``Origin`` header comes from a server (a CRM, a
buyer's system, a load generator), never from a browser, so CORS has nothing to add and
the answer is the same without it. Such requests skip the CORS middleware, the router's
matching and Starlette's per-request wrappers: the same handler runs, its errors go
through the same exception handlers, and the answer bytes are identical. Everything
else (browsers, other routes, other methods) takes the normal way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from app.edge.request_info import HEADERS

Handler = Callable[[Request, Exception], Awaitable[Response]]
_EVENT_PREFIX = "/api/event/"


class EventFastPath:
    def __init__(self, app: ASGIApp, *, routes: list[Route],
                 exception_handlers: Mapping[Any, Handler]) -> None:
        self.app = app
        posts = {route.path: route for route in routes
                 if route.path.startswith(_EVENT_PREFIX) and "POST" in (route.methods or ())}
        self._campaign = posts.pop(_EVENT_PREFIX + "{cid}")
        self._exact = posts
        self._handlers: dict[Any, Handler] = dict(exception_handlers)

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
        # What the router would have set: the log line and metrics read the route.
        scope["route"] = route
        scope["endpoint"] = route.endpoint
        scope["path_params"] = params
        request = Request(scope, receive, send)
        try:
            response = await route.endpoint(request)
        except Exception as exc:
            handler = self._handler(exc)
            if handler is None:
                raise
            response = await handler(request, exc)
        await response(scope, receive, send)

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
