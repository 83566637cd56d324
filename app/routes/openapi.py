"""The OpenAPI 3.1 document, generated at start-up from the Structs the routes use.

Request fields and answer bodies come from ``msgspec.json.schema_components`` over the
same Structs that parse requests and encode answers, so the document cannot drift from the
code; app/routes/operations.py says which route takes and answers which Struct, with
which status codes, and this module builds the document from it. A test checks that
every route of the app is described and that the app's answers match (schemathesis).
"""

from __future__ import annotations

import functools
from importlib.metadata import version
from typing import Any

import msgspec

from app.config.schema import CampaignConfig, SourceConfig
from app.conversions.payloads import BulkBody, ChangeBody, ConversionQuery
from app.edge.envelope import ErrorEnvelope
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
from app.routes.operations import FORBIDDEN, TEXT, UNAUTHORIZED, Op, operations
from storage.catalog import CatalogVersionInfo
from storage.endpoints import EndpointView
from storage.records import ConversionView, PostbackView, TransactionView

_REF = "#/components/schemas/{name}"
_STRUCTS: tuple[Any, ...] = (ClickFields, EventFields, PostbackQuery, ClickData, EventData,
                             TransactionView, PostbackView, BackupData, ReloadData, ReloadQuery,
                             HealthData, ErrorEnvelope, ConversionQuery, ConversionPage,
                             ConversionView, ChangeBody, BulkBody, BulkData, ReportQuery,
                             Report, CapList, EndpointView, RequeueData, RecoverQuery,
                             EndpointTestData, CatalogNames, CampaignConfig, SourceConfig,
                             CatalogData, CatalogQuery, CatalogVersionInfo)
_ADMIN: list[dict[str, list[str]]] = [{"adminToken": []}]
# An event route takes a campaign's event token, or none (its anonymous policy decides).
_EVENT_SENDER: list[dict[str, list[str]]] = [{}, {"eventToken": []}]
_EVENT_PREFIX = "/api/event/"


def build(*, demo: bool = False) -> dict[str, Any]:
    """The whole document as plain data."""
    schemas_of, components = msgspec.json.schema_components(_STRUCTS, ref_template=_REF)
    refs = dict(zip(_STRUCTS, schemas_of, strict=True))
    components["Error"] = components.pop(ErrorEnvelope.__name__) | {"title": "Error"}
    paths: dict[str, Any] = {}
    for path, methods in operations(demo).items():
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


def _operation(path: str, method: str, op: Op, refs: dict[Any, dict[str, Any]],
               components: dict[str, Any]) -> dict[str, Any]:
    answers = dict(op.answers)
    if op.admin:
        answers[401] = UNAUTHORIZED[1]
        answers[403] = FORBIDDEN[1]
    if path != "/healthz":
        answers.setdefault(503, ("Server busy or store unavailable; retry after Retry-After",
                                 None))
    if method in ("post", "put"):
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
        reach = f"Role: {op.role} or above" + (", or a partner (its own source)"
                                                if op.partner else "") + "."
        out["description"] = f"{op.description}\n\n{reach}" if op.description else reach
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
        # A document (PUT) is JSON only; the event and click forms take both.
        forms = {} if method == "put" else {"application/x-www-form-urlencoded": {"schema": ref}}
        out["requestBody"] = {"required": not op.optional_body, "content": {
            "application/json": {"schema": ref}, **forms}}
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


def _response(status: int, description: str, data: Any, op: Op,
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
            if data is not TEXT and isinstance(data, type) else {})
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
