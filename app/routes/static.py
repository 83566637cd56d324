"""The web SDK and the demo landing page, served from the package with an ETag; no icon."""

from __future__ import annotations

import hashlib
from importlib import resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


class StaticFile:
    """One file read at start-up; answers 304 when the browser already has it."""

    def __init__(self, name: str, media_type: str, max_age: int) -> None:
        self.content = resources.files("app").joinpath("static", name).read_bytes()
        self.etag = f'"{hashlib.sha256(self.content).hexdigest()[:20]}"'
        self.media_type = media_type
        self.headers = {"ETag": self.etag, "Cache-Control": f"public, max-age={max_age}"}

    async def respond(self, request: Request) -> Response:
        if self.etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=self.headers)
        return Response(self.content, media_type=self.media_type, headers=self.headers)


def sdk_route() -> Route:
    # An hour of caching: pages pick up a new SDK soon after an upgrade.
    return Route("/sdk.js", StaticFile("sdk.js", "application/javascript", 3600).respond,
                 methods=["GET"])


def demo_routes() -> list[Route]:
    page = StaticFile("examples/landing.html", "text/html; charset=utf-8", 60)
    return [Route("/examples/landing.html", page.respond, methods=["GET"])]


async def _no_icon(request: Request) -> Response:
    # Browsers ask every origin for an icon; "nothing" keeps their consoles free of 404s
    # and, cached for a day, stops them asking again.
    return Response(status_code=204, headers={"Cache-Control": "public, max-age=86400"})


def favicon_route() -> Route:
    return Route("/favicon.ico", _no_icon, methods=["GET"])
