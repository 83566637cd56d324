"""A bound on requests in flight: past it, answer 503 at once instead of queueing."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from app.edge import errors
from app.edge.envelope import error_response
from app.observe.logs import annotate

# Health checks must still get through when the service is saturated.
_ALWAYS_ADMITTED = frozenset({"/healthz"})


class AdmissionMiddleware:
    """Refuses requests beyond ``limit`` in flight with 503 "Server busy" and Retry-After.

    Past saturation every extra request only lengthens the queue; a fast refusal tells
    the client (and the SDK's retry) to come back, and keeps the latency of the admitted
    ones bounded.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _ALWAYS_ADMITTED:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            busy = errors.busy()
            annotate(outcome="overloaded")
            await error_response(busy)(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
