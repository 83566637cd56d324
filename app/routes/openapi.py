"""The OpenAPI 3.1 document, generated at start-up from the Structs the routes use.

Request fields and answer bodies come from ``msgspec.json.schema_components`` over the
same Structs that parse requests and encode answers, so the document cannot drift from the
code; this module only says which route takes and answers which Struct, with which status
codes. A test checks that every route of the app is described and that the app's answers
match (schemathesis).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any

import msgspec

from app.conversions.payloads import BulkBody, ChangeBody, ConversionQuery
from app.edge.envelope import ErrorEnvelope
from app.events.payloads import ClickFields, EventFields, PostbackQuery
from app.reports.figures import Report
from app.reports.params import ReportQuery
from app.routes.admin import BackupData
from app.routes.clicks import ClickData
from app.routes.conversions import BulkData, ConversionPage
from app.routes.events import EventData
from app.routes.health import HealthData
from app.routes.operate import ReloadData, ReloadQuery
from storage.records import ConversionView, PostbackView, TransactionView

_REF = "#/components/schemas/{name}"
_STRUCTS: tuple[Any, ...] = (ClickFields, EventFields, PostbackQuery, ClickData, EventData,
                             TransactionView, PostbackView, BackupData, ReloadData, ReloadQuery,
                             HealthData, ErrorEnvelope, ConversionQuery, ConversionPage,
                             ConversionView, ChangeBody, BulkBody, BulkData, ReportQuery,
                             Report)
_ADMIN: list[dict[str, list[str]]] = [{"adminToken": []}]
# An event route takes a campaign's event token, or none (its anonymous policy decides).
_EVENT_SENDER: list[dict[str, list[str]]] = [{}, {"eventToken": []}]
_EVENT_PREFIX = "/api/event/"


@dataclass(frozen=True)
class _Op:
    summary: str
    # Status -> (description, schema of ``data`` or None for the error envelope).
    answers: dict[int, tuple[str, Any]]
    body: type | None = None
    query: type | None = None
    path: dict[str, dict[str, Any]] = field(default_factory=dict)
    admin: bool = False
    description: str = ""
    media: dict[int, dict[str, Any]] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    optional_body: bool = False


_TEXT = {"type": "string"}
_GIF = {"image/gif": {"schema": {"type": "string", "format": "binary"}}}
_BAD = (400, ("Missing or invalid fields, or an id the configuration does not know",
              None))
_FORBIDDEN = (403, ("Source inactive, origin not allowed, or a concurrent event", None))
_UNAUTHORIZED = (401, ("No or wrong admin bearer token", None))
_NO_TOKEN = (404, ("Not found (also: the read API is off because no admin_token is set)",
                   None))


def _event_answers(success: int) -> dict[int, tuple[str, Any]]:
    return {success: ("Event triggered", EventData), 400: _BAD[1],
            401: ("Invalid token (code invalid_token): a token the campaign does not list, "
                  "or none where its anonymous policy refuses the event", None),
            403: ("Source inactive, origin not allowed, a concurrent event, or IP not allowed "
                  "(code ip_not_allowed): a token from outside the campaign's server_ips",
                  None),
            409: ("A request with this Idempotency-Key is in progress", None),
            422: ("Idempotency-Key reused with different fields", None)}


_IDEMPOTENCY = ("An optional Idempotency-Key header (1-255 printable ASCII characters) makes "
                "a retry safe: a repeat with the same key and fields gets the stored answer "
                "with Idempotent-Replayed: true.")


def _operations(demo: bool) -> dict[str, dict[str, _Op]]:
    cid = {"cid": {"type": "string", "maxLength": 255}}
    postback_id = {"postback_id": {"type": "integer", "minimum": 0}}
    gif = ("Add format=gif to get a 1x1 GIF instead of JSON; the status code still tells "
           "the outcome.")
    table: dict[str, dict[str, _Op]] = {
        "/api/click": {
            "post": _Op("Record a click and mint a transaction id", {
                200: ("Click recorded", ClickData), 400: _BAD[1], 403: _FORBIDDEN[1]},
                body=ClickFields, tags=("tracking",)),
            "get": _Op("Record a click from the query string", {
                200: ("Click recorded", ClickData),
                302: ("Redirect to the campaign's landing page", None),
                400: _BAD[1], 403: _FORBIDDEN[1]}, query=ClickFields, tags=("tracking",)),
        },
        "/api/event/trigger": {
            "post": _Op("Fire an event against a lead", _event_answers(200), body=EventFields,
                        tags=("tracking",), description=_IDEMPOTENCY),
            "get": _Op("Fire an event from the query string", _event_answers(200),
                       query=EventFields, description=gif, media={200: _GIF},
                       tags=("tracking",)),
        },
        "/api/event/global": {
            "post": _Op("Fire an event; the campaign is the one that owns the transaction",
                        _event_answers(200), body=EventFields, tags=("tracking",),
                        description="cid may be left out; if sent it must be the owner's. "
                                    + _IDEMPOTENCY),
            "get": _Op("Fire an event on the owner's campaign, from the query string",
                       _event_answers(200), query=EventFields, description=gif,
                       media={200: _GIF}, tags=("tracking",)),
        },
        "/api/event/{cid}": {
            "post": _Op("Fire an event of the campaign in the path", _event_answers(201),
                        body=EventFields, path=cid, tags=("tracking",),
                        description="cid may be left out of the body; if sent it must "
                                    "match the path. " + _IDEMPOTENCY),
            "get": _Op("Fire an event of the campaign in the path, from the query string",
                       _event_answers(201), query=EventFields, path=cid,
                       description=gif, media={201: _GIF}, tags=("tracking",)),
        },
        "/api/transactions/{transaction_id}": {
            "get": _Op("A lead and its events, in the order they fired", {
                200: ("The transaction", TransactionView), 404: _NO_TOKEN[1]},
                path={"transaction_id": {"type": "string"}}, admin=True, tags=("read",)),
        },
        "/api/postbacks": {
            "get": _Op("Postbacks, newest first", {
                200: ("Postbacks", list[PostbackView]), 400: _BAD[1], 404: _NO_TOKEN[1]},
                query=PostbackQuery, admin=True, tags=("postbacks",)),
        },
        "/api/postbacks/{postback_id}": {
            "get": _Op("A postback and every attempt to deliver it", {
                200: ("The postback", PostbackView), 404: _NO_TOKEN[1]},
                path=postback_id, admin=True, tags=("postbacks",)),
        },
        "/api/postbacks/{postback_id}/retry": {
            "post": _Op("Send a failed or waiting postback now", {
                202: ("Retry scheduled", PostbackView), 404: _NO_TOKEN[1],
                409: ("Already delivered", None)},
                path=postback_id, admin=True, tags=("postbacks",)),
        },
        "/api/conversions": {
            "get": _Op("Conversions, newest first, a page at a time", {
                200: ("Conversions", ConversionPage), 400: _BAD[1], 404: _NO_TOKEN[1]},
                query=ConversionQuery, admin=True, tags=("conversions",)),
        },
        "/api/conversions/bulk": {
            "post": _Op("One status change on up to 1,000 conversions, in one transaction", {
                200: ("One result per id", BulkData), 400: _BAD[1], 404: _NO_TOKEN[1]},
                body=BulkBody, admin=True, tags=("conversions",)),
        },
        "/api/conversions/{conversion_id}": {
            "get": _Op("A conversion and its history", {
                200: ("The conversion", ConversionView), 404: ("Conversion not found", None)},
                path={"conversion_id": {"type": "string"}}, admin=True,
                tags=("conversions",)),
        },
        **{
            f"/api/conversions/{{conversion_id}}/{action}": {"post": _Op(
                f"{action.capitalize()} a conversion", {
                    200: ("The conversion, changed", ConversionView), 400: _BAD[1],
                    404: ("Conversion not found", None),
                    409: ("Conversion already in a status this change does not leave",
                          None)},
                body=ChangeBody, path={"conversion_id": {"type": "string"}}, admin=True,
                tags=("conversions",), optional_body=True)}
            for action in ("approve", "reject", "reverse")
        },
        "/api/reports": {
            "get": _Op("Clicks, events, conversions, money and profit over a period", {
                200: ("The report", Report), 400: _BAD[1], 404: _NO_TOKEN[1]},
                query=ReportQuery, admin=True, tags=("reports",),
                description="format=csv answers text/csv with the same columns.",
                media={200: {"text/csv; charset=utf-8": {"schema": _TEXT}}}),
        },
        "/dashboard": {
            "get": _Op("The dashboard page (asks for the admin token)", {
                200: ("HTML", _TEXT), 304: ("Not modified", None)},
                media={200: {"text/html; charset=utf-8": {"schema": _TEXT}}},
                tags=("reports",)),
        },
        **{
            f"/dashboard/{name}": {"get": _Op(f"The dashboard's {name}", {
                200: (kind, _TEXT), 304: ("Not modified", None)},
                media={200: {media_type: {"schema": _TEXT}}}, tags=("reports",))}
            for name, kind, media_type in (
                ("dashboard.js", "JavaScript", "application/javascript"),
                ("dashboard.css", "CSS", "text/css"),
                ("uplot.js", "JavaScript (uPlot, vendored)", "application/javascript"),
                ("uplot.css", "CSS (uPlot, vendored)", "text/css"))
        },
        "/api/admin/backup": {
            "post": _Op("Write a consistent copy of the database beside it", {
                201: ("Backup written", BackupData), 404: _NO_TOKEN[1],
                409: ("Backup in progress: another backup is being written", None),
                501: ("The database is PostgreSQL: back it up with pg_dump", None),
                507: ("Insufficient storage: the backup directory's disk has less free "
                      "space than twice the database, or filled up during the copy; "
                      "nothing of it is left", None)},
                admin=True, tags=("operations",)),
        },
        "/api/admin/reload": {
            "post": _Op("Read the config file again and swap it in", {
                200: ("Config reloaded", ReloadData),
                400: ("The new config is wrong, changes a key only a restart applies, or "
                      "(unless forced) removes every campaign or the admin token; the old "
                      "one stays in force", None),
                404: _NO_TOKEN[1]}, query=ReloadQuery, admin=True, tags=("operations",),
                description="force=true applies a config that removes every campaign or "
                            "the admin token; SIGHUP never forces."),
        },
        "/healthz": {
            "get": _Op("200 while the store commits writes", {
                200: ("Healthy", HealthData), 503: ("Store not writable", None)},
                tags=("operations",)),
        },
        "/metrics": {
            "get": _Op("Prometheus metrics (text format)", {
                200: ("Metrics", _TEXT), 404: _NO_TOKEN[1]}, admin=True,
                description="Needs the admin token unless [server] metrics_public = true.",
                media={200: {"text/plain": {"schema": _TEXT}}}, tags=("operations",)),
        },
        "/openapi.json": {
            "get": _Op("This document", {200: ("OpenAPI 3.1", {"type": "object"})},
                       media={200: {"application/json": {"schema": {"type": "object"}}}},
                       tags=("documentation",)),
        },
        "/docs": {
            "get": _Op("This document, rendered", {200: ("HTML", _TEXT)},
                       media={200: {"text/html": {"schema": _TEXT}}},
                       tags=("documentation",)),
        },
        "/docs/redoc.standalone.js": {
            "get": _Op("The documentation viewer (Redoc, vendored)", {
                200: ("JavaScript", _TEXT), 304: ("Not modified", None)},
                media={200: {"application/javascript": {"schema": _TEXT}}},
                tags=("documentation",)),
        },
        "/sdk.js": {
            "get": _Op("The web SDK", {200: ("JavaScript", _TEXT),
                                       304: ("Not modified", None)},
                       media={200: {"application/javascript": {"schema": _TEXT}}},
                       tags=("documentation",)),
        },
        "/": {
            "get": _Op("The dashboard's address: a redirect to /dashboard", {
                302: ("Found: Location is /dashboard", None)}, tags=("documentation",)),
        },
        "/favicon.ico": {
            "get": _Op("No icon", {204: ("No content", None)}, tags=("documentation",)),
        },
    }
    if demo:
        table["/examples/landing.html"] = {"get": _Op(
            "The demo landing page", {200: ("HTML", _TEXT), 304: ("Not modified", None)},
            media={200: {"text/html; charset=utf-8": {"schema": _TEXT}}},
            tags=("documentation",))}
    return table


def build(*, demo: bool = False) -> dict[str, Any]:
    """The whole document as plain data."""
    schemas_of, components = msgspec.json.schema_components(_STRUCTS, ref_template=_REF)
    refs = dict(zip(_STRUCTS, schemas_of, strict=True))
    components["Error"] = components.pop(ErrorEnvelope.__name__) | {"title": "Error"}
    paths: dict[str, Any] = {}
    for path, methods in _operations(demo).items():
        paths[path] = {method: _operation(path, method, op, refs, components)
                       for method, op in methods.items()}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Event Postback API",
            "version": version("event-postback"),
            "description": (
                "Clicks mint a transaction id; events fire against it; conversions send "
                "postbacks. Every JSON answer is one envelope: `status`, `type` (success "
                "or error), `message` and, on success, `data`; errors may add "
                "`missingFields`, `invalidFields` or a machine-readable `code`."),
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "adminToken": {"type": "http", "scheme": "bearer",
                               "description": "[server] admin_token"},
                "eventToken": {"type": "http", "scheme": "bearer",
                               "description": "One of the campaign's event_tokens"},
                "eventTokenQuery": {"type": "apiKey", "in": "query", "name": "token",
                                    "description": "One of the campaign's event_tokens, "
                                                   "for pixels and GET-only trackers"},
            },
            "headers": {
                "RetryAfter": {"description": "Seconds to wait before trying again",
                               "schema": {"type": "string"}},
            },
        },
    }


def _operation(path: str, method: str, op: _Op, refs: dict[Any, dict[str, Any]],
               components: dict[str, Any]) -> dict[str, Any]:
    answers = dict(op.answers)
    if op.admin:
        answers[401] = _UNAUTHORIZED[1]
    if path != "/healthz":
        answers.setdefault(503, ("Server busy or store unavailable; retry after Retry-After",
                                 None))
    if method == "post":
        answers[408] = ("The body did not arrive within body_timeout_seconds", None)
        answers[413] = ("The body is larger than the limit", None)
    if op.path or op.query is not None:
        # A path the router cannot match (e.g. a non-numeric id) is a 404 too.
        answers.setdefault(404, ("Not found", None))
    out: dict[str, Any] = {
        "summary": op.summary,
        "operationId": _operation_id(method, path),
        "tags": list(op.tags),
        "responses": {str(status): _response(status, description, data, op, refs)
                      for status, (description, data) in sorted(answers.items())},
    }
    if op.description:
        out["description"] = op.description
    if op.admin:
        out["security"] = _ADMIN
    elif path.startswith(_EVENT_PREFIX):
        out["security"] = _EVENT_SENDER + ([{"eventTokenQuery": []}] if method == "get" else [])
    parameters = [{"name": name, "in": "path", "required": True, "schema": schema}
                  for name, schema in op.path.items()]
    if op.query is not None:
        parameters += _query_parameters(op.query, refs, components)
    if parameters:
        out["parameters"] = parameters
    if op.body is not None:
        ref = refs[op.body]
        out["requestBody"] = {"required": not op.optional_body, "content": {
            "application/json": {"schema": ref},
            "application/x-www-form-urlencoded": {"schema": ref},
        }}
    return out


def _operation_id(method: str, path: str) -> str:
    """``get /api/event/{cid}`` -> ``get_api_event_cid``."""
    words = "".join(c if c.isalnum() else " " for c in path).split()
    return "_".join([method, *words])


def _query_parameters(struct: type, refs: dict[Any, dict[str, Any]],
                      components: dict[str, Any]) -> list[dict[str, Any]]:
    schema = components[refs[struct]["$ref"].rsplit("/", 1)[-1]]
    required = set(schema.get("required", ()))
    return [{"name": name, "in": "query", "required": name in required, "schema": prop}
            for name, prop in schema["properties"].items()]


def _response(status: int, description: str, data: Any, op: _Op,
              refs: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description}
    if status == 503:
        answer["headers"] = {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}}
    if status == 302:
        answer["headers"] = {"Location": {"schema": {"type": "string"}}}
    if status in (204, 302, 304):
        return answer
    if status in op.media:
        answer["content"] = op.media[status] | (
            {"application/json": {"schema": _success(status, data, refs)}}
            if data is not _TEXT and isinstance(data, type) else {})
        return answer
    schema = ({"$ref": "#/components/schemas/Error"} if status >= 400 or data is None
              else _success(status, data, refs))
    answer["content"] = {"application/json": {"schema": schema}}
    return answer


def _success(status: int, data: Any, refs: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    if isinstance(data, dict):
        return data
    if data in refs:
        data_schema = refs[data]
    else:  # list[Struct]
        (item,) = data.__args__
        data_schema = {"type": "array", "items": refs[item]}
    return {
        "type": "object",
        "required": ["status", "type", "message", "data"],
        "properties": {
            "status": {"const": status},
            "type": {"const": "success"},
            "message": {"type": "string"},
            "data": data_schema,
        },
    }


@functools.cache
def document(*, demo: bool = False) -> bytes:
    """The document as JSON bytes, built once per process: it depends on nothing else."""
    return msgspec.json.encode(build(demo=demo))
