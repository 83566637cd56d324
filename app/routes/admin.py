"""The read API, behind the admin bearer token; absent (404) when no token is configured."""

from __future__ import annotations

import hmac

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from app import errors
from app.envelope import success_response
from app.services import Services, services


def require_admin(request: Request, svc: Services) -> None:
    token = svc.config.server.admin_token
    if token is None:
        raise HTTPException(status_code=404)
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    # compare_digest on bytes: constant time, and no error on non-ASCII input.
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.encode()
    ):
        raise errors.unauthorized()


async def transaction(request: Request) -> Response:
    """GET /api/transactions/{id}: the lead and its events, in the order they fired."""
    svc = services(request)
    require_admin(request, svc)
    # Read what was acknowledged, even in write-behind mode.
    await svc.store.flush()
    view = await svc.store.transaction_view(request.path_params["transaction_id"])
    if view is None:
        raise errors.transaction_not_found()
    return success_response(200, "OK", view)
