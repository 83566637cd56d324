"""GET /openapi.json and GET /docs: the API described, and rendered by a vendored viewer."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.routes import openapi
from app.routes.static import StaticFile

_ONLY_SELF = ("default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
              "font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
              "frame-ancestors 'self'")


def routes(*, demo: bool = False) -> list[Route]:
    spec = openapi.document(demo=demo)

    async def openapi_json(request: Request) -> Response:
        return Response(spec, media_type="application/json")

    page = StaticFile("docs.html", "text/html; charset=utf-8", 300)
    # The page may load nothing from elsewhere: edge hosts may be offline, and the viewer
    # would otherwise fetch its vendor's logo from a CDN (the image then hides itself).
    page.headers["Content-Security-Policy"] = _ONLY_SELF
    # A day: the bundle only changes with an upgrade, and the ETag answers 304 after it.
    viewer = StaticFile("redoc/redoc.standalone.js", "application/javascript", 86400)
    return [
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route("/docs", page.respond, methods=["GET"]),
        Route("/docs/redoc.standalone.js", viewer.respond, methods=["GET"]),
    ]
