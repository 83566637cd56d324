"""CORS for pages on other origins, built on Starlette's CORSMiddleware.

Preflights carry no body, so for /api/click and /api/event/trigger the campaign is not
known yet: the middleware admits the origins of every campaign, and each request is then
checked against its own campaign's list (Catalog.check_origin).

A config reload changes the origins: ``CorsRules.use`` takes the new config, and the
middleware builds a fresh CORSMiddleware for it before the next request.
"""

from __future__ import annotations

from typing import Any

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from app.config.schema import Config


class CorsRules:
    """The CORSMiddleware arguments of the config in force."""

    __slots__ = ("options",)

    def __init__(self, config: Config) -> None:
        self.options = cors_options(config)

    def use(self, config: Config) -> None:
        # One assignment: a request sees the old origins or the new ones, never a mix.
        self.options = cors_options(config)


def cors_options(config: Config) -> dict[str, Any]:
    origins = {origin for campaign in config.campaigns for origin in campaign.allowed_origins}
    return {
        "allow_origins": ["*"] if "*" in origins else sorted(origins),
        "allow_methods": ["GET", "POST"],
        "allow_headers": ["Content-Type", "X-Request-ID", "Idempotency-Key"],
        "expose_headers": ["X-Request-ID", "Retry-After", "Idempotent-Replayed"],
        "max_age": 600,
    }


class CurrentCORS:
    """Starlette's CORSMiddleware for the origins of the config in force."""

    def __init__(self, app: ASGIApp, rules: CorsRules) -> None:
        self.app = app
        self._rules = rules
        self._options = rules.options
        self._cors = CORSMiddleware(app, **self._options)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        options = self._rules.options
        # Rebuilt once per reload, not per request: CORSMiddleware precomputes its headers.
        if options is not self._options:
            self._cors = CORSMiddleware(self.app, **options)
            self._options = options
        await self._cors(scope, receive, send)
