"""The route table: every route and its handler, and the OpenAPI document built from them."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.routing import Route

from app.routes import (
    admin,
    caps,
    catalog,
    clicks,
    conversions,
    endpoint_test,
    endpoints,
    events,
    health,
    names,
    postbacks,
    reports,
    static,
)

# The pages a person opens, named by the start-up line; GET / leads to the first.
LANDMARKS = {"dashboard": "/dashboard", "docs": "/docs", "health": "/healthz"}


async def home(request: Request) -> RedirectResponse:
    return RedirectResponse(LANDMARKS["dashboard"], status_code=302)


def catalog_routes() -> list[Route]:
    """The catalog managed through the API (app/routes/catalog.py)."""
    return [
        Route("/api/campaigns", catalog.list_campaigns, methods=["GET"]),
        Route("/api/campaigns/{cid}", catalog.show_campaign, methods=["GET"]),
        Route("/api/campaigns/{cid}", catalog.put_campaign, methods=["PUT"]),
        Route("/api/campaigns/{cid}", catalog.delete_campaign, methods=["DELETE"]),
        Route("/api/sources", catalog.list_sources, methods=["GET"]),
        Route("/api/sources/{pid}", catalog.show_source, methods=["GET"]),
        Route("/api/sources/{pid}", catalog.put_source, methods=["PUT"]),
        Route("/api/sources/{pid}", catalog.delete_source, methods=["DELETE"]),
        Route("/api/catalog", catalog.export, methods=["GET"]),
        Route("/api/catalog/versions", catalog.list_versions, methods=["GET"]),
        Route("/api/catalog/versions/{version:int}/restore", catalog.restore_version,
              methods=["POST"]),
    ]


def routes(*, demo: bool = False) -> list[Route]:
    """Every route; ``demo`` adds the example landing page of the built-in demo config."""
    return [
        Route("/api/click", clicks.click_from_body, methods=["POST"]),
        Route("/api/click", clicks.click_from_query, methods=["GET"]),
        # /trigger and /global first: they would otherwise match /api/event/{cid}.
        Route("/api/event/trigger", events.trigger, methods=["POST"]),
        Route("/api/event/trigger", events.trigger_from_query, methods=["GET"]),
        Route("/api/event/global", events.trigger_global, methods=["POST"]),
        Route("/api/event/global", events.trigger_global_from_query, methods=["GET"]),
        Route("/api/event/{cid}", events.trigger_for_campaign, methods=["POST"]),
        Route("/api/event/{cid}", events.trigger_for_campaign_from_query, methods=["GET"]),
        Route("/api/transactions/{transaction_id}", admin.transaction, methods=["GET"]),
        Route("/api/postbacks", postbacks.list_postbacks, methods=["GET"]),
        Route("/api/postbacks/recover", endpoints.recover_postbacks, methods=["POST"]),
        Route("/api/endpoints", endpoints.list_endpoints, methods=["GET"]),
        # A name defaults to the endpoint's host and path, slashes included.
        Route("/api/endpoints/{name:path}/resume", endpoints.resume_endpoint,
              methods=["POST"]),
        Route("/api/endpoints/{name:path}/test", endpoint_test.send_test_request,
              methods=["POST"]),
        Route("/api/postbacks/{postback_id:int}", postbacks.show_postback, methods=["GET"]),
        Route("/api/postbacks/{postback_id:int}/retry", postbacks.retry_postback,
              methods=["POST"]),
        Route("/api/conversions", conversions.list_conversions, methods=["GET"]),
        # /bulk first: it would otherwise match /api/conversions/{conversion_id}.
        Route("/api/conversions/bulk", conversions.bulk, methods=["POST"]),
        Route("/api/conversions/{conversion_id}", conversions.show_conversion,
              methods=["GET"]),
        Route("/api/conversions/{conversion_id}/approve", conversions.approve,
              methods=["POST"]),
        Route("/api/conversions/{conversion_id}/reject", conversions.reject, methods=["POST"]),
        Route("/api/conversions/{conversion_id}/reverse", conversions.reverse,
              methods=["POST"]),
        Route("/api/admin/backup", admin.backup, methods=["POST"]),
        Route("/api/reports", reports.reports, methods=["GET"]),
        Route("/api/caps", caps.list_caps, methods=["GET"]),
        Route("/api/catalog/names", names.catalog_names, methods=["GET"]),
        *catalog_routes(),
        Route("/healthz", health.healthz, methods=["GET"]),
        Route("/", home, methods=["GET"]),
        *reports.dashboard_routes(),
        static.sdk_route(),
        static.favicon_route(),
        *(static.demo_routes() if demo else []),
    ]
