"""The read API and backups, behind the admin bearer token; 404 when no token is configured."""

from __future__ import annotations

import hmac

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from actors.clock import utc_text
from app.edge import errors
from app.edge.envelope import success_response
from app.observe.logs import annotate
from app.services import Services, services
from storage.errors import BackupInProgress, NoRoomForBackup


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


class BackupData(msgspec.Struct):
    path: str
    bytes: int
    taken_at: str


async def backup(request: Request) -> Response:
    """POST /api/admin/backup: a consistent copy of the database in ``backups/`` beside it.

    The copy holds everything acknowledged before the request (queued writes are flushed
    first). Files are named by their UTC time and never overwritten. One backup runs at a
    time (409), none is started on a disk without room for it (507), and ``[server]
    backup_keep`` as in force for this request says how many stay afterwards.
    """
    svc = services(request)
    require_admin(request, svc)
    await svc.store.flush()
    moment = svc.clock.now()
    target = svc.store.backup_target(moment)
    try:
        size = await svc.store.backup(target, keep=svc.config.server.backup_keep)
    except BackupInProgress:
        raise errors.backup_in_progress() from None
    except NoRoomForBackup:
        raise errors.insufficient_storage() from None
    annotate(outcome="backed_up")
    return success_response(201, "Backup written", BackupData(
        path=str(target), bytes=size, taken_at=utc_text(moment)))
