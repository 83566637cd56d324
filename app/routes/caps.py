"""GET /api/caps: each cap with its use in the period now running."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from app.edge.envelope import success_response
from app.events.caps import CapUse, cap_uses
from app.routes.access import require
from app.services import services


class CapList(msgspec.Struct, frozen=True):
    caps: list[CapUse]


async def list_caps(request: Request) -> Response:
    svc = services(request)
    require(request, svc, "viewer")
    await svc.store.flush()
    uses = await cap_uses(svc.catalog.caps, svc.store, svc.clock.now())
    return success_response(200, "OK", CapList(caps=uses))
