"""POST /api/click and GET /api/click: mint a lead and its transaction id."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

import msgspec
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from actors.messages import CreateLead
from app.edge.bodies import form_fields, read_fields
from app.edge.envelope import success_response
from app.edge.request_info import bind_ids, client_ip, header, user_agent
from app.events import dedupe
from app.events.payloads import parse_click
from app.observe.logs import annotate
from app.services import services


class ClickData(msgspec.Struct):
    transaction_id: str
    cid: str
    pid: str


async def click_from_body(request: Request) -> Response:
    return await _click(request, await read_fields(request), redirect=False)


async def click_from_query(request: Request) -> Response:
    """The query-string form; answers 302 to the campaign's landing page when it has one."""
    return await _click(request, form_fields(request.url.query), redirect=True)


async def _click(request: Request, raw: dict[str, Any], *, redirect: bool) -> Response:
    svc = services(request)
    bind_ids(raw)
    click = parse_click(raw)
    fields = click.fields
    campaign = svc.catalog.campaign(fields.cid)
    svc.catalog.check_origin(campaign, header(request, b"origin"))
    svc.catalog.source(fields.pid)

    transaction_id = f"txn_{uuid.uuid4()}"
    annotate(transaction_id=transaction_id)
    lead_fields = click.lead_fields()
    await svc.registry.create_lead(CreateLead(
        transaction_id=transaction_id,
        cid=fields.cid,
        pid=fields.pid,
        fields=lead_fields,
        ip=client_ip(request),
        user_agent=user_agent(request),
        lead_keys=dedupe.keys_of(campaign.dedupe, svc.config.server.dedupe_secret,
                                 fields.cid, lead_fields),
    ))
    annotate(outcome="lead_created")
    if redirect and campaign.landing_url:
        values = {"transaction_id": transaction_id, "cid": fields.cid, "pid": fields.pid}
        url = campaign.landing_url
        for name, value in values.items():
            url = url.replace("{" + name + "}", quote(value, safe=""))
        return RedirectResponse(url, status_code=302)
    return success_response(200, "Click recorded", ClickData(
        transaction_id=transaction_id, cid=fields.cid, pid=fields.pid))
