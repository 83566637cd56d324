"""GET /api/catalog/names: who the caller is, the report currency, where the catalog is
kept, and the campaigns' and sources' names.

The dashboard shows names instead of ids, money in the report currency, picks its view
by the caller's role, and offers to edit the catalog only where the API takes changes.
Only these leave here: no payout, URL, secret or token of the config.
"""

from __future__ import annotations

from typing import Literal

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from app.config.tokens import Role
from app.edge.envelope import success_response
from app.routes.access import require
from app.routes.partner import is_partner
from app.services import services


class CampaignName(msgspec.Struct, frozen=True):
    cid: str
    name: str


class SourceName(msgspec.Struct, frozen=True):
    pid: str
    name: str


class CatalogNames(msgspec.Struct, frozen=True, kw_only=True):
    role: Role
    # A partner's own source; null for every other role.
    pid: str | None
    # [reports] currency: what every amount of a report is in.
    currency: str
    # [server] catalog: "database" takes changes through /api/campaigns and /api/sources.
    catalog: Literal["file", "database"]
    campaigns: list[CampaignName]
    sources: list[SourceName]


async def catalog_names(request: Request) -> Response:
    svc = services(request)
    caller = require(request, svc, "viewer", partner=True)
    config = svc.config
    # A partner learns its own source's name, never who the other sources are.
    sources = [SourceName(pid=source.pid, name=source.name) for source in config.sources
               if not is_partner(caller) or source.pid == caller.pid]
    return success_response(200, "OK", CatalogNames(
        role=caller.role, pid=caller.pid, currency=config.reports.currency,
        catalog=config.server.catalog,
        campaigns=[CampaignName(cid=campaign.cid, name=campaign.name)
                   for campaign in config.campaigns],
        sources=sources))
