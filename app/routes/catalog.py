"""Campaigns and sources managed through the API, with ``[server] catalog = "database"``.

Reads (an operator's: documents hold postback URLs and signing secrets) answer with the
catalog version in force in an ETag; every change (an admin's) names the version it was
made on in If-Match, becomes the next version, and is in force in this process when it
is answered (in every other one within a second: app/catalog/apply.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import msgspec
import structlog
from starlette.requests import Request
from starlette.responses import Response

from app.catalog import versions
from app.catalog.documents import (
    Document,
    Kind,
    document_of,
    entry,
    parsed_entry,
    replaced,
    toml_text,
)
from app.config.schema import CampaignConfig, ConfigError, SourceConfig
from app.edge import errors
from app.edge.envelope import success_response
from app.observe.logs import annotate
from app.routes.access import require
from app.services import Services, services
from storage.catalog import CatalogVersionInfo, CatalogVersionRow, CatalogVersionTaken

log = structlog.get_logger("app.catalog")

_KEY: dict[Kind, str] = {"campaigns": "cid", "sources": "pid"}
_NAME: dict[Kind, str] = {"campaigns": "Campaign", "sources": "Source"}


class CatalogData(msgspec.Struct, frozen=True, kw_only=True):
    """The whole catalog, as GET /api/catalog answers it."""

    campaigns: list[CampaignConfig]
    sources: list[SourceConfig]


class CatalogQuery(msgspec.Struct, frozen=True, kw_only=True):
    """The query of GET /api/catalog."""

    # toml: the [[sources]] and [[campaigns]] of a config file, as text.
    format: Literal["json", "toml"] = "json"


def etag(version: int) -> dict[str, str]:
    return {"ETag": f'"{version}"'}


def _in_force(request: Request) -> tuple[Services, Document]:
    svc = services(request)
    require(request, svc, "operator")
    return svc, document_of(svc.config)


async def _list(request: Request, kind: Kind) -> Response:
    svc, document = _in_force(request)
    return success_response(200, "OK", document[kind], headers=etag(svc.catalog_version))


async def _show(request: Request, kind: Kind) -> Response:
    svc, document = _in_force(request)
    found = entry(document, kind, request.path_params[_KEY[kind]])
    if found is None:
        raise errors.catalog_not_found(_NAME[kind])
    return success_response(200, "OK", found, headers=etag(svc.catalog_version))


async def _put(request: Request, kind: Kind) -> Response:
    key = request.path_params[_KEY[kind]]
    body = await request.body()
    created: list[bool] = []

    def change(document: Document) -> Document:
        created.append(entry(document, kind, key) is None)
        return replaced(document, kind, key,
                        parsed_entry(body, document, kind, key, origin="catalog"))

    row = await _change(request, change)
    message = f"{_NAME[kind]} {'created' if created[0] else 'replaced'}"
    return success_response(201 if created[0] else 200, message, entry(row.document, kind, key),
                            headers=etag(row.version))


async def _delete(request: Request, kind: Kind) -> Response:
    key = request.path_params[_KEY[kind]]

    def change(document: Document) -> Document:
        if entry(document, kind, key) is None:
            raise errors.catalog_not_found(_NAME[kind])
        return replaced(document, kind, key, None)

    row = await _change(request, change)
    return success_response(200, f"{_NAME[kind]} deleted", _info(row),
                            headers=etag(row.version))


async def _change(request: Request, change: Callable[[Document], Document],
                  note: dict[str, list[str]] | None = None) -> CatalogVersionRow:
    """Make the next catalog version of the one If-Match names, commit it and swap it in;
    409 with a file catalog, 428 without If-Match, 412 when the catalog has moved on
    since, 400 with check-config's diagnosis when the change breaks a rule."""
    svc = services(request)
    caller = require(request, svc, "admin")
    if svc.follower is None:
        raise errors.catalog_in_file()
    expected = _if_match(request)
    head = await svc.store.catalog_version(expected) if expected else None
    if head is None or await svc.store.catalog_head() != expected:
        raise errors.catalog_changed()
    try:
        row, _ = versions.next_version(svc.config, head, change(head.document),
                                       token=caller.name, now=svc.clock.now(),
                                       origin="catalog", note=note)
    except ConfigError as exc:
        raise errors.catalog_refused(str(exc)) from None
    try:
        await versions.store(svc.store, row)
    except CatalogVersionTaken:
        raise errors.catalog_changed() from None
    # In force here before the answer: the writer's next read shows it.
    svc.follower.take(row)
    log.info("catalog_changed", version=row.version, token=caller.name, **row.changes)
    annotate(outcome="catalog_changed", catalog_version=row.version)
    return row


