"""POST /api/endpoints/{name}/test: a sample conversion sent once to a configured endpoint."""

from __future__ import annotations

import time

import structlog
from starlette.requests import Request
from starlette.responses import Response

from app.config.endpoints import endpoints_of
from app.edge import errors
from app.edge.envelope import success_response
from app.postbacks.probe import client_for, probe
from app.routes.access import require
from app.services import services

log = structlog.get_logger("app.postbacks")


async def send_test_request(request: Request) -> Response:
    """Render a sample conversion through the endpoint's first configured entry, sign it,
    send it once and show both sides; nothing of it is stored, the endpoint's health
    included (a failing test must not pause the endpoint)."""
    svc = services(request)
    require(request, svc, "operator")
    name = request.path_params["name"]
    endpoint = endpoints_of(svc.config).get(name)
    if endpoint is None:
        raise errors.endpoint_not_found()
    async with client_for(svc.config.delivery) as client:
        result = await probe(endpoint, svc.config, client=client, now=svc.clock.now(),
                             timer=time.perf_counter)
    log.info("endpoint_tested", endpoint=name,
             status=None if result.response is None else result.response.status,
             error=result.error, latency_ms=result.latency_ms)
    return success_response(200, "Test request sent", result)
