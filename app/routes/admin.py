"""A transaction's view and backups, behind a bearer token (app/routes/access.py)."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from actors.clock import utc_text
from app.edge import errors
from app.edge.envelope import success_response
from app.observe.logs import annotate
from app.routes.access import require
from app.services import services
from storage.errors import BackupInProgress, NoRoomForBackup


async def transaction(request: Request) -> Response:
    """GET /api/transactions/{id}: the lead and its events, in the order they fired."""
    svc = services(request)
    require(request, svc, "viewer")
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
    require(request, svc, "admin")
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
