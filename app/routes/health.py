"""GET /healthz: 200 while the store commits writes, 503 otherwise."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from app.edge import errors
from app.edge.envelope import success_response
from app.services import services


class HealthData(msgspec.Struct):
    store: str
    pending_writes: int
    live_actors: int
    # sha256 of the config in force (the same in /metrics' event_postback_config_info).
    config_sha256: str


async def healthz(request: Request) -> Response:
    svc = services(request)
    if not await svc.store.healthy():
        raise errors.store_not_writable()
    return success_response(200, "OK", HealthData(
        store="writable",
        pending_writes=svc.store.writer.pending,
        live_actors=len(svc.registry),
        config_sha256=svc.metrics.config_sha256,
    ))
