"""GET /healthz: 200 while the store commits writes, 503 otherwise."""

from __future__ import annotations

import os

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from app.edge import errors
from app.edge.envelope import success_response
from app.services import services

HEALTH_TIMEOUT_SECONDS = 0.8


class HealthData(msgspec.Struct):
    store: str
    pending_writes: int
    live_actors: int
    # sha256 of the config in force (the same in /metrics' event_postback_config_info).
    config_sha256: str
    # The catalog version this process serves (0: the config file's catalog).
    catalog_version: int
    # This process, one of several behind a port with serve --workers N.
    process_id: int


async def healthz(request: Request) -> Response:
    svc = services(request)
    # Within a second whatever the database does: a load balancer's probe must not hang.
    if not await svc.store.healthy(timeout=HEALTH_TIMEOUT_SECONDS):
        raise errors.store_not_writable()
    return success_response(200, "OK", HealthData(
        store="writable",
        pending_writes=svc.store.writer.pending,
        live_actors=len(svc.registry),
        config_sha256=svc.metrics.config_sha256,
        catalog_version=svc.catalog_version,
        process_id=os.getpid(),
    ))
