"""The conversions API, behind the admin token: list, inspect, approve, reject, reverse."""

from __future__ import annotations

import datetime as dt
from typing import Any, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from app.conversions.desk import ChangeResult
from app.conversions.payloads import BulkBody, ChangeBody, ConversionQuery
from app.conversions.rules import Action
from app.edge import errors
from app.edge.bodies import form_fields
from app.edge.envelope import success_response
from app.observe.logs import annotate
from app.routes.access import require
from app.routes.partner import conversion_for, is_partner, sees_conversion
from app.services import services
from storage.records import ConversionView

T = TypeVar("T", bound=msgspec.Struct)


class ConversionPage(msgspec.Struct):
    conversions: list[ConversionView]
    # Pass as ``cursor`` for the next (older) page; null on the last one.
    next_cursor: int | None


class BulkData(msgspec.Struct):
    changed: int
    results: list[ChangeResult]


async def list_conversions(request: Request) -> Response:
    """GET /api/conversions: newest first, one page at a time."""
    svc = services(request)
    caller = require(request, svc, "viewer", partner=True)
    # As in every other query and body, a filter sent empty (`?status=&cid=`) is not sent.
    sent = {name: value for name, value in form_fields(request.url.query).items() if value}
    query = _convert(sent, ConversionQuery)
    if is_partner(caller):
        query = msgspec.structs.replace(query, pid=caller.pid)
    first = _day(query.from_day, "from")
    last = _day(query.to_day, "to")
    await svc.store.flush()
    found = await svc.store.conversions(
        status=query.status, reason=query.reason, cid=query.cid, pid=query.pid,
        converted_from=first.isoformat() if first else None,
        converted_before=(last + dt.timedelta(days=1)).isoformat() if last else None,
        before_id=query.cursor, limit=query.limit + 1)
    page = found[:query.limit]
    next_cursor = page[-1][0] if len(found) > query.limit else None
    return success_response(200, "OK", ConversionPage(
        conversions=[conversion_for(caller, view) for _, view in page],
        next_cursor=next_cursor))


async def show_conversion(request: Request) -> Response:
    """GET /api/conversions/{id}: the conversion and its history."""
    svc = services(request)
    caller = require(request, svc, "viewer", partner=True)
    await svc.store.flush()
    found = await svc.store.conversion(request.path_params["conversion_id"])
    # Another source's conversion is no partner's to know of.
    if found is None or not sees_conversion(caller, found):
        raise errors.conversion_not_found()
    return success_response(200, "OK", conversion_for(caller, found))


async def approve(request: Request) -> Response:
    return await _change(request, "approve")


async def reject(request: Request) -> Response:
    return await _change(request, "reject")


async def reverse(request: Request) -> Response:
    return await _change(request, "reverse")


async def bulk(request: Request) -> Response:
    """POST /api/conversions/bulk: one action on up to 1,000 conversions, atomically."""
    svc = services(request)
    caller = require(request, svc, "operator")
    body = _decode(await request.body(), BulkBody)
    results = await svc.conversions.change(body.conversion_ids, body.action, body.reason,
                                           "bulk", token=caller.name)
    changed = sum(result.result == "changed" for result in results)
    annotate(outcome="conversions_changed", changed=changed)
    return success_response(200, "OK", BulkData(changed=changed, results=results))


async def _change(request: Request, action: Action) -> Response:
    svc = services(request)
    caller = require(request, svc, "operator")
    body = await request.body()
    reason = _decode(body, ChangeBody).reason if body.strip() else None
    conversion_id: str = request.path_params["conversion_id"]
    [result] = await svc.conversions.change([conversion_id], action, reason, "api",
                                            token=caller.name)
    if result.result == "unknown":
        raise errors.conversion_not_found()
    if result.result == "already":
        raise errors.conversion_already(result.status or "")
    annotate(outcome=f"conversion_{result.status}")
    return success_response(200, f"Conversion {result.status}",
                            await svc.store.conversion(conversion_id))


def _decode(body: bytes, kind: type[T]) -> T:
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        raise _invalid(exc) from None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        raise errors.invalid_json() from None


def _convert(raw: dict[str, Any], kind: type[T]) -> T:
    try:
        return msgspec.convert(raw, kind, strict=False)
    except msgspec.ValidationError as exc:
        raise _invalid(exc) from None


def _invalid(exc: msgspec.ValidationError) -> errors.ApiError:
    return errors.invalid_from(exc, "body")


def _day(text: str | None, name: str) -> dt.date | None:
    """A real calendar day (the pattern alone lets 2026-02-30 through)."""
    if text is None:
        return None
    try:
        day = dt.date.fromisoformat(text)
        day + dt.timedelta(days=1)  # 9999-12-31 has no next day to stop before
    except (ValueError, OverflowError):
        raise errors.invalid_fields({name: "Expected a date YYYY-MM-DD"}) from None
    return day
