"""Firing an event against a lead.

POST /api/event/trigger and POST /api/event/{cid} take a body; their GET forms take the
same fields from the query string, for image pixels and GET-only trackers, and answer a
1x1 GIF instead of JSON with ``format=gif`` (the status code still tells the outcome).
With an Idempotency-Key header (app.events.idempotency) a retry gets the first answer again.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Literal

import msgspec
from msgspec import UNSET, UnsetType
from starlette.requests import Request
from starlette.responses import Response

from actors.messages import FireEvent, Verdict
from app.config.schema import ORGANIC
from app.edge import errors
from app.edge.bodies import form_fields, read_fields
from app.edge.envelope import error_body, success_body, success_response
from app.edge.errors import ApiError
from app.edge.request_info import bind_ids, client_ip, header, user_agent
from app.events import dedupe, idempotency
from app.events.caps import Owed
from app.events.catalog import Catalog
from app.events.currency import in_report_currency, with_rate
from app.events.idempotency import Answer
from app.events.limits import over_limit
from app.events.payloads import Event, parse_event, revenue_of
from app.events.senders import sender_verdict, token_of
from app.observe.logs import annotate
from app.services import Services, services
from storage.errors import StoreBusy, StoreClosed, StoreUnavailable
from storage.records import AnswerRow

_REFUSALS = {
    Verdict.UNKNOWN_TRANSACTION: errors.invalid_transaction,
    Verdict.REVENUE_REQUIRED: errors.revenue_required,
    Verdict.LOCKED: errors.locked,
    Verdict.DUPLICATE: errors.duplicate,
    Verdict.CAP_REACHED: errors.cap_reached,
}
_FIRED = "Event triggered successfully"
# Transaction ids minted by another tracker, accepted by unknown_transactions = "create".
_FOREIGN_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
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
    # Conversions only (left out for other events): approved as it fired, pending, or
    # rejected as it fired, with why (a reason code; null when approved and paid).
    status: Literal["approved", "pending", "rejected"] | UnsetType = UNSET
    reason: str | UnsetType | None = UNSET


class Fired(msgspec.Struct, frozen=True):
    data: EventData
    # Optional fields left out of the event, each with why.
    invalid: dict[str, str]


class _Form(msgspec.Struct, frozen=True):
    """How a route answers: its success status, and JSON or a GIF pixel."""

    success_status: int
    query: bool = False
    gif: bool = False
    # The global route: the campaign is the one that owns the transaction.
    owned: bool = False


async def trigger(request: Request) -> Response:
    return await _handle(request, await read_fields(request), None, _Form(200))


async def trigger_for_campaign(request: Request) -> Response:
    return await _handle(request, await read_fields(request), request.path_params["cid"],
                         _Form(201))


async def trigger_global(request: Request) -> Response:
    return await _handle(request, await read_fields(request), None, _Form(200, owned=True))


async def trigger_global_from_query(request: Request) -> Response:
    raw = form_fields(request.url.query)
    gif = raw.pop("format", None) == "gif"
    return await _handle(request, raw, None, _Form(200, query=True, gif=gif, owned=True))


async def trigger_from_query(request: Request) -> Response:
    return await _from_query(request, path_cid=None, success_status=200)


async def trigger_for_campaign_from_query(request: Request) -> Response:
    return await _from_query(request, path_cid=request.path_params["cid"], success_status=201)


async def _from_query(request: Request, *, path_cid: str | None,
                      success_status: int) -> Response:
    raw = form_fields(request.url.query)
    gif = raw.pop("format", None) == "gif"
    return await _handle(request, raw, path_cid, _Form(success_status, query=True, gif=gif))


async def _handle(request: Request, raw: dict[str, Any], path_cid: str | None,
                  form: _Form) -> Response:
    svc = services(request)
    if not form.gif:
        key = idempotency.key_of(request)
        if form.owned:
            await _owner(svc, raw)
        event, dropped, held = _checked(request, svc, raw, path_cid, form)
        if key is None:  # the common path
            fired = await _fire(request, svc, event, dropped, None, held)
            return success_response(form.success_status, _FIRED, fired.data,
                                    headers=_NO_STORE if form.query else None,
                                    invalid=fired.invalid)
        return await _keyed(request, svc, key, event, dropped, form, held)
    try:
        key = idempotency.key_of(request)
        if form.owned:
            await _owner(svc, raw)
        event, dropped, held = _checked(request, svc, raw, path_cid, form)
        if key is not None:
            return await _keyed(request, svc, key, event, dropped, form, held)
        await _fire(request, svc, event, dropped, None, held)
    except (StoreBusy, StoreClosed):
        return _refusal(errors.busy(), form).response()
    except StoreUnavailable:
        return _refusal(errors.store_unavailable(), form).response()
    except ApiError as error:
        return _refusal(error, form).response()
    return Response(PIXEL, status_code=form.success_status, media_type="image/gif",
                    headers=_NO_STORE)


async def _keyed(request: Request, svc: Services, key: str, event: Event,
                 dropped: dict[str, str], form: _Form, held: str | None) -> Response:
    """Handle a request with an Idempotency-Key: first time as usual, later replayed."""
    keys = svc.keys
    route = f"{request.method} {request.url.path} {'gif' if form.gif else 'json'}"
    fingerprint = idempotency.fingerprint(route, [event.fields, event.extra, dropped])
    replay = await keys.claim(key, fingerprint)
    if replay is not None:
        annotate(outcome="replayed")
        return replay.response(replayed=True)
    queued = False

    def stored(data: EventData) -> AnswerRow:
        nonlocal queued
        queued = True  # built for the event's write op, which is queued next
        return keys.row(key, fingerprint, _success(Fired(data, dropped), form))

    try:
        fired = await _fire(request, svc, event, dropped, stored, held)
    except ApiError as error:
        # Checks 4-10 answer the same way for the same fields: remembered too.
        answer = _refusal(error, form)
        keys.store(key, fingerprint, answer)
        return answer.response()
    except (StoreBusy, StoreClosed):
        keys.release(key)  # refused before the write was queued: a retry is handled anew
        raise
    except BaseException:
        if queued:
            keys.unsettled(key)  # the write, with this key's answer, may still land
        else:
            keys.release(key)  # nothing stored: a retry is handled anew
        raise
    answer = _success(fired, form)
    keys.answered(key, answer)
    return answer.response()


def _success(fired: Fired, form: _Form) -> Answer:
    headers = _NO_STORE if form.query else {}
    if form.gif:
        return Answer(status=form.success_status, content_type="image/gif", headers=headers,
                      body=PIXEL)
    return Answer(status=form.success_status, content_type="application/json",
                  headers=headers,
                  body=success_body(form.success_status, _FIRED, fired.data,
                                    invalid=fired.invalid))


def _refusal(error: ApiError, form: _Form) -> Answer:
    """The answer the app gives ``error``: the JSON envelope, or the pixel with its status."""
    annotate(outcome=error.outcome)
    headers = error.headers or {}
    if form.gif:
        return Answer(status=error.status, content_type="image/gif",
                      headers=_NO_STORE | headers, body=PIXEL)
    return Answer(status=error.status, content_type="application/json", headers=headers,
                  body=error_body(error.status, error.message, missing=error.missing,
                                  invalid=error.invalid, code=error.code))


async def _owner(svc: Services, raw: dict[str, Any]) -> None:
    """Put the cid of the campaign that owns the transaction into ``raw``.

    The global route looks the transaction up before any other check: without it there
    is no campaign to check against.
    """
    missing = [name for name in ("event_id", "transaction_id") if raw.get(name) in (None, "")]
    if missing:
        raise errors.required(missing)
    transaction_id = raw["transaction_id"]
    if not isinstance(transaction_id, str) or len(transaction_id) > 255:
        raise errors.malformed_transaction()
    lead = await svc.registry.lead_of(transaction_id)
    if lead is None:
        raise errors.malformed_transaction()
    sent = raw.get("cid")
    if sent is not None and sent != "" and sent != lead[0]:
        raise errors.cid_not_owner()
    raw["cid"] = lead[0]


def _checked(request: Request, svc: Services, raw: dict[str, Any], path_cid: str | None,
             form: _Form) -> tuple[Event, dict[str, str], str | None]:
    """Checks 1-3: the event's fields, those of them it fires without, and check 4c: why
    the sender's conversion is held, or None."""
    # Out of the fields before anything reads them: a token is never stored or logged.
    token = token_of(header(request, b"authorization"),
                     raw.pop("token", None) if form.query else None)
    if path_cid is not None:
        sent = raw.get("cid")
        if sent is not None and sent != "" and sent != path_cid:
            raise errors.cid_mismatch()
        raw["cid"] = path_cid
    bind_ids(raw)
    event = with_rate(parse_event(raw), svc.catalog.rates, svc.clock.now())
    dropped = _dropped(svc.catalog, event)
    return event, dropped, _sender_hold(request, svc, event, token)


