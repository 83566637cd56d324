"""What each route takes and answers, for the OpenAPI document (app/routes/openapi.py).

One entry per path and method: its summary, the Struct of its body or query, and its
answers with their status codes; the document builder adds what every route shares.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.config.schema import CampaignConfig, SourceConfig
from app.config.tokens import Role
from app.conversions.payloads import BulkBody, ChangeBody, ConversionQuery
from app.events.payloads import ClickFields, EventFields, PostbackQuery
from app.postbacks.probe import EndpointTestData
from app.reports.figures import Report
from app.reports.params import ReportQuery
from app.routes.admin import BackupData
from app.routes.caps import CapList
from app.routes.catalog import CatalogData, CatalogQuery
from app.routes.clicks import ClickData
from app.routes.conversions import BulkData, ConversionPage
from app.routes.endpoints import RecoverQuery, RequeueData
from app.routes.events import EventData
from app.routes.health import HealthData
from app.routes.names import CatalogNames
from app.routes.operate import ReloadData, ReloadQuery
from storage.catalog import CatalogVersionInfo
from storage.endpoints import EndpointView
from storage.records import ConversionView, PostbackView, TransactionView


@dataclass(frozen=True)
class Op:
    summary: str
    # Status -> (description, schema of ``data`` or None for the error envelope).
    answers: dict[int, tuple[str, Any]]
    body: type | None = None
    query: type | None = None
    path: dict[str, dict[str, Any]] = field(default_factory=dict)
    admin: bool = False
    # The least role that reaches it (app/routes/access.py): every admin route names one.
    role: Role | None = None
    # A partner token reaches it too, limited to its own source.
    partner: bool = False
    description: str = ""
    media: dict[int, dict[str, Any]] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    optional_body: bool = False


TEXT = {"type": "string"}
_GIF = {"image/gif": {"schema": {"type": "string", "format": "binary"}}}
_BAD = (400, ("Missing or invalid fields, or an id the configuration does not know",
              None))
_FORBIDDEN = (403, ("Source inactive, origin not allowed, or a concurrent event", None))
UNAUTHORIZED = (401, ("No or wrong bearer token", None))
FORBIDDEN = (403, ("The token's role does not reach this route (code forbidden)", None))
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


_CATALOG_WRITE: dict[int, tuple[str, Any]] = {
    400: ("The change breaks a rule of the config: check-config's one-line diagnosis "
          "(code catalog_refused)", None),
    409: ("[server] catalog = \"file\": the config file manages the catalog (code "
          "catalog_in_file)", None),
    412: ("If-Match names a version that is no longer the newest (code catalog_changed)",
          None),
    428: ("No If-Match (code if_match_required)", None)}
_IF_MATCH = ("Send If-Match with the ETag of the version the change is made on (a read "
             "answers it); the answer's ETag is the new version.")


def catalog_operations() -> dict[str, dict[str, Op]]:
    """The campaigns and sources managed through the API (app/routes/catalog.py)."""
    table: dict[str, dict[str, Op]] = {}
    every: Any
    for kind, key, entry, every in (("campaigns", "cid", CampaignConfig, list[CampaignConfig]),
                                    ("sources", "pid", SourceConfig, list[SourceConfig])):
        name = kind[:-1]
        path = {key: {"type": "string", "maxLength": 255}}
        table[f"/api/{kind}"] = {"get": Op(
            f"Every {name}, as its TOML table is in JSON", {
                200: (f"The {kind}; ETag: the catalog version", every),
                404: _NO_TOKEN[1]}, admin=True, role="operator", tags=("catalog",))}
        table[f"/api/{kind}/{{{key}}}"] = {
            "get": Op(f"A {name}, as its TOML table is in JSON", {
                200: (f"The {name}; ETag: the catalog version", entry),
                404: (f"{name.capitalize()} not found", None)},
                path=path, admin=True, role="operator", tags=("catalog",)),
            "put": Op(f"Create or replace a {name}: a new catalog version", {
                200: (f"{name.capitalize()} replaced", entry),
                201: (f"{name.capitalize()} created", entry), **_CATALOG_WRITE},
                body=entry, path=path, admin=True, role="admin", tags=("catalog",),
                description=f"The body is the {name}'s TOML table as JSON; its `{key}` may "
                            f"be left out. {_IF_MATCH}"),
            "delete": Op(f"Delete a {name}: a new catalog version", {
                200: (f"{name.capitalize()} deleted", CatalogVersionInfo),
                404: (f"{name.capitalize()} not found", None), **_CATALOG_WRITE},
                path=path, admin=True, role="admin", tags=("catalog",),
                description=_IF_MATCH),
        }
    table["/api/catalog"] = {"get": Op("The whole catalog: JSON, or a config file's TOML", {
        200: ("The catalog; ETag: its version", CatalogData), 400: _BAD[1],
        404: _NO_TOKEN[1]}, query=CatalogQuery, admin=True, role="operator",
        tags=("catalog",), media={200: {"application/toml; charset=utf-8": {"schema": TEXT}}},
        description="format=toml answers the [[sources]] and [[campaigns]] of a config "
                    "file: loaded as one, or imported into an empty database, it gives "
                    "the same catalog.")}
    table["/api/catalog/versions"] = {"get": Op("Every catalog version, newest first", {
        200: ("Who made each version, when, and what it changed", list[CatalogVersionInfo]),
        404: _NO_TOKEN[1]}, admin=True, role="operator", tags=("catalog",))}
    table["/api/catalog/versions/{version}/restore"] = {"post": Op(
        "Restore an earlier catalog: a new version holding it", {
            200: ("Catalog version restored: the new version", CatalogVersionInfo),
            **_CATALOG_WRITE, 404: ("Catalog version not found", None)},
        path={"version": {"type": "integer", "minimum": 0}}, admin=True, role="admin",
        tags=("catalog",), description=_IF_MATCH)}
    return table


def operations(demo: bool) -> dict[str, dict[str, Op]]:
    cid = {"cid": {"type": "string", "maxLength": 255}}
    postback_id = {"postback_id": {"type": "integer", "minimum": 0}}
    gif = ("Add format=gif to get a 1x1 GIF instead of JSON; the status code still tells "
           "the outcome.")
    table: dict[str, dict[str, Op]] = {
        "/api/click": {
            "post": Op("Record a click and mint a transaction id", {
                200: ("Click recorded", ClickData), 400: _BAD[1], 403: _FORBIDDEN[1]},
                body=ClickFields, tags=("tracking",)),
            "get": Op("Record a click from the query string", {
                200: ("Click recorded", ClickData),
                302: ("Redirect to the campaign's landing page", None),
                400: _BAD[1], 403: _FORBIDDEN[1]}, query=ClickFields, tags=("tracking",)),
        },
        "/api/event/trigger": {
            "post": Op("Fire an event against a lead", _event_answers(200), body=EventFields,
                        tags=("tracking",), description=_IDEMPOTENCY),
            "get": Op("Fire an event from the query string", _event_answers(200),
                       query=EventFields, description=gif, media={200: _GIF},
                       tags=("tracking",)),
        },
        "/api/event/global": {
            "post": Op("Fire an event; the campaign is the one that owns the transaction",
                        _event_answers(200), body=EventFields, tags=("tracking",),
                        description="cid may be left out; if sent it must be the owner's. "
                                    + _IDEMPOTENCY),
            "get": Op("Fire an event on the owner's campaign, from the query string",
                       _event_answers(200), query=EventFields, description=gif,
                       media={200: _GIF}, tags=("tracking",)),
        },
        "/api/event/{cid}": {
            "post": Op("Fire an event of the campaign in the path", _event_answers(201),
                        body=EventFields, path=cid, tags=("tracking",),
                        description="cid may be left out of the body; if sent it must "
                                    "match the path. " + _IDEMPOTENCY),
            "get": Op("Fire an event of the campaign in the path, from the query string",
                       _event_answers(201), query=EventFields, path=cid,
                       description=gif, media={201: _GIF}, tags=("tracking",)),
        },
        "/api/transactions/{transaction_id}": {
            "get": Op("A lead and its events, in the order they fired", {
                200: ("The transaction", TransactionView), 404: _NO_TOKEN[1]},
                path={"transaction_id": {"type": "string"}}, admin=True, role="viewer",
                tags=("read",)),
        },
        "/api/postbacks": {
            "get": Op("Postbacks, newest first", {
                200: ("Postbacks", list[PostbackView]), 400: _BAD[1], 404: _NO_TOKEN[1]},
                query=PostbackQuery, admin=True, role="viewer", partner=True,
                tags=("postbacks",)),
        },
        "/api/postbacks/{postback_id}": {
            "get": Op("A postback and every attempt to deliver it", {
                200: ("The postback", PostbackView), 404: _NO_TOKEN[1]},
                path=postback_id, admin=True, role="viewer", partner=True,
                tags=("postbacks",)),
        },
        "/api/postbacks/{postback_id}/retry": {
            "post": Op("Send a failed or waiting postback now", {
                202: ("Retry scheduled", PostbackView), 404: _NO_TOKEN[1],
                409: ("Already delivered, or being delivered", None)},
                path=postback_id, admin=True, role="operator", tags=("postbacks",)),
        },
        "/api/postbacks/recover": {
            "post": Op("Re-queue the dead letters created in a time range", {
                200: ("How many were re-queued", RequeueData), 400: _BAD[1],
                404: _NO_TOKEN[1]},
                query=RecoverQuery, admin=True, role="operator", tags=("postbacks",),
                description="`from` and `to` are ISO 8601 times with their offset, such "
                            "as `2026-12-02T15:00:00Z`; `from` is included, `to` is not. "
                            "`endpoint` (a name from GET /api/endpoints) limits it to one "
                            "endpoint. Each is due at once, with at least one attempt left."),
        },
        "/api/endpoints": {
            "get": Op("Each postback endpoint's health", {
                200: ("Endpoints", list[EndpointView]), 404: _NO_TOKEN[1]},
                admin=True, role="viewer", tags=("postbacks",),
                description="An endpoint is a configured postback's host and path; its "
                            "name is the entry's `name`, else the host and path."),
        },
        "/api/endpoints/{name}/resume": {
            "post": Op("Resume a paused endpoint: its paused postbacks are due at once", {
                200: ("How many were re-queued", RequeueData),
                404: ("Endpoint not found", None)},
                path={"name": {"type": "string"}}, admin=True, role="operator",
                tags=("postbacks",)),
        },
        "/api/endpoints/{name}/test": {
            "post": Op("Send a sample conversion to an endpoint once, and show its answer", {
                200: ("What was sent, and the answer or the transport error",
                      EndpointTestData),
                404: ("Endpoint not found", None)},
                path={"name": {"type": "string"}}, admin=True, role="operator", tags=("postbacks",),
                description="Rendered through the endpoint's first configured entry with "
                            "ids starting `test-`, revenue 1.00, payout 0.50 and status "
                            "approved, signed as a delivery is, sent once without "
                            "following a redirect. Nothing is stored: no postback, no "
                            "attempt, no change to the endpoint's health. An endpoint "
                            "that cannot be reached still answers 200, with `error`."),
        },
        "/api/conversions": {
            "get": Op("Conversions, newest first, a page at a time", {
                200: ("Conversions", ConversionPage), 400: _BAD[1], 404: _NO_TOKEN[1]},
                query=ConversionQuery, admin=True, role="viewer", partner=True,
                tags=("conversions",)),
        },
        "/api/conversions/bulk": {
            "post": Op("One status change on up to 1,000 conversions, in one transaction", {
                200: ("One result per id", BulkData), 400: _BAD[1], 404: _NO_TOKEN[1]},
                body=BulkBody, admin=True, role="operator", tags=("conversions",)),
        },
        "/api/conversions/{conversion_id}": {
            "get": Op("A conversion and its history", {
                200: ("The conversion", ConversionView), 404: ("Conversion not found", None)},
                path={"conversion_id": {"type": "string"}}, admin=True, role="viewer", partner=True,
                tags=("conversions",)),
        },
        **{
            f"/api/conversions/{{conversion_id}}/{action}": {"post": Op(
                f"{action.capitalize()} a conversion", {
                    200: ("The conversion, changed", ConversionView), 400: _BAD[1],
                    404: ("Conversion not found", None),
                    409: ("Conversion already in a status this change does not leave, or "
                          "(code cap_reached) approving it would pass a cap", None)},
                body=ChangeBody, path={"conversion_id": {"type": "string"}}, admin=True,
                role="operator", tags=("conversions",), optional_body=True)}
            for action in ("approve", "reject", "reverse")
        },
        "/api/caps": {
            "get": Op("Each cap with its use in the period now running", {
                200: ("The caps", CapList), 404: _NO_TOKEN[1]},
                admin=True, role="viewer", tags=("reports",)),
        },
        "/api/catalog/names": {
            "get": Op("The caller's role, the report currency, and each campaign's and "
                      "source's name", {
                200: ("Ids and names", CatalogNames), 404: _NO_TOKEN[1]},
                admin=True, role="viewer", partner=True, tags=("reports",),
                description="What the dashboard shows instead of ids: no payout, URL or "
                            "secret. A partner gets its own source only, and its pid."),
        },
        "/api/reports": {
            "get": Op("Clicks, events, conversions, money and profit over a period", {
                200: ("The report", Report), 400: _BAD[1], 404: _NO_TOKEN[1]},
                query=ReportQuery, admin=True, role="viewer", partner=True, tags=("reports",),
                description="format=csv answers text/csv with the same columns.",
                media={200: {"text/csv; charset=utf-8": {"schema": TEXT}}}),
        },
        "/dashboard": {
            "get": Op("The dashboard page (asks for the admin token)", {
                200: ("HTML", TEXT), 304: ("Not modified", None)},
                media={200: {"text/html; charset=utf-8": {"schema": TEXT}}},
                tags=("reports",)),
        },
        **{
            f"/dashboard/{name}": {"get": Op(f"The dashboard's {name}", {
                200: (kind, TEXT), 304: ("Not modified", None)},
                media={200: {media_type: {"schema": TEXT}}}, tags=("reports",))}
            for name, kind, media_type in (
                ("dashboard.js", "JavaScript", "application/javascript"),
                ("dashboard.css", "CSS", "text/css"),
                ("uplot.js", "JavaScript (uPlot, vendored)", "application/javascript"),
                ("uplot.css", "CSS (uPlot, vendored)", "text/css"))
        },
        **catalog_operations(),
        "/api/admin/backup": {
            "post": Op("Write a consistent copy of the database beside it", {
                201: ("Backup written", BackupData), 404: _NO_TOKEN[1],
                409: ("Backup in progress: another backup is being written", None),
                501: ("The database is PostgreSQL: back it up with pg_dump", None),
                507: ("Insufficient storage: the backup directory's disk has less free "
                      "space than twice the database, or filled up during the copy; "
                      "nothing of it is left", None)},
                admin=True, role="admin", tags=("operations",)),
        },
        "/api/admin/reload": {
            "post": Op("Read the config file again and swap it in", {
                200: ("Config reloaded", ReloadData),
                400: ("The new config is wrong, changes a key only a restart applies, or "
                      "(unless forced) removes every campaign or the admin token; the old "
                      "one stays in force", None),
                404: _NO_TOKEN[1],
                503: ("serve --workers N: a restarted worker did not start; the message "
                      "names it and how many workers serve the new config", None)},
                query=ReloadQuery, admin=True, role="admin", tags=("operations",),
                description="force=true applies a config that removes every campaign or "
                            "the admin token; SIGHUP never forces."),
        },
        "/healthz": {
            "get": Op("200 while the store commits writes", {
                200: ("Healthy", HealthData), 503: ("Store not writable", None)},
                tags=("operations",)),
        },
        "/metrics": {
            "get": Op("Prometheus metrics (text format)", {
                200: ("Metrics", TEXT), 404: _NO_TOKEN[1]}, admin=True, role="viewer",
                description="Needs the admin token unless [server] metrics_public = true.",
                media={200: {"text/plain": {"schema": TEXT}}}, tags=("operations",)),
        },
        "/openapi.json": {
            "get": Op("This document", {200: ("OpenAPI 3.1", {"type": "object"})},
                       media={200: {"application/json": {"schema": {"type": "object"}}}},
                       tags=("documentation",)),
        },
        "/docs": {
            "get": Op("This document, rendered", {200: ("HTML", TEXT)},
                       media={200: {"text/html": {"schema": TEXT}}},
                       tags=("documentation",)),
        },
        "/docs/redoc.standalone.js": {
            "get": Op("The documentation viewer (Redoc, vendored)", {
                200: ("JavaScript", TEXT), 304: ("Not modified", None)},
                media={200: {"application/javascript": {"schema": TEXT}}},
                tags=("documentation",)),
        },
        "/sdk.js": {
            "get": Op("The web SDK", {200: ("JavaScript", TEXT),
                                       304: ("Not modified", None)},
                       media={200: {"application/javascript": {"schema": TEXT}}},
                       tags=("documentation",)),
        },
        "/": {
            "get": Op("The dashboard's address: a redirect to /dashboard", {
                302: ("Found: Location is /dashboard", None)}, tags=("documentation",)),
        },
        "/favicon.ico": {
            "get": Op("No icon", {204: ("No content", None)}, tags=("documentation",)),
        },
    }
    if demo:
        table["/examples/landing.html"] = {"get": Op(
            "The demo landing page", {200: ("HTML", TEXT), 304: ("Not modified", None)},
            media={200: {"text/html; charset=utf-8": {"schema": TEXT}}},
            tags=("documentation",))}
    return table
