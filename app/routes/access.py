"""Who is calling: the bearer token, its role, and what the role may reach.

Roles rank ``viewer`` (reads and reports) < ``operator`` (also the conversion lifecycle
and postback actions) < ``admin`` (everything: backups, reloads). ``partner`` stands
apart: only the routes that say so, limited to its own source. ``[server] admin_token``
is an admin. With no token of any kind configured, the read API is off (404).
"""

from __future__ import annotations

import hmac

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request

from app.config.tokens import Role, hash_token
from app.edge import errors
from app.observe.logs import annotate
from app.services import Services

RANK: dict[Role, int] = {"partner": 0, "viewer": 1, "operator": 2, "admin": 3}
ADMIN_TOKEN_NAME = "admin_token"


class Caller(msgspec.Struct, frozen=True):
    name: str
    role: Role
    # A partner's source: what it may see is limited to it.
    pid: str | None = None


def caller(request: Request, svc: Services) -> Caller:
    """The caller the bearer token names: 404 with no token configured, 401 without a
    known one. The token's name goes on the request's log line (the audit trail)."""
    config = svc.config
    admin_token = config.server.admin_token
    if admin_token is None and not config.tokens:
        raise HTTPException(status_code=404)
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        raise errors.unauthorized()
    presented = given.strip().encode()
    found = None
    # compare_digest on bytes: constant time, and no error on non-ASCII input.
    if admin_token is not None and hmac.compare_digest(presented, admin_token.encode()):
        found = Caller(ADMIN_TOKEN_NAME, "admin")
    elif config.tokens:
        digest = hash_token(presented.decode("latin-1")).encode()
        for entry in config.tokens:
            if hmac.compare_digest(digest, entry.token.encode()):
                found = Caller(entry.name, entry.role, entry.pid)
    if found is None:
        raise errors.unauthorized()
    annotate(token=found.name)
    return found


def require(request: Request, svc: Services, role: Role, *,
            partner: bool = False) -> Caller:
    """The caller, if its role reaches ``role`` (or it is a partner and ``partner``);
    403 otherwise."""
    found = caller(request, svc)
    if found.role == "partner":
        if partner:
            return found
        raise errors.forbidden()
    if RANK[found.role] < RANK[role]:
        raise errors.forbidden()
    return found
