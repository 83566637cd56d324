"""``[delivery] per_host_per_second``: a postback is sent at its host's next send slot."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime

import structlog

from actors.clock import utc_text
from storage.backend import EventStore
from storage.errors import StoreClosed, StoreUnavailable
from storage.records import DuePostback, PostbackChange, WriteOp

log = structlog.get_logger("app.postbacks")

# How far ahead of now a host's send slot may be handed out: a delivery waits at most this
# long holding its postback (on PostgreSQL, its lease).
HORIZON_SECONDS = 1.0


async def slot_now(postback: DuePostback, store: EventStore, now: datetime, interval: float,
                   *, sleep: Callable[[float], Awaitable[None]],
                   paced: dict[str, datetime]) -> bool:
    """Whether the postback is sent now: once its host's next slot comes (waiting a moment
    at most). A slot further off makes it due then, its attempts as they were, and its
    host counts as full in ``paced`` until then."""
    try:
        slot = await store.take_send_slot(postback.host, now, interval, HORIZON_SECONDS)
    except (StoreUnavailable, StoreClosed):
        return False  # not sent, nothing recorded: due again once its lease is over
    except Exception:
        log.exception("postback_slot_failed", postback_id=postback.id)
        return False
    if slot.granted:
        wait = (slot.at - now).total_seconds()
        if wait > 0:
            await sleep(wait)
        return True
    paced[postback.host] = slot.at
    change = PostbackChange(
        postback_id=postback.id, status="pending", attempts=postback.attempts,
        max_attempts=postback.max_attempts, next_attempt_at=utc_text(slot.at),
        last_status_code=None, last_error=None, updated_at=utc_text(now),
        lease=postback.lease, deferred=True)
    with contextlib.suppress(StoreClosed):
        await store.submit(WriteOp(postback_change=change), bounded=False)
    return False
