"""POST /api/event/trigger and POST /api/event/{cid}: fire an event against a lead."""

from __future__ import annotations

import msgspec
import structlog
from starlette.requests import Request
from starlette.responses import Response

from actors.messages import FireEvent, Verdict
from app import errors
from app.bodies import read_fields
from app.envelope import success_response
from app.payloads import parse_event
from app.routes.request_info import bind_ids, client_ip, user_agent
from app.services import services

_REFUSALS = {
    Verdict.UNKNOWN_TRANSACTION: errors.invalid_transaction,
    Verdict.REVENUE_REQUIRED: errors.revenue_required,
    Verdict.LOCKED: errors.locked,
    Verdict.DUPLICATE: errors.duplicate,
}


class EventData(msgspec.Struct):
    cid: str
    pid: str
    transaction_id: str
    conversion_id: str
    conversion: bool


async def trigger(request: Request) -> Response:
    return await _fire(request, path_cid=None, success_status=200)


async def trigger_for_campaign(request: Request) -> Response:
    return await _fire(request, path_cid=request.path_params["cid"], success_status=201)


async def _fire(request: Request, *, path_cid: str | None, success_status: int) -> Response:
    svc = services(request)
    raw = await read_fields(request)
    if path_cid is not None:
        sent = raw.get("cid")
        if sent is not None and sent != "" and sent != path_cid:
            raise errors.cid_mismatch()
        raw["cid"] = path_cid
    bind_ids(raw)
    event = parse_event(raw)
    fields = event.fields

    svc.catalog.campaign(fields.cid)
    configured = svc.catalog.event(fields.cid, fields.event_id)
    source = svc.catalog.source(fields.pid)

    revenue = event.revenue
    payout = None
    if configured.conversion and revenue is not None and source.payout is not None:
        payout = source.payout.amount(revenue)
    reply = await svc.registry.fire(FireEvent(
        transaction_id=fields.transaction_id,
        cid=fields.cid,
        event_id=fields.event_id,
        pid=fields.pid,
        conversion=configured.conversion,
        once=not configured.allow_duplicates,
        revenue=revenue,
        payout=payout,
        cost=fields.cost,
        cost_operation=event.cost_operation,
        lead_fields=event.lead_fields(),
        event_fields=event.event_fields(),
        converted_at=event.converted_at,
        ip=client_ip(request),
        user_agent=user_agent(request),
        postbacks=svc.planner.wants(fields.cid, fields.event_id, fields.pid,
                                    configured.conversion),
    ))
    refusal = _REFUSALS.get(reply.verdict)
    if refusal is not None:
        raise refusal()
    structlog.contextvars.bind_contextvars(
        outcome="converted" if reply.conversion_id else "fired")
    return success_response(success_status, "Event triggered successfully", EventData(
        cid=fields.cid,
        pid=fields.pid,
        transaction_id=fields.transaction_id,
        conversion_id=reply.conversion_id,
        conversion=configured.conversion,
    ))
