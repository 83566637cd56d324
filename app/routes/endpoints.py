"""Postback endpoints behind the admin token: their health, resume, and recovering dead
letters of a time range."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from actors.clock import Clock, utc_text
from app.config.endpoints import endpoints_of
from app.config.schema import Config
from app.edge import errors
from app.edge.envelope import success_response
from app.routes.access import require
from app.services import Services, services
from storage.backend import EventStore
from storage.endpoints import EndpointHealth, EndpointView, Requeue
from storage.records import WriteOp

DAY = timedelta(hours=24)


class RequeueData(msgspec.Struct, frozen=True, kw_only=True):
    requeued: int
    endpoint: str | None = None


class RecoverQuery(msgspec.Struct, frozen=True, kw_only=True):
    """The query of POST /api/postbacks/recover (parsed by ``moment``)."""

    from_: str = msgspec.field(name="from")
    to: str
    endpoint: str | None = None


class Parts(Protocol):
    """What reading endpoints takes: a request's Services, or the command line's store."""

    @property
    def config(self) -> Config: ...
    @property
    def store(self) -> EventStore: ...
    @property
    def clock(self) -> Clock: ...


def names_by_key(svc: Parts) -> dict[str, str]:
    return {endpoint.key: name for name, endpoint in endpoints_of(svc.config).items()}


async def endpoint_views(svc: Parts, *, counts: bool = True) -> list[EndpointView]:
    """Every configured or attempted endpoint's health, named as the config names it;
    ``counts`` adds its postbacks by status."""
    names = names_by_key(svc)
    since = utc_text(svc.clock.now() - DAY)
    return [_view(health, names.get(health.endpoint, health.endpoint))
            for health in await svc.store.endpoint_health(list(names), since, counts=counts)]


def _view(health: EndpointHealth, name: str) -> EndpointView:
    rate = (None if not health.attempts_24h else
            str((Decimal(health.delivered_24h) / health.attempts_24h).quantize(
                Decimal("0.0001"))))
    return EndpointView(name=name, success_rate_24h=rate, **msgspec.structs.asdict(health))


async def list_endpoints(request: Request) -> Response:
    """GET /api/endpoints: each endpoint's state, postbacks by status, last day's rate."""
    svc = services(request)
    require(request, svc, "viewer")
    await svc.store.flush()
    return success_response(200, "OK", await endpoint_views(svc))


async def key_of(svc: Parts, name: str) -> str:
    """The endpoint a name (or a key, for one no longer configured) stands for."""
    configured = endpoints_of(svc.config).get(name)
    if configured is not None:
        return configured.key
    if any(health.endpoint == name
           for health in await svc.store.endpoint_health([], utc_text(svc.clock.now()),
                                                         counts=False)):
        return name
    raise errors.endpoint_not_found()


async def requeue(svc: Services, order: Requeue) -> int:
    """Commit a re-queue; how many postbacks it made pending."""
    await svc.store.commit(WriteOp(requeue=order))
    svc.dispatcher.wake()
    return order.counted[0]


async def resume_endpoint(request: Request) -> Response:
    """POST /api/endpoints/{name}/resume: active again, its paused postbacks due now."""
    svc = services(request)
    caller = require(request, svc, "operator")
    name = request.path_params["name"]
    key = await key_of(svc, name)
    count = await requeue(svc, Requeue(action="resume", endpoint=key,
                                       now=utc_text(svc.clock.now()), token=caller.name))
    return success_response(200, "Endpoint resumed", RequeueData(requeued=count,
                                                                  endpoint=name))


def moment(raw: str | None, name: str) -> str:
    """An ISO 8601 time with its offset (``2026-12-02T15:00:00Z``), as stored UTC text."""
    if raw is None or raw == "":
        raise errors.required([name])
    try:
        parsed = datetime.fromisoformat(raw)
        # In UTC, a time at either end of the calendar passes it (0001-01-01T00:00+01:00).
        text = None if parsed.tzinfo is None else utc_text(parsed)
    except (ValueError, OverflowError):
        text = None
    if text is None:
        raise errors.invalid_fields({name: "expected an ISO 8601 time with its offset, "
                                           "such as 2026-12-02T15:00:00Z"})
    return text


async def recover_postbacks(request: Request) -> Response:
    """POST /api/postbacks/recover?from=&to=&endpoint=: dead letters created in
    [from, to) due again now (of one endpoint, if named)."""
    svc = services(request)
    caller = require(request, svc, "operator")
    query = request.query_params
    start, end = moment(query.get("from"), "from"), moment(query.get("to"), "to")
    if start >= end:
        raise errors.invalid_fields({"to": "must be later than from"})
    name = query.get("endpoint") or None
    key = None if name is None else await key_of(svc, name)
    count = await requeue(svc, Requeue(action="recover", endpoint=key, created_from=start,
                                       created_to=end, now=utc_text(svc.clock.now()),
                                       token=caller.name))
    return success_response(200, "Postbacks recovered", RequeueData(requeued=count,
                                                                    endpoint=name))
