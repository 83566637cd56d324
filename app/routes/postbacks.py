"""The postback delivery log, behind the admin token: list, inspect, resend."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from actors.clock import utc_text
from app.edge import errors
from app.edge.bodies import form_fields
from app.edge.envelope import success_response
from app.events.payloads import parse_postback_query
from app.postbacks.retry import manual_retry
from app.routes.access import Caller, require
from app.routes.partner import is_partner, sees_postback
from app.services import services
from storage.errors import PostbackBeingSent
from storage.records import PostbackView, WriteOp

# SQLite's integers are 64-bit: a larger id cannot exist, and binding it would overflow.
_MAX_ID = 2**63 - 1


def _postback_id(request: Request) -> int:
    postback_id: int = request.path_params["postback_id"]
    if postback_id > _MAX_ID:
        raise errors.postback_not_found()
    return postback_id


async def list_postbacks(request: Request) -> Response:
    """GET /api/postbacks?status=&cid=&limit=: newest first."""
    svc = services(request)
    caller = require(request, svc, "viewer", partner=True)
    query = parse_postback_query(form_fields(request.url.query))
    await svc.store.flush()
    found = await svc.store.postbacks(status=query.status, cid=query.cid, limit=query.limit,
                                      source=caller.pid if is_partner(caller) else None)
    return success_response(200, "OK", [shown_to(caller, view) for view in found])


async def show_postback(request: Request) -> Response:
    """GET /api/postbacks/{id}: the postback and every attempt to deliver it."""
    svc = services(request)
    caller = require(request, svc, "viewer", partner=True)
    await svc.store.flush()
    found = await svc.store.postback(_postback_id(request))
    if found is None or not sees_postback(caller, found):
        raise errors.postback_not_found()
    return success_response(200, "OK", shown_to(caller, found))


def shown_to(caller: Caller, view: PostbackView) -> PostbackView:
    """The postback as the caller may see it: which operator re-queued it is no partner's
    business."""
    if is_partner(caller) and view.requeued_by is not None:
        return msgspec.structs.replace(view, requeued_by=None)
    return view


async def retry_postback(request: Request) -> Response:
    """POST /api/postbacks/{id}/retry: send a failed (or waiting) postback now; 409 while
    one is being delivered (by any process) or once delivered."""
    svc = services(request)
    caller = require(request, svc, "operator")
    postback_id = _postback_id(request)
    await svc.store.flush()
    found = await svc.store.postback(postback_id)
    if found is None:
        raise errors.postback_not_found()
    if found.status == "delivered":
        raise errors.postback_delivered()
    if svc.dispatcher.delivering(postback_id):
        raise errors.postback_being_delivered()
    change = manual_retry(found, utc_text(svc.clock.now()), token=caller.name)
    try:
        # Refused by the store when another process holds the postback's lease, or an
        # attempt was recorded since it was read: two sends at once would reach the buyer.
        await svc.store.commit(WriteOp(postback_change=change))
    except PostbackBeingSent:
        now = await svc.store.postback(postback_id)
        if now is not None and now.status == "delivered":
            raise errors.postback_delivered() from None
        raise errors.postback_being_delivered() from None
    svc.dispatcher.wake()
    return success_response(202, "Postback retry scheduled",
                            await svc.store.postback(postback_id))