def _sender_hold(request: Request, svc: Services, event: Event,
                 token: str | None) -> str | None:
    """Check 4c (docs/api.md): refuse a sender the campaign does not trust.

    It runs before an Idempotency-Key is claimed, so a refused sender never sees a stored
    answer and its refusal is not stored: the retry with the right token is handled anew.
    """
    fields = event.fields
    campaign = svc.catalog.find_campaign(fields.cid)
    if campaign is None:
        return None  # check 4 answers
    if not svc.catalog.origin_allowed(campaign, header(request, b"origin")):
        return None  # check 4b answers, before this one
    verdict = sender_verdict(campaign, svc.catalog.find_event(fields.cid, fields.event_id),
                             token, client_ip(request))
    if verdict.refusal is not None:
        raise verdict.refusal()
    return verdict.hold_reason


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


async def _fire(request: Request, svc: Services, event: Event, dropped: dict[str, str],
                stored: Callable[[EventData], AnswerRow] | None,
                sender_hold: str | None = None) -> Fired:
    """Run checks 4-10 and fire the event; raises ApiError on a refusal.

    ``stored`` gives the row that stores the answer, written with the event;
    ``sender_hold`` is why check 4c holds the conversion.
    """
    fields = event.fields
    # Paid, capped, bounded and stored in the report currency from here on.
    amounts = in_report_currency(fields, event.rate)

    plan = svc.catalog.plan(fields.cid, fields.event_id, header(request, b"origin"))
    campaign, configured = plan.campaign, plan.event
    over = over_limit(amounts, plan.bounds)
    if over:
        raise errors.invalid_fields(over)
    create = plan.create
    if create and not _FOREIGN_ID.fullmatch(fields.transaction_id):
        raise errors.malformed_transaction()
    pid = fields.pid
    if pid is None:
        pid = ORGANIC
        if campaign.pid_fallback == "lead":
            # As if the lead's pid had been sent: check 6 applies to it as to any other.
            lead = await svc.registry.lead_of(fields.transaction_id)
            if lead is not None and lead[0] == fields.cid:
                pid = lead[1]
    owed = plan.priced(pid)

    event_fields, lead_fields = event.stored_fields()
    revenue = revenue_of(amounts)
    payout = rule = None
    if configured.conversion and revenue is not None:
        rule = owed.rule
        payout = None if owed.payout is None else owed.payout.amount(revenue)
    pending = plan.pending
    capped = owed.caps

    def data(conversion_id: str, status: str, reason: str | None) -> EventData:
        """The answer's data, with the status and reason the actor fired it with."""
        if not configured.conversion:
            return EventData(cid=fields.cid, pid=pid, transaction_id=fields.transaction_id,
                             conversion_id=conversion_id, conversion=configured.conversion)
        return EventData(cid=fields.cid, pid=pid, transaction_id=fields.transaction_id,
                         conversion_id=conversion_id, conversion=configured.conversion,
                         status=status, reason=reason)  # type: ignore[arg-type]

    answer_row = None if stored is None else (
        lambda conversion_id, status, reason: stored(data(conversion_id, status, reason)))
    secret = svc.config.server.dedupe_secret
    # Without dedupe, screen answers NOTHING: not awaited, the common event skips a coroutine.
    screened = dedupe.NOTHING if campaign.dedupe is None or secret is None else (
        await dedupe.screen(
            svc.store, campaign.dedupe, secret, cid=fields.cid,
            transaction_id=fields.transaction_id, lead_fields=lead_fields,
            conversion=configured.conversion, now=svc.clock.now(),
            settle=svc.config.server.durability == "write-behind"))
    message = FireEvent(
        transaction_id=fields.transaction_id,
        cid=fields.cid,
        event_id=fields.event_id,
        pid=pid,
        conversion=configured.conversion,
        once=not configured.allow_duplicates,
        revenue=revenue,
        payout=payout,
        cost=amounts.cost,
        cost_operation=event.cost_operation,
        lead_fields=lead_fields,
        lead_keys=screened.keys,
        duplicate_of=screened.duplicate_of,
        duplicate_action=screened.action,
        event_fields=event_fields,
        converted_at=event.converted_at,
        ip=client_ip(request),
        user_agent=user_agent(request),
        postbacks=svc.planner.wants(fields.cid, fields.event_id, pid,
                                    configured.conversion, pending=pending),
        pending=pending,
        hold_revenue_above=configured.hold_revenue_above,
        hold_reason=sender_hold,
        answer=answer_row,
        create=create,
        payout_rule=rule,
        caps=Owed(svc.catalog.caps, capped, revenue, payout) if capped else None,
        min_seconds_after_click=configured.min_seconds_after_click,
        max_days_after_click=configured.max_days_after_click,
        original_revenue=event.revenue if event.rate is not None else None,
        currency=fields.currency if event.rate is not None else None,
        rate=event.rate,
    )
    reply = await svc.registry.fire(message)
    # Looked up only for a refusal: hashing an Enum member runs Python code (~1 us).
    if reply.verdict is not Verdict.FIRED:
        refusal = _REFUSALS.get(reply.verdict)
        if refusal is not None:
            raise refusal()
    annotate(outcome="converted" if reply.conversion_id else "fired")
    return Fired(data(reply.conversion_id, reply.status, reply.reason), dropped)
