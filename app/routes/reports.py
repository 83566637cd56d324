"""GET /api/reports (figures over a period, as JSON or CSV) and the dashboard page."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.edge.envelope import success_response
from app.reports.export import to_csv
from app.reports.params import params_from_query
from app.reports.report import report
from app.routes.access import require
from app.routes.partner import is_partner, report_for
from app.routes.static import StaticFile
from app.services import services


async def reports(request: Request) -> Response:
    svc = services(request)
    caller = require(request, svc, "viewer", partner=True)
    params = params_from_query(request.url.query)
    if is_partner(caller):
        assert caller.pid is not None  # a partner token names its source (config check)
        params = msgspec.structs.replace(params, pids=(caller.pid,))
    with svc.report_gate.admit(svc.config.server.max_concurrent_reports):
        # Read what was acknowledged, even in write-behind mode.
        await svc.store.flush()
        found = report_for(caller, await report(svc.store, params, svc.report_processes))
    if params.format == "csv":
        name = f"report-{found.from_day}-{found.to_day}.csv"
        return Response(to_csv(found), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})
    return success_response(200, "OK", found)


def dashboard_routes() -> list[Route]:
    """GET /dashboard: one page, its script and style, and the vendored chart library.

    Served without the token: the page asks for it and sends it with each API call.
    """
    files = [
        ("/dashboard", "dashboard/index.html", "text/html; charset=utf-8"),
        ("/dashboard/dashboard.js", "dashboard/dashboard.js", "application/javascript"),
        ("/dashboard/dashboard.css", "dashboard/dashboard.css", "text/css"),
        ("/dashboard/uplot.js", "vendor/uplot/uPlot.iife.min.js", "application/javascript"),
        ("/dashboard/uplot.css", "vendor/uplot/uPlot.min.css", "text/css"),
    ]
    # A minute of caching: an upgrade shows within a minute, a refresh costs a 304.
    return [Route(path, StaticFile(name, media_type, 60).respond, methods=["GET"])
            for path, name, media_type in files]
