"""CORS for pages on other origins, built on Starlette's CORSMiddleware.

Preflights carry no body, so for /api/click and /api/event/trigger the campaign is not
known yet: the middleware admits the origins of every campaign, and each request is then
checked against its own campaign's list (Catalog.check_origin).
"""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from app.config.schema import Config


def cors_middleware(config: Config) -> Middleware:
    origins = {origin for campaign in config.campaigns for origin in campaign.allowed_origins}
    return Middleware(
        CORSMiddleware,
        allow_origins=["*"] if "*" in origins else sorted(origins),
        allow_methods=["GET", "POST"],
        allow_headers=["Content-Type", "X-Request-ID", "Idempotency-Key"],
        expose_headers=["X-Request-ID", "Retry-After", "Idempotent-Replayed"],
        max_age=600,
    )
