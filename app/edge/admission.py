"""A bound on requests in flight: past it, answer 503 at once instead of queueing."""

from __future__ import annotations

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.edge import errors
from app.edge.envelope import error_response
from app.observe.logs import annotate

# Health checks must still get through when the service is saturated.
_ALWAYS_ADMITTED = frozenset({"/healthz"})


class InFlight:
    """The requests in flight and their bound, shared by every way a request comes in
    (this middleware and the event fast path), so the bound holds over all of them."""

    __slots__ = ("count", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0


class AdmissionMiddleware:
    """Refuses requests beyond ``limit`` in flight with 503 "Server busy" and Retry-After.

    Past saturation every extra request only lengthens the queue; a fast refusal tells
    the client (and the SDK's retry) to come back, and keeps the latency of the admitted
    ones bounded.
    """

    def __init__(self, app: ASGIApp, limit: int | None = None, *,
                 slots: InFlight | None = None) -> None:
        self.app = app
        if slots is None:
            assert limit is not None, "a limit or the slots that hold one"
            slots = InFlight(limit)
        self.slots = slots

    @property
    def in_flight(self) -> int:
        return self.slots.count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _ALWAYS_ADMITTED:
            await self.app(scope, receive, send)
            return
        slots = self.slots
        if slots.count >= slots.limit:
            await overloaded()(scope, receive, send)
            return
        slots.count += 1
        try:
            await self.app(scope, receive, send)
        finally:
            slots.count -= 1


def overloaded() -> Response:
    """The 503 answer to a request past the bound, with its outcome on the log line."""
    annotate(outcome="overloaded")
    return error_response(errors.busy())
