"""Firing an event against a lead.

POST /api/event/trigger and POST /api/event/{cid} take a body; their GET forms take the
same fields from the query string, for image pixels and GET-only trackers, and answer a
1x1 GIF instead of JSON with ``format=gif`` (the status code still tells the outcome).
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from actors.messages import FireEvent, Verdict
from app import errors
from app.bodies import form_fields, read_fields
from app.catalog import Catalog
from app.config import ORGANIC
from app.envelope import success_response
from app.errors import ApiError
from app.logs import annotate
from app.payloads import Event, parse_event
from app.request_info import bind_ids, client_ip, header, user_agent
from app.services import services
from storage.writer import StoreBusy, StoreClosed, StoreUnavailable

_REFUSALS = {
    Verdict.UNKNOWN_TRANSACTION: errors.invalid_transaction,
    Verdict.REVENUE_REQUIRED: errors.revenue_required,
    Verdict.LOCKED: errors.locked,
    Verdict.DUPLICATE: errors.duplicate,
}
_FIRED = "Event triggered successfully"
# A transparent 1x1 GIF89a.
PIXEL = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b")
_NO_STORE = {"Cache-Control": "no-store"}


class EventData(msgspec.Struct):
    cid: str
    pid: str
    transaction_id: str
    conversion_id: str
    conversion: bool


class Fired(msgspec.Struct, frozen=True):
    data: EventData
    # Optional fields left out of the event, each with why.
    invalid: dict[str, str]


async def trigger(request: Request) -> Response:
    fired = await _fire(request, await read_fields(request), path_cid=None)
    return success_response(200, _FIRED, fired.data, invalid=fired.invalid)


async def trigger_for_campaign(request: Request) -> Response:
    fired = await _fire(request, await read_fields(request),
                        path_cid=request.path_params["cid"])
    return success_response(201, _FIRED, fired.data, invalid=fired.invalid)


async def trigger_from_query(request: Request) -> Response:
    return await _from_query(request, path_cid=None, success_status=200)


async def trigger_for_campaign_from_query(request: Request) -> Response:
    return await _from_query(request, path_cid=request.path_params["cid"], success_status=201)


async def _from_query(request: Request, *, path_cid: str | None,
                      success_status: int) -> Response:
    raw = form_fields(request.url.query)
    if raw.pop("format", None) != "gif":
        fired = await _fire(request, raw, path_cid=path_cid)
        return success_response(success_status, _FIRED, fired.data, headers=_NO_STORE,
                                invalid=fired.invalid)
    try:
        await _fire(request, raw, path_cid=path_cid)
    except (StoreBusy, StoreClosed):
        return _pixel(errors.busy())
    except StoreUnavailable:
        return _pixel(errors.store_unavailable())
    except ApiError as error:
        return _pixel(error)
    return Response(PIXEL, status_code=success_status, media_type="image/gif",
                    headers=_NO_STORE)


def _pixel(error: ApiError) -> Response:
    annotate(outcome=error.outcome)
    return Response(PIXEL, status_code=error.status, media_type="image/gif",
                    headers=_NO_STORE | (error.headers or {}))


def _dropped(catalog: Catalog, event: Event) -> dict[str, str]:
    """The invalid fields the event fires without; raises check 3's 400 if any refuses it.

    Only a campaign that is known and not ``strict_fields`` drops fields, and on a
    conversion its revenue field still refuses; otherwise the answer is what check 3 has
    always given, before any later check.
    """
    if not event.invalid:
        return {}
    fields = event.fields
    campaign = catalog.find_campaign(fields.cid)
    configured = catalog.find_event(fields.cid, fields.event_id)
    if campaign is None or campaign.strict_fields or configured is None:
        raise errors.invalid_fields(event.invalid)
    refusing = event.refusing(conversion=configured.conversion)
    if refusing:
        raise errors.invalid_fields(refusing)
    annotate(dropped_fields=list(event.invalid))
    return event.invalid


async def _fire(request: Request, raw: dict[str, Any], *, path_cid: str | None) -> Fired:
    """Run every check on the fields and fire the event; raises ApiError on a refusal."""
    svc = services(request)
    if path_cid is not None:
        sent = raw.get("cid")
        if sent is not None and sent != "" and sent != path_cid:
            raise errors.cid_mismatch()
        raw["cid"] = path_cid
    bind_ids(raw)
    event = parse_event(raw)
    dropped = _dropped(svc.catalog, event)
    fields = event.fields

    campaign = svc.catalog.campaign(fields.cid)
    svc.catalog.check_origin(campaign, header(request, b"origin"))
    configured = svc.catalog.event(fields.cid, fields.event_id)
    pid = fields.pid
    if pid is None:
        pid = ORGANIC
        if campaign.pid_fallback == "lead":
            # As if the lead's pid had been sent: check 6 applies to it as to any other.
            lead = await svc.registry.lead_of(fields.transaction_id)
            if lead is not None and lead[0] == fields.cid:
                pid = lead[1]
    source = svc.catalog.source(pid)

    event_fields, lead_fields = event.stored_fields()
    revenue = event.revenue
    payout = None
    if configured.conversion and revenue is not None and source.payout is not None:
        payout = source.payout.amount(revenue)
    reply = await svc.registry.fire(FireEvent(
        transaction_id=fields.transaction_id,
        cid=fields.cid,
        event_id=fields.event_id,
        pid=pid,
        conversion=configured.conversion,
        once=not configured.allow_duplicates,
        revenue=revenue,
        payout=payout,
        cost=fields.cost,
        cost_operation=event.cost_operation,
        lead_fields=lead_fields,
        event_fields=event_fields,
        converted_at=event.converted_at,
        ip=client_ip(request),
        user_agent=user_agent(request),
        postbacks=svc.planner.wants(fields.cid, fields.event_id, pid,
                                    configured.conversion),
    ))
    refusal = _REFUSALS.get(reply.verdict)
    if refusal is not None:
        raise refusal()
    annotate(outcome="converted" if reply.conversion_id else "fired")
    return Fired(EventData(
        cid=fields.cid,
        pid=pid,
        transaction_id=fields.transaction_id,
        conversion_id=reply.conversion_id,
        conversion=configured.conversion,
    ), dropped)