def _if_match(request: Request) -> int:
    """The catalog version If-Match names (``"7"``); 0 for one that names none."""
    given = request.headers.get("if-match")
    if given is None:
        raise errors.catalog_if_match_required()
    text = given.strip().removeprefix("W/").strip('"')
    return int(text) if text.isascii() and text.isdigit() and len(text) < 12 else 0


def _info(row: CatalogVersionRow) -> CatalogVersionInfo:
    return CatalogVersionInfo(version=row.version, created_at=row.created_at,
                              token=row.token, changes=row.changes)


async def list_campaigns(request: Request) -> Response:
    """GET /api/campaigns: every campaign, as its TOML table is in JSON."""
    return await _list(request, "campaigns")


async def show_campaign(request: Request) -> Response:
    return await _show(request, "campaigns")


async def put_campaign(request: Request) -> Response:
    """PUT /api/campaigns/{cid}: create or replace the campaign (If-Match required)."""
    return await _put(request, "campaigns")


async def delete_campaign(request: Request) -> Response:
    return await _delete(request, "campaigns")


async def list_sources(request: Request) -> Response:
    """GET /api/sources: every source, as its TOML table is in JSON."""
    return await _list(request, "sources")


async def show_source(request: Request) -> Response:
    return await _show(request, "sources")


async def put_source(request: Request) -> Response:
    """PUT /api/sources/{pid}: create or replace the source (If-Match required)."""
    return await _put(request, "sources")


async def delete_source(request: Request) -> Response:
    return await _delete(request, "sources")


async def export(request: Request) -> Response:
    """GET /api/catalog: the whole catalog as JSON, or (format=toml) as a config file's
    [[sources]] and [[campaigns]]."""
    svc, document = _in_force(request)
    try:
        query = msgspec.convert(dict(request.query_params), CatalogQuery, strict=False)
    except msgspec.ValidationError as exc:
        raise errors.invalid_from(exc, "query") from None
    headers = etag(svc.catalog_version)
    if query.format == "json":
        return success_response(200, "OK", document, headers=headers)
    text = (f"# The catalog, version {svc.catalog_version}: the sources and campaigns of a "
            f"config file.\n\n{toml_text(document)}")
    return Response(text, headers=headers, media_type="application/toml; charset=utf-8")


async def list_versions(request: Request) -> Response:
    """GET /api/catalog/versions: every version, newest first: who made it, when, and
    what it changed."""
    svc = services(request)
    require(request, svc, "operator")
    found: list[Any] = await svc.store.catalog_versions()
    return success_response(200, "OK", found, headers=etag(svc.catalog_version))


async def restore_version(request: Request) -> Response:
    """POST /api/catalog/versions/{version}/restore: a new version holding an earlier
    one's catalog (If-Match required)."""
    svc = services(request)
    require(request, svc, "admin")
    number = request.path_params["version"]
    old = await svc.store.catalog_version(number) if svc.follower is not None else None
    if svc.follower is not None and old is None:
        raise errors.catalog_not_found("Catalog version")
    row = await _change(request, lambda _: {} if old is None else old.document,
                        note={"restored": [str(number)]})
    return success_response(200, f"Catalog version {number} restored", _info(row),
                            headers=etag(row.version))
