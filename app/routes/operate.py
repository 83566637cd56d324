"""Routes for whoever runs the service: Prometheus metrics and config reload."""

from __future__ import annotations

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.config.reload import Reloaded, ReloadIncomplete, supervisor
from app.config.schema import ConfigError
from app.config.summary import summary
from app.edge.envelope import success_response
from app.edge.errors import ApiError, invalid_from
from app.events.caps import cap_uses
from app.observe.logs import annotate
from app.routes.access import require
from app.routes.endpoints import endpoint_views
from app.services import services


async def metrics(request: Request) -> Response:
    """GET /metrics: the Prometheus text format; admin token unless metrics_public."""
    svc = services(request)
    if not svc.config.server.metrics_public:
        require(request, svc, "viewer")
    svc.metrics.set_postbacks(await svc.store.postback_counts())
    svc.metrics.set_conversions(await svc.store.conversion_counts())
    svc.metrics.set_caps(await cap_uses(svc.catalog.caps, svc.store, svc.clock.now()))
    svc.metrics.set_endpoints(await endpoint_views(svc, counts=False))
    annotate(outcome="scraped")
    return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)


class ReloadQuery(msgspec.Struct, frozen=True, kw_only=True):
    """The query of POST /api/admin/reload."""

    # Apply a config that removes every campaign or the admin token (refused otherwise).
    force: bool = False


class ReloadData(msgspec.Struct):
    # What changed, e.g. {"sources_changed": ["src_a"], "campaigns_added": ["cmp_b"]}.
    changes: dict[str, list[str]]
    # What the config now holds: "2 campaigns, 3 sources, 5 events, 2 postbacks".
    config: str


async def reload_config(request: Request) -> Response:
    """POST /api/admin/reload: read the config file again; 400 and no change if it is wrong."""
    svc = services(request)
    require(request, svc, "admin")
    try:
        query = msgspec.convert(dict(request.query_params), ReloadQuery, strict=False)
    except msgspec.ValidationError as exc:
        raise invalid_from(exc, "query") from None
    workers = supervisor()
    try:
        if workers is None:
            changed = svc.reloader.reload(force=query.force)
            reloaded = Reloaded(changed, summary(svc.reloader.current()))
        else:
            # Answered once every worker serves the new config (they are restarted).
            reloaded = await workers.reload(force=query.force)
    except ConfigError as exc:
        raise ApiError(400, str(exc), "config_refused") from None
    except ReloadIncomplete as exc:
        raise ApiError(503, str(exc), "reload_incomplete") from None
    annotate(outcome="config_reloaded")
    return success_response(200, "Config reloaded",
                            ReloadData(changes=reloaded.changes, config=reloaded.summary))


def routes() -> list[Route]:
    return [
        Route("/metrics", metrics, methods=["GET"]),
        Route("/api/admin/reload", reload_config, methods=["POST"]),
    ]
